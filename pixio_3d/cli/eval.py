"""``pixio-recon-eval``: score a pixio_3d checkpoint on held-out scenes; JSON + markdown table.

    pixio-recon-eval outputs/recon/reconstruction/checkpoints --scenes data/heldout \\
        --views 2,4,8,16 --out outputs/recon/eval

Reconstruction models are scored per view count (pointmap rel and tau@1.03 after avg-dis
normalisation, pose AUC@5/@30, ATE after alignment, Chamfer after Sim(3), depth AbsRel/delta1
with median alignment, ...; see :mod:`pixio_3d.evaluation.evaluate`); depth models by AbsRel/delta1 over
every view, segmentation models by mIoU and pixel accuracy. Writes ``results.json`` and
``results.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pixio_3d.data.layout import VIEW_SELECTIONS
from pixio_3d.sfm.settings import POSE_SOLVERS
from pixio_core.cli.console import run_guarded

DEFAULT_VIEWS = "2,4,8,16"


def _view_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"views must look like 2,4,8,16, got {text!r}") from None
    if not counts or min(counts) < 2:
        raise argparse.ArgumentTypeError(f"view counts must be >= 2, got {text!r}")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixio-recon-eval", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint folder or a run's checkpoints/ folder")
    parser.add_argument("--scenes", required=True, help="held-out scenes (pixio_3d.data layout)")
    parser.add_argument("--views", type=_view_counts, default=_view_counts(DEFAULT_VIEWS))
    parser.add_argument("--out", default="outputs/recon_eval", help="folder for results.*")
    parser.add_argument("--samples-per-scene", type=int, default=1, help="view sets per scene")
    parser.add_argument("--seed", type=int, default=0, help="view selection seed")
    parser.add_argument(
        "--intrinsics", action="store_true", help="give the model the known intrinsics"
    )
    parser.add_argument(
        "--max-views-per-scene", type=int, default=None, help="depth/segmentation: views used"
    )
    parser.add_argument(
        "--view-selection",
        choices=VIEW_SELECTIONS,
        default="overlap",
        help="reconstruction: overlap (wide baselines) | sequential (a walk in view order)",
    )
    parser.add_argument(
        "--pose-solver",
        choices=POSE_SOLVERS,
        default="head",
        help="reconstruction: head (regressed poses) | matches (rigid fit at the model's "
        "matches) | features (SIFT two-view geometry + the model's depth)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results")
    return parser


def main(argv: list[str] | None = None) -> None:
    """The ``pixio-recon-eval`` console script."""
    args = build_parser().parse_args(argv)
    run_guarded("pixio-recon-eval", lambda: _main(args))


def _main(args: argparse.Namespace) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")  # labels may import the scene generator
    from pixio_3d.checkpoint import load_model
    from pixio_3d.evaluation.evaluate import (
        check_eval_outputs,
        evaluate_model,
        markdown_table,
        write_eval,
    )
    from pixio_3d.tasks import EvalOptions
    from pixio_core.checkpoint import resolve_checkpoint_dir
    from pixio_core.devices import resolve_device

    if args.pose_solver == "features":
        from pixio_3d.sfm import quiet_pycolmap_logs

        quiet_pycolmap_logs()
    check_eval_outputs(args.out, args.overwrite)  # before the work, not after it
    if not Path(args.scenes).is_dir():
        raise SystemExit(f"pixio-recon-eval: scenes folder {args.scenes} does not exist")
    device = resolve_device(args.device)
    try:
        model, config = load_model(args.checkpoint, device)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"pixio-recon-eval: {error}") from None
    options = EvalOptions(
        samples_per_scene=args.samples_per_scene,
        seed=args.seed,
        give_intrinsics=args.intrinsics,
        view_selection=args.view_selection,
        pose_solver=args.pose_solver,
        max_views_per_scene=args.max_views_per_scene,
        device=device,
    )
    rows = evaluate_model(model, config, args.scenes, args.views, options)
    meta = {
        "checkpoint": str(resolve_checkpoint_dir(args.checkpoint)),
        "task": config["task"],
        "encoder": config["encoder"]["source"],
        "scenes": args.scenes,
        "seed": args.seed,
        "view_selection": args.view_selection,
        "pose_solver": args.pose_solver,
    }
    _, md_path = write_eval(rows, args.out, meta, overwrite=args.overwrite)
    print(markdown_table(rows))
    print(f"wrote {md_path} and {Path(args.out) / 'results.json'}")


if __name__ == "__main__":
    main()
