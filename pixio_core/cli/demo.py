"""``pixio-demo``: the main job on a small embedded default, end to end.

Pre-trains a tiny Pixio (the ``pixio-pretrain`` CPU default: ``pixio_vitt16``, 128 px,
procedural shape images made on the spot, 150 steps) into ``outputs/demo``, then reloads the
encoder with ``load_encoder`` to show the checkpoint is usable. Extra arguments are hydra
overrides of the pre-training config, e.g. ``pixio-demo train.total_steps=20``.
"""

from __future__ import annotations

import sys

import torch
from hydra import compose, initialize_config_dir

from pixio_core.cli.common import CONFIG_DIR
from pixio_core.cli.pretrain import run
from pixio_core.loading import load_encoder


def main(argv: list[str] | None = None) -> None:
    overrides = list(sys.argv[1:] if argv is None else argv)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("pretrain", overrides=["output_dir=outputs/demo", *overrides])
    out = run(cfg)
    encoder = load_encoder(out / "checkpoints")
    side = cfg.model.image_size
    with torch.no_grad():
        pooled = encoder.forward_features(torch.zeros(1, 3, side, side))["pooled"]
    print(f"reloaded the encoder from {out / 'checkpoints'}: pooled feature {tuple(pooled.shape)}")
    print(f"look at {out / 'loss_curve.png'} and {out / 'reconstructions'}/")


if __name__ == "__main__":
    main()
