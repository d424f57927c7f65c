"""The console scripts of pixio_3d, through the one CLI layer (:mod:`pixio_core.cli.console`).

``pixio-recon``, ``pixio-depth``, ``pixio-recon-eval`` and ``pixio-scenes`` are argparse
commands (their modules import torch only when they run); ``pixio-recon-train`` and
``pixio-recon-demo`` are hydra commands defined here.
"""

from __future__ import annotations

from collections.abc import Sequence

from pixio_core.cli.console import HydraCommand, run_hydra_command

MUJOCO = {"MUJOCO_GL": "egl"}  # before mujoco is first imported (scene rendering)

TRAIN = HydraCommand(
    prog="pixio-recon-train",
    config_name="recon_train",
    run="pixio_3d.cli.train:run",
    summary="Train 3D heads (task=reconstruction | depth | segmentation) on a frozen (or "
    "low-lr fine-tuned) Pixio encoder; renders training scenes first when data.root has none.",
    examples=(
        "pixio-recon-train                                # the released architecture, CPU size",
        "pixio-recon-train recon=tiny                     # the earlier ReconstructionModel",
        "pixio-recon-train task=depth depth.mode=metric",
        "pixio-recon-train task=segmentation segmentation.head=dpt",
        "pixio-recon-train encoder.source=random:pixio_vitt16   # the random-encoder baseline",
        "torchrun --nproc-per-node 8 -m pixio_3d.cli.train recon=base data.root=/scenes",
    ),
    environment=MUJOCO,
)


def _demo_command() -> HydraCommand:
    from pixio_3d.cli.demo import DEMO_OVERRIDES

    return HydraCommand(
        prog="pixio-recon-demo",
        config_name="recon_train",
        run="pixio_3d.cli.demo:run",
        summary="The 3D part of `make demo`: render tiny scenes, train the CPU-sized MapAnything "
        "model on pixio-demo's encoder, score it on held-out scenes, reconstruct their photos "
        "(outputs/demo/recon). Arguments override configs/recon_train.yaml.",
        examples=("pixio-recon-demo", "pixio-recon-demo train.total_steps=20"),
        overrides=DEMO_OVERRIDES,
        environment=MUJOCO,
    )


def train_main(argv: Sequence[str] | None = None) -> None:
    run_hydra_command(TRAIN, argv)


def demo_main(argv: Sequence[str] | None = None) -> None:
    run_hydra_command(_demo_command(), argv)
