"""The console scripts of pixio_core, as entries of the one CLI layer (:mod:`.console`).

Each command names its hydra config and the ``run`` function that takes the composed config;
the modules that hold those functions (and torch) are imported only when a command runs, so
``--help`` answers at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from pixio_core.cli.console import HydraCommand, run_hydra_command

PRETRAIN = HydraCommand(
    prog="pixio-pretrain",
    config_name="pretrain",
    run="pixio_core.cli.pretrain:run",
    summary="MAE pre-training of a Pixio encoder, from a laptop CPU to torchrun clusters "
    "(writes checkpoints/, log.jsonl, tensorboard/, reconstructions/ to output_dir; resumes).",
    examples=(
        "pixio-pretrain                                   # CPU default: tiny model, procedural images",
        "pixio-pretrain data=folder data.root=/images train.total_steps=20000",
        "pixio-pretrain +experiment=paper_vith16 data=webdataset data.urls='/data/train-{000..099}.tar'",
        "torchrun --nproc-per-node 8 -m pixio_core.cli.pretrain +experiment=paper_vith16 ...",
    ),
)
DISTILL = HydraCommand(
    prog="pixio-distill",
    config_name="distill",
    run="pixio_core.cli.distill:run",
    summary="Distil a frozen teacher encoder into a smaller student (paper appendix 7.2); "
    "output_dir/student is a plain encoder for load_encoder.",
    examples=(
        "pixio-distill teacher=outputs/demo/checkpoints",
        "pixio-distill teacher=/ckpt/pixio_vit5b16.pth student.encoder=pixio_vith16 "
        "student.mask_ratio=0.5",
    ),
)
PROBE = HydraCommand(
    prog="pixio-probe",
    config_name="probe",
    run="pixio_core.cli.probe:run",
    summary="k-NN (k 10, 20; T 0.07) and linear-probe accuracy of a frozen encoder -> probe.json.",
    examples=(
        "pixio-probe encoder=outputs/demo/checkpoints",
        "pixio-probe encoder=pixio_vith16 image_size=256 data.kind=folder "
        "data.root=/imagenet/train data.val_root=/imagenet/val",
    ),
)
CURATE = HydraCommand(
    prog="pixio-curate",
    config_name="curate",
    run="pixio_core.cli.curate:run",
    summary="Per-image self-curation scores (reconstruction loss, colour entropy, size) as "
    "JSON lines beside the data, and a kept-vs-dropped histogram.",
    examples=(
        "pixio-curate checkpoint=outputs/demo/checkpoints data.root=/my/images",
        "pixio-curate checkpoint=... data.kind=webdataset data.urls='/data/train-{000..099}.tar'",
    ),
)
DEMO = HydraCommand(
    prog="pixio-demo",
    config_name="pretrain",
    run="pixio_core.cli.demo:run",
    summary="The main job on a small embedded default: pre-train a tiny Pixio on procedural "
    "images into outputs/demo, then reload it with load_encoder.",
    examples=("pixio-demo", "pixio-demo train.total_steps=20"),
    overrides=("output_dir=outputs/demo",),
)


def pretrain_main(argv: Sequence[str] | None = None) -> None:
    run_hydra_command(PRETRAIN, argv)


def distill_main(argv: Sequence[str] | None = None) -> None:
    run_hydra_command(DISTILL, argv)


def probe_main(argv: Sequence[str] | None = None) -> None:
    run_hydra_command(PROBE, argv)


def curate_main(argv: Sequence[str] | None = None) -> None:
    run_hydra_command(CURATE, argv)


def demo_main(argv: Sequence[str] | None = None) -> None:
    run_hydra_command(DEMO, argv)
