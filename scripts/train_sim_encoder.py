"""Reproduce the shipped ``pixio_sim_vitt16`` encoder: render frames, pre-train, export.

    python scripts/train_sim_encoder.py                  # all three steps (~5 + ~40-90 min on 2 CPUs)
    python scripts/train_sim_encoder.py --ship-only      # export an existing run

The commands it runs are written, with the run's config, training log and loss curve, into
``pixio_core/weights/pixio_sim_vitt16/`` next to the weights, so the folder says how it was made.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "pixio_sim_vitt16"
FRAMES = "outputs/robot/sim_frames"
RUN = "outputs/robot/sim_pretrain"
BIN = Path(sys.executable).parent
METAWORLD = {task: 500 for task in (
    "assembly-v3", "bin-picking-v3", "button-press-topdown-v3", "drawer-open-v3", "hammer-v3",
    "reach-v3", "push-v3", "door-open-v3",
)}  # fmt: skip
COMMANDS = [
    [
        "pixio-robot", "frames", "sources.push_block=10000",
        "sources.metaworld={" + ",".join(f"{t}:{n}" for t, n in METAWORLD.items()) + "}",
        "sources.rooms=1000", f"output={FRAMES}",
    ],
    [
        "pixio-pretrain", "data=sim_frames", f"data.urls={FRAMES}", f"output_dir={RUN}",
        "train.total_steps=4000", "train.checkpoint_every=250", "train.recon_every=500",
        "optim.warmup_steps=200",
    ],
]  # fmt: skip
ENVIRONMENT = {"MUJOCO_GL": "egl", "OMP_NUM_THREADS": "2"}


def ship(run: Path, target: Path) -> None:
    from pixio_core.loading import load_encoder, save_encoder

    encoder = load_encoder(run / "checkpoints")
    card = target / "README.md"  # the model card is written by hand: kept
    card_text = card.read_text() if card.is_file() else None
    save_encoder(encoder, target)  # replaces the folder
    if card_text is not None:
        card.write_text(card_text)
    shutil.copy(run / "log.jsonl", target / "training_log.jsonl")
    shutil.copy(run / "config.yaml", target / "pretrain_config.yaml")
    shutil.copy(run / "loss_curve.png", target / "loss_curve.png")
    frames = ROOT / FRAMES / "frames.json"
    if frames.is_file():
        shutil.copy(frames, target / "frames.json")
    env = " ".join(f"{k}={v}" for k, v in ENVIRONMENT.items())
    lines = [f"{env} {shlex.join(command)}" for command in COMMANDS]
    lines.append("python scripts/train_sim_encoder.py --ship-only")
    (target / "command.txt").write_text("\n".join(lines) + "\n")
    size = sum(f.stat().st_size for f in target.iterdir()) / 2**20
    print(f"shipped {NAME} ({size:.1f} MB) -> {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ship-only", action="store_true", help="export an existing run")
    args = parser.parse_args()
    if not args.ship_only:
        for command in COMMANDS:
            print("$", shlex.join(command), flush=True)
            subprocess.run(
                [str(BIN / command[0]), *command[1:]],
                cwd=ROOT,
                check=True,
                env={**os.environ, **ENVIRONMENT},
            )
    from pixio_core.loading import WEIGHTS_DIR

    target = WEIGHTS_DIR / NAME
    ship(ROOT / RUN, target)
    print(json.dumps({"weights": str(target)}))


if __name__ == "__main__":
    main()
