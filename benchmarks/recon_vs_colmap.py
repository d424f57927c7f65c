"""Pixio multi-view reconstruction vs COLMAP incremental SfM on the same views.

For every scene and view count ``V`` (default 2, 4, 8, 16) both methods get the same ``V``
views: ``--selection first`` (default) takes the first ``V`` views of the scene's ordering
(generated scenes put 16 cameras on a ring, so these are neighbours ~22.5 degrees apart
covering an arc of 22.5 (V - 1) degrees); ``--selection overlap`` takes the views
:class:`pixio_3d.data.MultiViewDataset` draws (covisibility-driven, seed ``--seed``).

Scored alike for both methods:

- poses: :func:`pixio_3d.evaluation.metrics.pose_metrics` AUC@5 / AUC@30 over all view pairs, a pair with an
  unregistered view counting as failed (the model registers every view);
- points: the number of 3D points (COLMAP's sparse model; the model's ``V H W`` pixels), and the
  Chamfer distance (accuracy: prediction to GT, completeness: GT to prediction, metres) to the
  GT points lifted from the views' depth, after a Sim(3) alignment fitted on the registered
  cameras (centres and axes), at most ``--max-chamfer-points`` random points per cloud (the
  subsampling floor, GT against itself: 0 up to that many points, ~1 cm for 16 views at
  256x192), and precision / recall: the share of predicted points within ``--threshold`` of a
  GT point and of GT points within it of a predicted one;
- the fused clouds: with the ``features`` solver, rows ``...-features-fused`` score the cloud
  ``pixio-recon`` writes by default, the pixels no other view contradicts
  (:mod:`pixio_3d.sfm.fusion`, mode ``consistent``), and ``...-features-verified`` those another
  view confirms (``pixio-recon --fusion verified``), with the same cameras; their seconds
  include the check (``--fusion``);
- resolution: COLMAP always gets the scenes' images; the model gets them resized to
  ``--model-size`` if given (e.g. its training size), as a user's photos would be;
- seconds: COLMAP from writing the images to reading the model (one run); the model's
  ``infer`` on preloaded tensors (median of ``--repeats`` runs after one warm-up run; loading the
  checkpoint is not counted), in ``--precision`` (default ``auto``, as ``pixio-recon``: bf16
  autocast where the CPU has it natively, else fp32; the dtype used is
  ``environment.model_precision`` in the JSON);
- peak memory: peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) during the
  run minus the resident set just before (after ``malloc_trim``), in MiB, for both methods.

Without ``--checkpoint`` only COLMAP runs. Held-out scenes are generated with ``--seed`` (default
1000) unless ``--scenes`` is given: scene ``i`` of a dataset has seed
``SeedSequence([seed, i])``, so a dataset seed other than the training data's (``pixio-scenes``
defaults to 0) never draws a training scene. Prints a markdown table and writes JSON (default
``benchmarks/results/recon_vs_colmap.json``).

Example: ``MUJOCO_GL=egl python benchmarks/recon_vs_colmap.py --num-scenes 4 --threads 1
--checkpoint outputs/recon_tiny/run/checkpoints --model-size 128x96 --pose-solvers head,matches``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from pixio_core.precision import PRECISIONS, resolve_precision

COLMAP_CONFIGS = ("known", "known-sparse", "known-tuned", "estimated", "estimated-sparse")
MODEL_CONFIGS = ("known", "estimated")
FUSED_NAMES = {"consistent": "fused", "verified": "verified"}  # row suffix per fusion mode


# ------------------------------------------------------------------------------------- memory
def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


class PeakMemory:
    """Peak resident set during a ``with`` block minus the resident set before it, in MiB."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so RSS is honest
        except OSError:
            pass
        self.before = _rss_mib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.counter = "VmHWM"
        except OSError:
            self.counter = "ru_maxrss (not reset: a lower bound only when it grows)"
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.counter == "VmHWM":
            peak = _rss_mib("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.extra_mib = max(0.0, peak - self.before)


# ------------------------------------------------------------------------------------ scoring
def _alignment_points(cam2world: np.ndarray) -> np.ndarray:
    """Camera centres and points one spread (RMS distance of the centres to their mean) along
    each camera axis: ``(4 V, 3)``, so a Sim(3) fit also pins rotations (2 views suffice)."""
    centres = cam2world[:, :3, 3]
    spread = np.sqrt(((centres - centres.mean(0)) ** 2).sum(-1).mean())
    spread = spread if spread > 1e-9 else 1.0
    axes = centres[:, None, :] + spread * cam2world[:, :3, :3].transpose(0, 2, 1)
    return np.concatenate([centres, axes.reshape(-1, 3)])


def _subsample(points: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return points[rng.choice(len(points), limit, replace=False)] if len(points) > limit else points


def gt_points(depth: np.ndarray, intrinsics: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    """World points ``(N, 3)`` of every valid pixel of ``depth (V, H, W)``."""
    _, height, width = depth.shape
    rows, cols = np.mgrid[0:height, 0:width]
    pixels = np.stack([cols + 0.5, rows + 0.5, np.ones_like(cols, dtype=float)], -1)
    clouds = []
    for z, matrix, pose in zip(depth, intrinsics, cam2world, strict=True):
        valid = z > 0
        camera = (pixels[valid] @ np.linalg.inv(matrix).T) * z[valid, None]
        clouds.append(camera @ pose[:3, :3].T + pose[:3, 3])
    return np.concatenate(clouds)


def score(
    pred_cam2world: np.ndarray,
    registered: np.ndarray,
    pred_points: np.ndarray,
    gt_cam2world: np.ndarray,
    gt_cloud: np.ndarray,
    max_points: int,
    seed: int,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Pose metrics (unregistered = failure) and Sim(3)-aligned Chamfer of one prediction; with
    ``threshold`` (metres) also the share of predicted points within it of the GT (precision)
    and of GT points within it of the prediction (recall)."""
    from pixio_3d.evaluation.metrics import chamfer_distance, pose_metrics

    poses = np.where(registered[:, None, None], pred_cam2world, np.eye(4))  # NaN-free input
    result: dict[str, Any] = pose_metrics(poses, gt_cam2world, registered=registered)
    result.update(num_registered=int(registered.sum()), num_points=int(len(pred_points)))
    result.update(chamfer=None, chamfer_accuracy=None, chamfer_completeness=None)
    result.update(precision=None, recall=None)
    if registered.sum() >= 2 and len(pred_points):
        rng = np.random.default_rng(seed)
        chamfer = chamfer_distance(
            _subsample(pred_points, max_points, rng),
            _subsample(gt_cloud, max_points, rng),
            correspondences=(
                _alignment_points(pred_cam2world[registered]),
                _alignment_points(gt_cam2world[registered]),
            ),
            fscore_threshold=threshold,
        )
        result.update(
            chamfer=chamfer["chamfer"],
            chamfer_accuracy=chamfer["accuracy"],
            chamfer_completeness=chamfer["completeness"],
        )
        if threshold is not None:
            result.update(precision=chamfer["precision"], recall=chamfer["recall"])
    return result


# ------------------------------------------------------------------------------------ methods
def run_colmap(scene: dict[str, Any], config: str, args: argparse.Namespace) -> dict[str, Any]:
    from pixio_3d.sfm.colmap_baseline import run_colmap_sfm

    intrinsics, _, settings = config.partition("-")

    def once() -> dict[str, Any]:
        return run_colmap_sfm(
            scene["rgb"],
            None,
            scene["intrinsics"] if intrinsics == "known" else None,
            settings=settings or "default",
            contrast_stretch=args.contrast_stretch,
            num_threads=args.threads if args.threads > 0 else -1,
            seed=args.seed,
        )

    with PeakMemory() as memory:
        result = once()
    # repeats (the same seed: the same model) time it as the model is timed, by a median
    times = [once()["seconds"] for _ in range(args.colmap_repeats)]
    return {
        "cam2world": result["cam2world"],
        "registered": result["registered"],
        "points": result["points"],
        "seconds": statistics.median(times) if times else result["seconds"],
        "peak_extra_mib": memory.extra_mib,
        "extra": {
            "first_seconds": result["seconds"],
            "status": result["status"],
            "stage_seconds": result["stage_seconds"],
            "keypoints_per_view": float(result["keypoints"].mean()),
        },
    }


def run_model(
    model: Any,
    scene: dict[str, Any],
    config: str,
    repeats: int,
    size: tuple[int, int] | None = None,
    pose_solver: str = "head",
    feature_settings: Any = None,
    fusion: tuple[str, ...] = (),
    precision: str = "fp32",
) -> dict[str, Any]:
    """:func:`pixio_3d.pipeline.predict` on the views (resized to ``size = (W, H)`` with ``K``
    scaled, if given), poses from ``pose_solver``. The ``features`` solver takes its keypoints
    from the scene's images at their own size (COLMAP's input)."""
    import torch
    import torch.nn.functional as F

    from pixio_3d.pipeline import predict
    from pixio_core.imaging import IMAGENET_MEAN, IMAGENET_STD

    rgb = torch.from_numpy(scene["rgb"]).permute(0, 3, 1, 2).float() / 255.0
    intrinsics = torch.from_numpy(scene["intrinsics"]).float()
    if size is not None and size != (rgb.shape[-1], rgb.shape[-2]):
        scale_x, scale_y = size[0] / rgb.shape[-1], size[1] / rgb.shape[-2]
        rgb = F.interpolate(rgb, size=(size[1], size[0]), mode="bilinear", antialias=True)
        # pixel centres at +0.5 on both grids: continuous coordinates scale, cx = W/2 stays W'/2
        intrinsics = torch.diag(torch.tensor([scale_x, scale_y, 1.0])) @ intrinsics
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    images = ((rgb.clamp(0, 1) - mean) / std)[None]
    intrinsics = intrinsics[None] if config == "known" else None
    photos = [list(scene["rgb"])] if pose_solver == "features" else None
    with torch.inference_mode(), PeakMemory() as memory:
        start = time.perf_counter()
        output = predict(
            model,
            images,
            intrinsics,
            pose_solver=pose_solver,
            photos=photos,
            feature_settings=feature_settings,
            precision=precision,
        )
        cold = time.perf_counter() - start
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            predict(
                model,
                images,
                intrinsics,
                pose_solver=pose_solver,
                photos=photos,
                feature_settings=feature_settings,
                precision=precision,
            )
            times.append(time.perf_counter() - start)
    views = scene["rgb"].shape[0]
    cam2world = output["camera_poses"][0].double().numpy()
    points = output["pts3d"][0].double().numpy()
    result = {
        "cam2world": cam2world,
        "registered": np.ones(views, bool),
        "points": points.reshape(-1, 3),
        "seconds": statistics.median(times) if times else cold,
        "peak_extra_mib": memory.extra_mib,
        "extra": {"cold_seconds": cold},
    }
    if pose_solver == "features" and fusion:  # pixio-recon's fused clouds
        from pixio_3d.sfm.fusion import consistency

        start = time.perf_counter()
        fused = consistency(
            output["depth_z"][0].double().numpy(),
            output["intrinsics"][0].double().numpy(),
            cam2world,
        )
        seconds = result["seconds"] + time.perf_counter() - start
        result["fused"] = {mode: (points[fused.kept(mode)], seconds) for mode in fusion}
    return result


# --------------------------------------------------------------------------------------- data
def _size(text: str) -> tuple[int, int]:
    from pixio_3d.cli.scenes import parse_size

    width, height = parse_size(text)
    if width < 16 or height < 16 or width % 16 or height % 16:
        raise argparse.ArgumentTypeError(f"size sides must be multiples of 16, got {text!r}")
    return width, height


def prepare_scenes(args: argparse.Namespace) -> list[Path]:
    """The given scenes, or held-out scenes generated once into ``--scenes-out``."""
    from pixio_3d.data import find_scenes, read_cameras

    if args.scenes is not None:
        return find_scenes(args.scenes)
    width, height = args.size
    out = args.scenes_out
    if out.is_dir() and any(out.iterdir()):
        scenes = find_scenes(out)[: args.num_scenes]
        info = [json.loads((s / "scene.json").read_text()) for s in scenes]
        cameras = [read_cameras(s) for s in scenes]
        if len(scenes) == args.num_scenes and all(
            i.get("dataset_seed") == args.seed
            and c.num_views == args.views_per_scene
            and (c.height, c.width) == (height, width)
            and i.get("config", {}).get("camera_arc_degrees") == args.arc_degrees
            for i, c in zip(info, cameras, strict=True)
        ):
            return scenes
        raise SystemExit(
            f"{out} holds other scenes (seed, size, views or arc differ); remove it or pass "
            "--scenes-out to another folder"
        )
    from pixio_3d.data.scenes import SceneConfig, generate_dataset

    print(f"generating {args.num_scenes} held-out scenes (seed {args.seed}) into {out}")
    return generate_dataset(
        out,
        args.num_scenes,
        args.views_per_scene,
        height,
        width,
        seed=args.seed,
        config=SceneConfig(camera_arc_degrees=args.arc_degrees),
    )


def select_views(args: argparse.Namespace, scene_index: int, total: int, views: int) -> np.ndarray:
    if args.selection == "first":
        return np.arange(views)
    from pixio_3d.data import MultiViewDataset

    root = args.scenes if args.scenes is not None else args.scenes_out
    dataset = MultiViewDataset(root, views, view_selection="overlap", seed=args.seed)
    return dataset.select_views(scene_index)


# ------------------------------------------------------------------------------------- report
def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over scenes per (method, views); Chamfer over the scenes where it is defined."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["views"]), []).append(row)
    summary = []
    for (method, views), group in groups.items():
        chamfers = [r for r in group if r["chamfer"] is not None]

        def mean(key: str, items: list[dict[str, Any]] = group) -> float | None:
            return float(np.mean([r[key] for r in items])) if items else None

        summary.append(
            {
                "method": method,
                "views": views,
                "scenes": len(group),
                "registered_ratio": mean("registered_ratio"),
                "auc_5": mean("auc_5"),
                "auc_30": mean("auc_30"),
                "num_points": mean("num_points"),
                "chamfer_scenes": len(chamfers),
                "chamfer_accuracy": mean("chamfer_accuracy", chamfers),
                "chamfer_completeness": mean("chamfer_completeness", chamfers),
                "precision": mean("precision", [r for r in chamfers if r["precision"] is not None]),
                "recall": mean("recall", [r for r in chamfers if r["recall"] is not None]),
                "seconds": mean("seconds"),
                "peak_extra_mib": float(max(r["peak_extra_mib"] for r in group)),
            }
        )
    return sorted(summary, key=lambda s: (s["views"], s["method"]))


def markdown_table(summary: list[dict[str, Any]]) -> str:
    def number(value: float | None, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "| method | views | scenes | registered | AUC@5 | AUC@30 | points | Chamfer acc / comp "
        "(m, scenes) | within threshold: precision / recall | seconds | peak extra MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        chamfer = (
            f"{number(s['chamfer_accuracy'], 3)} / {number(s['chamfer_completeness'], 3)} "
            f"({s['chamfer_scenes']})"
        )
        lines.append(
            f"| {s['method']} | {s['views']} | {s['scenes']} | {s['registered_ratio']:.2f} | "
            f"{s['auc_5']:.3f} | {s['auc_30']:.3f} | {s['num_points']:.0f} | {chamfer} | "
            f"{number(s['precision'], 2)} / {number(s['recall'], 2)} | "
            f"{s['seconds']:.2f} | {s['peak_extra_mib']:.0f} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="pixio_3d reconstruction checkpoint/run")
    parser.add_argument("--scenes", type=Path, help="existing scenes, all used (else generated)")
    parser.add_argument("--scenes-out", type=Path, default=Path("outputs/recon_vs_colmap_scenes"))
    parser.add_argument("--num-scenes", type=int, default=4)
    parser.add_argument(
        "--views-per-scene", type=int, default=16, help="cameras per generated scene"
    )
    parser.add_argument(
        "--arc-degrees", type=float, default=360.0, help="camera arc when generating"
    )
    parser.add_argument("--seed", type=int, default=1000, help="held-out dataset seed; COLMAP seed")
    parser.add_argument("--views", default="2,4,8,16", help="comma-separated view counts")
    parser.add_argument("--size", type=_size, default=(256, 192), help="WxH of generated scenes")
    parser.add_argument(
        "--model-size",
        type=_size,
        help="WxH the model sees (views resized, K scaled); default: the scenes' size",
    )
    parser.add_argument("--selection", choices=("first", "overlap"), default="first")
    parser.add_argument(
        "--colmap-configs",
        default="known,known-sparse,estimated",
        help=f"comma-separated, each intrinsics[-settings] of {COLMAP_CONFIGS}",
    )
    parser.add_argument(
        "--model-configs", default="known,estimated", help="known: infer is given K"
    )
    parser.add_argument(
        "--pose-solvers",
        default="head",
        help="comma-separated model pose solvers: head, matches, features "
        "(methods pixio-<config>[-<solver>])",
    )
    parser.add_argument(
        "--feature-settings",
        default="",
        help="features solver: comma-separated FeatureSettings overrides, e.g. "
        "'max_trials=1000,bundle_adjustment=false'",
    )
    parser.add_argument(
        "--no-contrast-stretch",
        dest="contrast_stretch",
        action="store_false",
        help="give COLMAP the raw renders (they are dark: few SIFT keypoints survive)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch and COLMAP threads (0: all)")
    parser.add_argument(
        "--colmap-repeats",
        type=int,
        default=0,
        help="COLMAP runs again this many times and its seconds are their median (0: the one run)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed model runs after warm-up")
    parser.add_argument("--max-chamfer-points", type=int, default=100000)
    parser.add_argument(
        "--fusion",
        default="consistent,verified",
        help="features solver: fused clouds to score too, comma-separated of consistent "
        "(pixio-recon's default; rows ...-fused), verified (rows ...-verified); '' for none",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the model's arithmetic, as pixio-recon --precision (default auto: bf16 where "
        "native); the resolved dtype is in the JSON's environment",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.1,
        help="metres: precision / recall of the points within this distance (default 0.1)",
    )
    parser.add_argument("--colmap-verbose", action="store_true", help="keep COLMAP's glog output")
    parser.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/recon_vs_colmap.json")
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    try:
        view_counts = sorted({int(v) for v in args.views.split(",")})
    except ValueError:
        raise SystemExit(f"--views must be comma-separated integers, got {args.views!r}") from None
    colmap_configs = [c for c in args.colmap_configs.split(",") if c]
    model_configs = [c for c in args.model_configs.split(",") if c]
    for config in colmap_configs:
        if config not in COLMAP_CONFIGS:
            raise SystemExit(f"unknown COLMAP config {config!r}; choose from {COLMAP_CONFIGS}")
    for config in model_configs:
        if config not in MODEL_CONFIGS:
            raise SystemExit(f"unknown model config {config!r}; choose from {MODEL_CONFIGS}")
    from pixio_3d.sfm import POSE_SOLVERS, parse_feature_settings

    try:
        feature_settings = parse_feature_settings(args.feature_settings)
    except ValueError as error:
        raise SystemExit(f"--feature-settings: {error}") from None

    fusion = tuple(m for m in args.fusion.split(",") if m)
    for mode in fusion:
        if mode not in FUSED_NAMES:
            raise SystemExit(f"unknown --fusion mode {mode!r}; choose from {tuple(FUSED_NAMES)}")
    pose_solvers = [s for s in args.pose_solvers.split(",") if s]
    for solver in pose_solvers:
        if solver not in POSE_SOLVERS:
            raise SystemExit(f"unknown pose solver {solver!r}; choose from {POSE_SOLVERS}")
    if min(view_counts) < 2:
        raise SystemExit("--views must all be >= 2 (pose metrics score view pairs)")
    os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is first imported

    import pycolmap

    if not args.colmap_verbose:
        pycolmap.logging.minloglevel = 3  # failures are recorded in the JSON instead
    model = None
    environment: dict[str, Any] = {"pycolmap": pycolmap.__version__}
    if args.checkpoint is not None:
        import cv2
        import torch

        from pixio_3d.checkpoint import load_model

        if args.threads > 0:
            torch.set_num_threads(args.threads)
            cv2.setNumThreads(args.threads)  # the features solver's OpenCV SIFT
        model, model_config = load_model(args.checkpoint)
        if model_config["task"] != "reconstruction":
            raise SystemExit(f"{args.checkpoint} is a {model_config['task']!r} model")
        environment.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
        environment.update(opencv=cv2.__version__, opencv_threads=cv2.getNumThreads())
        environment["checkpoint_config"] = model_config
        environment["model_precision"] = str(resolve_precision(args.precision, "cpu"))
    else:
        print("no --checkpoint: running COLMAP only")
        model_configs = []

    from pixio_3d.data import read_scene

    scene_dirs = prepare_scenes(args)
    scenes = [read_scene(d) for d in scene_dirs]
    for directory, scene in zip(scene_dirs, scenes, strict=True):
        if scene["rgb"].shape[0] < max(view_counts):
            raise SystemExit(
                f"{directory} has {scene['rgb'].shape[0]} views; need {max(view_counts)}"
            )
    environment.update(
        load_average_start=os.getloadavg(), cpu_count=os.cpu_count(), machine=platform.machine()
    )
    rows: list[dict[str, Any]] = []
    for views in view_counts:
        for index, (directory, scene) in enumerate(zip(scene_dirs, scenes, strict=True)):
            chosen = select_views(args, index, scene["rgb"].shape[0], views)
            subset = {
                key: scene[key][chosen] for key in ("rgb", "depth", "intrinsics", "cam2world")
            }
            cloud = gt_points(subset["depth"], subset["intrinsics"], subset["cam2world"])
            methods = [("colmap", c, "") for c in colmap_configs]
            methods += [("pixio", c, s) for c in model_configs for s in pose_solvers]
            for kind, config, solver in methods:
                name = f"{kind}-{config}" + (f"-{solver}" if solver not in ("", "head") else "")
                if kind == "colmap":
                    outcome = run_colmap(subset, config, args)
                else:
                    outcome = run_model(
                        model,
                        subset,
                        config,
                        args.repeats,
                        args.model_size,
                        solver,
                        feature_settings,
                        fusion,
                        args.precision,
                    )
                # the method's own cloud, then with the features solver its fused clouds
                clouds = {name: (outcome["points"], outcome["seconds"])}
                for mode, fused in outcome.get("fused", {}).items():
                    clouds[f"{name}-{FUSED_NAMES[mode]}"] = fused
                for method, (points, seconds) in clouds.items():
                    metrics = score(
                        outcome["cam2world"],
                        outcome["registered"],
                        points,
                        subset["cam2world"],
                        cloud,
                        args.max_chamfer_points,
                        args.seed + index,
                        args.threshold,
                    )
                    rows.append(
                        {
                            "method": method,
                            "views": views,
                            "scene": directory.name,
                            "view_indices": chosen.tolist(),
                            "seconds": seconds,
                            "peak_extra_mib": outcome["peak_extra_mib"],
                            **metrics,
                            **outcome["extra"],
                        }
                    )
                row = rows[-len(clouds)]  # the method's own row, printed
                print(
                    f"V={views:2d} {directory.name} {name:22s} reg {row['num_registered']:2d}/{views} "
                    f"AUC@5 {row['auc_5']:.3f} AUC@30 {row['auc_30']:.3f} "
                    f"pts {row['num_points']:7d} {row['seconds']:6.2f} s",
                    flush=True,
                )
    environment["load_average_end"] = os.getloadavg()
    summary = summarize(rows)
    print()
    print(markdown_table(summary))
    report = {
        "benchmark": "recon_vs_colmap",
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "scenes": [str(d) for d in scene_dirs],
        "environment": environment,
        "notes": (
            "AUC over all view pairs, pairs with an unregistered view fail; Chamfer after a "
            "Sim(3) fit on registered camera centres+axes, <= max_chamfer_points per cloud; "
            "COLMAP seconds: images to model, one run (with --colmap-repeats the median of "
            "that many more); model seconds: median infer after a warm-up run; peak extra "
            "MiB: VmHWM minus RSS before the run"
        ),
        "summary": summary,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
