"""``pixio-demo``: the main job on a small embedded default, end to end.

Pre-trains a tiny Pixio (the ``pixio-pretrain`` CPU default: ``pixio_vitt16``, 128 px,
procedural shape images made on the spot, 150 steps) into ``outputs/demo``, then reloads the
encoder with ``load_encoder`` to show the checkpoint is usable. Extra arguments are hydra
overrides of the pre-training config, e.g. ``pixio-demo train.total_steps=20``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def run(cfg: DictConfig) -> Path:
    """Pre-train as ``cfg`` says (``pixio-pretrain``'s config, ``output_dir=outputs/demo``),
    then reload the encoder and print where to look."""
    import torch

    from pixio_core.cli.pretrain import run as pretrain
    from pixio_core.loading import load_encoder

    out = pretrain(cfg)
    encoder = load_encoder(out / "checkpoints")
    side = cfg.model.image_size
    with torch.no_grad():
        pooled = encoder.forward_features(torch.zeros(1, 3, side, side))["pooled"]
    print(f"reloaded the encoder from {out / 'checkpoints'}: pooled feature {tuple(pooled.shape)}")
    print(f"look at {out / 'loss_curve.png'} and {out / 'reconstructions'}/")
    return out


def main(argv: list[str] | None = None) -> None:
    """The ``pixio-demo`` console script (extra arguments: hydra overrides)."""
    from pixio_core.cli import demo_main

    demo_main(argv)


if __name__ == "__main__":
    main()
