"""``pixio-recon``: reconstruct a folder of photos (cameras, point cloud, GLB, COLMAP, depth).

Example: ``pixio-recon photos/ --out recon/ --checkpoint outputs/recon/reconstruction``.
What is written is described in :mod:`pixio_3d.pipeline`; a summary is printed at the end
and saved as ``recon/summary.json``. One photo falls back to monocular depth.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pixio_3d.sfm.settings import FUSION_MODES, POSE_SOLVERS, parse_feature_settings
from pixio_core.cli.console import run_guarded
from pixio_core.precision import PRECISIONS

DEFAULT_CHECKPOINT = Path("outputs/recon/reconstruction/checkpoints")  # pixio-recon-train


def load_checkpoint_arg(path: str | None, prog: str) -> tuple[Any, dict[str, Any], Path]:
    """``(model, config, path)`` from ``--checkpoint`` or the default, with a clear error."""
    from pixio_3d.checkpoint import load_model

    checkpoint = DEFAULT_CHECKPOINT if path is None else Path(path)
    if not checkpoint.exists():
        hint = (
            f"no --checkpoint given and the default {checkpoint} does not exist"
            if path is None
            else f"checkpoint {checkpoint} does not exist"
        )
        raise SystemExit(
            f"{prog}: {hint}; pass --checkpoint PATH: a pixio_3d model checkpoint folder "
            "(model.safetensors + config.json) or a training run folder with a 'last' pointer, "
            "as written by pixio-recon-train (python -m pixio_3d.cli.train), whose default run "
            f"writes {DEFAULT_CHECKPOINT}"
        )
    try:
        model, config = load_model(checkpoint, device="cpu")
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"{prog}: cannot load checkpoint {checkpoint}: {error}") from None
    return model, config, checkpoint


def load_model_arg(source: str, prog: str) -> tuple[Any, dict[str, Any], str]:
    """``(model, config, source)`` from ``--model`` (a released model), with a clear error."""
    from pixio_3d.models.released import load_reconstruction_model

    try:
        model = load_reconstruction_model(source, device="cpu")
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"{prog}: cannot load --model {source}: {error}") from None
    return model, {"task": "reconstruction"}, source


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixio-recon", description=__doc__.splitlines()[0])
    parser.add_argument(
        "photos",
        help="folder of photos (not recursive; bad files are skipped), or one video file "
        "(.mp4, .mov, ...: frames sampled at --fps)",
    )
    parser.add_argument(
        "--fps", type=float, default=2.0, help="frames per second taken from a video (default 2)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help=f"reconstruction checkpoint or run folder (default: {DEFAULT_CHECKPOINT})",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a released MapAnything-with-Pixio model instead of --checkpoint: a hub repo id "
        "(facebook/pixio-vith16-mapanything; accept its licence and download it first) or a "
        "local folder of it (config.json + model.pth or model.safetensors)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier result")
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="keep points with at least this confidence (default: drop the lowest "
        "--confidence-quantile of pixels)",
    )
    parser.add_argument("--confidence-quantile", type=float, default=0.1)
    parser.add_argument(
        "--voxel-size",
        type=float,
        default=None,
        help="point cloud voxel size in scene units (default: 1%% of the scene extent; 0: off)",
    )
    parser.add_argument("--max-points", type=int, default=1_000_000)
    parser.add_argument("--long-side", type=int, default=512, help="working size (pixels)")
    parser.add_argument("--min-side", type=int, default=32, help="smaller photos are skipped")
    parser.add_argument(
        "--focal-px",
        type=float,
        default=None,
        help="known focal length in pixels of the original photos (principal point centred; "
        "default: the photos' EXIF 35 mm-equivalent focal length when every photo has one)",
    )
    parser.add_argument(
        "--cameras",
        default=None,
        help="known cameras: a COLMAP model folder or a JSON file (fx, fy, cx, cy per photo or "
        "shared, optional cam2world per photo; pixels of the original photos), honoured "
        "exactly; see pixio_3d.data.cameras",
    )
    parser.add_argument(
        "--no-exif-focal",
        action="store_true",
        help="ignore EXIF focal lengths: the model estimates the intrinsics",
    )
    parser.add_argument(
        "--pose-solver",
        choices=POSE_SOLVERS,
        default="features",
        help="cameras from: features (default: SIFT two-view geometry, translation lengths "
        "from the model's depth, head poses for views it cannot place) | head (the model's "
        "pose head alone) | matches (rigid fit at the model's patch matches)",
    )
    parser.add_argument(
        "--feature-settings",
        default="",
        help="features solver settings as name=value,... (e.g. 'max_pairs_per_view=5' for "
        "many photos, 'bundle_adjustment=false'); see pixio_3d.sfm.FeatureSettings",
    )
    parser.add_argument(
        "--fusion",
        choices=FUSION_MODES,
        default="consistent",
        help="pixels in points.ply: consistent (default: those no other view contradicts) | "
        "verified (only those another view confirms: more accurate, fewer points) | all",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the network's arithmetic: auto (default: bf16 where it is native, a GPU or a CPU "
        "with AMX / AVX512-BF16; else fp32) | bf16 | fp32",
    )
    parser.add_argument(
        "--original-depth",
        action="store_true",
        help="also write depth_original/: depth maps at each original photo's resolution",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if any) | cpu | cuda[:N]")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def print_summary(summary: dict[str, Any]) -> None:
    out = Path(summary["out_dir"])
    size = summary["image_size"]
    print(f"{summary['message']} at {size['width']}x{size['height']}")
    if summary["mode"] == "monocular":
        print("note: single photo -> monocular depth (no multi-view geometry)")
    print(f"intrinsics: {summary['intrinsics_source']}")
    if summary.get("model", {}).get("small"):
        print(f"note: {summary['model']['note']}")
    scale = summary.get("metric_scale", {})
    if scale.get("spread") is not None:
        print(
            f"metric scale: {scale['reliability']} (the middle half of the depth ratios within "
            f"a factor of {scale['spread']:.2f})"
        )
    if summary["pose_solver"] == "given":
        points = sum(photo.get("depth_fit", {}).get("sfm_points", 0) for photo in summary["photos"])
        print(
            f"cameras: given ({summary['intrinsics_source'].removeprefix('given: ')}); depth "
            f"fitted to {points} observations of points triangulated from them"
        )
    elif summary["mode"] != "monocular" and summary["pose_solver"] != "head":
        placed = sum(1 for photo in summary["photos"][1:] if photo.get("pose_support", 0) > 0)
        others = summary["num_views"] - 1 - placed
        print(
            f"cameras: {placed} of {summary['num_views'] - 1} views (besides the first) posed by "
            f"{summary['pose_solver']}" + (f", {others} by the pose head" if others else "")
        )
        if "bundle_adjustment_reprojection_error_px" in summary:
            error = summary["bundle_adjustment_reprojection_error_px"]
            print(f"bundle adjustment: mean reprojection error {error:.2f} px")
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")
    for skipped in summary["skipped"]:
        print(f"skipped {skipped['path']}: {skipped['reason']}")
    counts = summary["point_cloud"]["counts"]
    print(
        f"points: {counts['written']} written of {counts['pixels']} pixels "
        f"({counts['confident']} with confidence >= {summary['point_cloud']['min_confidence']:.3g})"
    )
    fusion = summary["fusion"]
    print(
        f"fusion: {fusion['consistent']} of {fusion['pixels']} pixels consistent across views "
        f"({fusion['seen_by_another_view']} seen by another view)"
    )
    print(f"wrote to {out}:")
    described = {
        "sparse": f"COLMAP model ({summary['colmap']['images']} images, "
        f"{summary['colmap']['points3D']} points); images/ holds its photos",
        "transforms.json": "cameras for NeRF / Gaussian-splatting tools (nerfstudio format)",
        "points.ply": f"coloured point cloud ({counts['written']} points)",
        "scene.glb": f"points + {summary['num_views']} camera frusta",
        "depth": "z-depth PNG (colour bar in metres) + .npy per photo",
        "confidence": "multi-view support PNG + .npy per photo",
        "network_confidence": "the network's own confidence, .npy per photo",
        "depth_original": "z-depth at each original photo's size, .npy",
        "preview.png": "render of the point cloud",
        "viewer.html": "3D viewer page: open it in a browser, works offline",
        "summary.json": f"cameras, warnings, timings ({summary['seconds']['total']:.1f} s)",
    }
    for name in summary.get("outputs", described):
        if name in described:
            shown = f"{name}/" if "." not in name else name
            print(f"  {shown:<20s}{described[name]}")


def main(argv: list[str] | None = None) -> None:
    """The ``pixio-recon`` console script."""
    args = build_parser().parse_args(argv)
    run_guarded("pixio-recon", lambda: _main(args))


def _main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from pixio_3d.pipeline import reconstruct_photos
    from pixio_3d.sfm import quiet_pycolmap_logs
    from pixio_core.devices import resolve_device

    quiet_pycolmap_logs()
    if not Path(args.photos).exists():  # before the checkpoint: the user's input comes first
        raise SystemExit(f"pixio-recon: photo folder or video {args.photos} does not exist")

    if args.model is not None and args.checkpoint is not None:
        raise SystemExit("pixio-recon: pass either --model or --checkpoint, not both")
    if args.model is not None:
        model, config, checkpoint = load_model_arg(args.model, "pixio-recon")
    else:
        model, config, checkpoint = load_checkpoint_arg(args.checkpoint, "pixio-recon")
    if config["task"] != "reconstruction":
        raise SystemExit(
            f"pixio-recon: {checkpoint} is a {config['task']!r} checkpoint; reconstruction needs "
            "a 'reconstruction' checkpoint (for one photo and a depth checkpoint use pixio-depth)"
        )
    try:
        feature_settings = parse_feature_settings(args.feature_settings)
    except ValueError as error:
        raise SystemExit(f"pixio-recon: --feature-settings: {error}") from None
    model = model.to(resolve_device(args.device))
    summary = reconstruct_photos(
        args.photos,
        args.out,
        model,
        overwrite=args.overwrite,
        min_confidence=args.min_confidence,
        confidence_quantile=args.confidence_quantile,
        voxel_size=args.voxel_size,
        max_points=args.max_points,
        long_side=args.long_side,
        min_side=args.min_side,
        focal_px=args.focal_px,
        cameras=args.cameras,
        fps=args.fps,
        exif_focal=not args.no_exif_focal,
        pose_solver=args.pose_solver,
        feature_settings=feature_settings,
        fusion=args.fusion,
        precision=args.precision,
        original_depth=args.original_depth,
        checkpoint=str(checkpoint),
        progress=not args.no_progress,
    )
    print_summary(summary)


if __name__ == "__main__":
    main()
