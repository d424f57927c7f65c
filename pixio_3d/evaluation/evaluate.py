"""Evaluation of 3D models on held-out scenes: one row of averaged metrics per setting.

Reconstruction (per sample of ``V`` views, then averaged over samples; definitions in
:mod:`pixio_3d.evaluation.metrics`, MapAnything key names where they exist):

* ``pointmaps_abs_rel``, ``pointmaps_inlier_thres_103``: world points, each side in its own
  view-0 frame divided by its avg-dis factor; rel = ``||X^ - X|| / ||X||``, tau = share of
  ``max(||X||/||X^||, ||X^||/||X||) < 1.03``.
* ``z_depth_abs_rel``, ``z_depth_inlier_thres_103``: z-depth after the same normalisation.
* ``metric_scale_abs_rel``: ``|z^ - z| / z`` of the avg-dis factors of the metric prediction.
* ``ray_dirs_err_deg``: mean ray angle (0 by construction when intrinsics are given).
* ``pose_auc_5``, ``pose_auc_30``, ``pose_rra_15``, ``pose_rta_15``: all pairs ``i < j``, error =
  max(rotation, translation-direction) in degrees (VGGT AUC, fractions in [0, 1]).
* ``pose_ate_rmse``: MapAnything's: normalised camera centres, rigid (Horn) alignment, mean error
  (unitless); ``pose_ate_sim3``: evo style, Umeyama Sim(3) of metric centres, RMSE in metres.
  Both need 3 views (NaN, written ``null``, for 2).
* ``chamfer_accuracy``, ``chamfer_completeness``, ``chamfer``: metres, after a Umeyama Sim(3)
  alignment of the predicted to the GT valid points (corresponding pixels).
* ``depth_abs_rel``, ``depth_delta1``: per-view median-scaled z-depth (``alignment="median"``);
  ``metric_depth_abs_rel``, ``metric_depth_delta1``: as predicted (``alignment="none"``).

Monocular depth: AbsRel and delta1 over all views of the scenes, relative models aligned with
least-squares scale and shift in disparity, metric models unaligned. Segmentation: mIoU and
pixel accuracy from one confusion matrix over the whole set (:func:`segmentation_metrics`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from pixio_3d.data import MultiViewDataset, find_scenes, read_cameras, read_view
from pixio_3d.data.labels import IGNORE_INDEX, apply_labels, label_table
from pixio_3d.evaluation.metrics import (
    absolute_trajectory_error,
    chamfer_distance,
    depth_metrics,
    metric_scale_abs_rel,
    normalize_scene,
    pointmap_metrics,
    pose_metrics,
    ray_angular_error,
)
from pixio_3d.geometry import points_from_z_depth, ray_directions, transform_points
from pixio_3d.pipeline import predict
from pixio_3d.tasks import DEFAULT_VIEW_COUNTS, EvalOptions, get_task
from pixio_core.imaging import normalize_images
from pixio_core.io import atomic_write_text

DEFAULT_OPTIONS = EvalOptions()
RECONSTRUCTION_KEYS = (
    "pointmaps_abs_rel",
    "pointmaps_inlier_thres_103",
    "z_depth_abs_rel",
    "z_depth_inlier_thres_103",
    "metric_scale_abs_rel",
    "ray_dirs_err_deg",
    "pose_auc_5",
    "pose_auc_30",
    "pose_rra_15",
    "pose_rta_15",
    "pose_ate_rmse",
    "pose_ate_sim3",
    "chamfer_accuracy",
    "chamfer_completeness",
    "chamfer",
    "depth_abs_rel",
    "depth_delta1",
    "metric_depth_abs_rel",
    "metric_depth_delta1",
)
# markdown columns: (key, header)
TABLE_COLUMNS = {
    "reconstruction": [
        ("pointmaps_abs_rel", "points rel ↓"),
        ("pointmaps_inlier_thres_103", "points τ@1.03 ↑"),
        ("pose_auc_5", "AUC@5 ↑"),
        ("pose_auc_30", "AUC@30 ↑"),
        ("pose_ate_rmse", "ATE (norm.) ↓"),
        ("chamfer", "Chamfer m ↓"),
        ("depth_abs_rel", "depth AbsRel ↓"),
        ("depth_delta1", "depth δ1 ↑"),
        ("metric_scale_abs_rel", "scale rel ↓"),
    ],
    "depth": [("abs_rel", "AbsRel ↓"), ("delta1", "δ1 ↑"), ("rmse", "RMSE ↓")],
    "segmentation": [("miou", "mIoU ↑"), ("pixel_accuracy", "pixel acc. ↑")],
}


# ------------------------------------------------------------------------------ reconstruction
def reconstruction_metrics(
    prediction: dict[str, torch.Tensor],
    sample: dict[str, torch.Tensor],
    max_chamfer_points: int = 20000,
    seed: int = 0,
) -> dict[str, float]:
    """All :data:`RECONSTRUCTION_KEYS` of one scene.

    ``prediction``: :meth:`ReconstructionModel.infer` output for one scene (batch dim dropped):
    ``pts3d (V, H, W, 3)``, ``camera_poses (V, 4, 4)``, ``depth_z (V, H, W)``,
    ``ray_directions (V, H, W, 3)``. ``sample``: a :class:`MultiViewDataset` item (``depth``,
    ``valid_mask``, ``intrinsics``, ``cam2world``). Chamfer uses at most ``max_chamfer_points``
    valid pixels, drawn with ``seed``.
    """
    depth, valid = sample["depth"].double(), sample["valid_mask"].bool()
    intrinsics, gt_poses = sample["intrinsics"].double(), sample["cam2world"].double()
    gt_points = transform_points(gt_poses, points_from_z_depth(depth, intrinsics))
    pred_points = prediction["pts3d"].double()
    pred_poses = prediction["camera_poses"].double()
    out = dict(pointmap_metrics(pred_points, gt_points, valid, pred_poses, gt_poses))
    out["metric_scale_abs_rel"] = metric_scale_abs_rel(
        pred_points, gt_points, valid, pred_poses, gt_poses
    )
    # MapAnything: each side's avg-dis factor (view-0 frame) also divides camera-frame z-depth
    _, pred_poses_norm, pred_factor = normalize_scene(pred_points, valid, pred_poses)
    _, gt_poses_norm, gt_factor = normalize_scene(gt_points, valid, gt_poses)
    z_pred = prediction["depth_z"].double() / max(pred_factor, 1e-12)
    z_metrics = depth_metrics(z_pred, depth / gt_factor, valid, alignment="none")
    out["z_depth_abs_rel"] = z_metrics["abs_rel"]
    out["z_depth_inlier_thres_103"] = z_metrics["inlier_103"]
    gt_rays = ray_directions(intrinsics, *depth.shape[-2:])
    out["ray_dirs_err_deg"] = ray_angular_error(prediction["ray_directions"], gt_rays)
    poses = pose_metrics(pred_poses, gt_poses, auc_thresholds_deg=(5, 30))
    out.update(
        pose_auc_5=poses["auc_5"],
        pose_auc_30=poses["auc_30"],
        pose_rra_15=poses["rra_15"],
        pose_rta_15=poses["rta_15"],
        pose_ate_sim3=poses["ate"],
        pose_ate_rmse=absolute_trajectory_error(
            pred_poses_norm, gt_poses_norm, with_scale=False, reduction="mean"
        ),
    )
    pred_valid, gt_valid = pred_points[valid], gt_points[valid]
    if pred_valid.shape[0] > max_chamfer_points:
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(pred_valid.shape[0], generator=generator)[:max_chamfer_points]
        pred_valid, gt_valid = pred_valid[keep], gt_valid[keep]
    chamfer = chamfer_distance(pred_valid, gt_valid, alignment="sim3")
    out.update(
        chamfer_accuracy=chamfer["accuracy"],
        chamfer_completeness=chamfer["completeness"],
        chamfer=chamfer["chamfer"],
    )
    for prefix, alignment in (("depth", "median"), ("metric_depth", "none")):
        values = depth_metrics(prediction["depth_z"], depth, valid, alignment=alignment)
        out[f"{prefix}_abs_rel"], out[f"{prefix}_delta1"] = values["abs_rel"], values["delta1"]
    return out


def usable_view_counts(scenes: str | os.PathLike, view_counts: tuple[int, ...]) -> list[int]:
    """The requested counts that every scene has enough views for (a warning names the others)."""
    fewest = min(read_cameras(d).num_views for d in find_scenes(scenes))
    usable = [v for v in view_counts if 2 <= v <= fewest]
    dropped = [v for v in view_counts if v not in usable]
    if dropped:
        print(f"skipping view counts {dropped}: scenes in {scenes} have as few as {fewest} views")
    if not usable:
        raise ValueError(f"no usable view count among {view_counts} (scenes have {fewest} views)")
    return usable


def _mean_rows(values: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean of each key over samples, ignoring NaN; ``None`` where every sample is NaN."""
    out: dict[str, float | None] = {}
    for key in values[0]:
        column = np.array([v[key] for v in values], dtype=np.float64)
        finite = column[np.isfinite(column)]
        out[key] = float(finite.mean()) if finite.size else None
    return out


@torch.no_grad()
def evaluate_reconstruction(
    model: nn.Module,
    scenes: str | os.PathLike,
    view_counts: tuple[int, ...] = DEFAULT_VIEW_COUNTS,
    *,
    options: EvalOptions = DEFAULT_OPTIONS,
) -> list[dict[str, Any]]:
    """One row per view count: ``{"task", "views", "num_samples", "inputs", "view_selection",
    "pose_solver", <metrics>}``.

    Samples are :class:`MultiViewDataset` draws (``options.view_selection``: ``overlap`` =
    views anywhere that see each other, wide baselines; ``sequential`` = a walk in the scenes'
    view order; ``options.seed``) of every scene; the model sees images only unless
    ``options.give_intrinsics``; cameras from ``options.pose_solver`` (see
    :func:`pixio_3d.pipeline.predict`).
    """
    model.eval()
    rows = []
    for views in usable_view_counts(scenes, tuple(view_counts)):
        dataset = MultiViewDataset(
            scenes,
            views,
            view_selection=options.view_selection,
            samples_per_scene=options.samples_per_scene,
            seed=options.seed,
        )
        values = []
        for index in tqdm(
            range(len(dataset)), desc=f"eval {views} views", disable=not options.progress
        ):
            sample = dataset[index]
            images = normalize_images(sample["images"]).unsqueeze(0).to(options.device)
            intrinsics = None
            if options.give_intrinsics:
                intrinsics = sample["intrinsics"].unsqueeze(0).to(options.device)
            prediction = predict(
                model,
                images,
                intrinsics,
                pose_solver=options.pose_solver,
                feature_settings=options.feature_settings,
            )
            prediction = {k: v[0].cpu() for k, v in prediction.items()}
            values.append(reconstruction_metrics(prediction, sample, seed=options.seed + index))
        rows.append(
            {
                "task": "reconstruction",
                "views": views,
                "num_samples": len(values),
                "inputs": "images + intrinsics" if options.give_intrinsics else "images",
                "view_selection": options.view_selection,
                "pose_solver": options.pose_solver,
                **_mean_rows(values),
            }
        )
    return rows


# ------------------------------------------------------------------------------ dense tasks
def _scene_views(scenes: str | os.PathLike, max_views_per_scene: int | None):
    for scene_dir in find_scenes(scenes):
        cameras = read_cameras(scene_dir)
        count = min(cameras.num_views, max_views_per_scene or cameras.num_views)
        yield scene_dir, [read_view(cameras, k) for k in range(count)]


def _images(views: list[dict[str, np.ndarray]], device: torch.device | str) -> torch.Tensor:
    rgb = torch.from_numpy(np.stack([v["rgb"] for v in views])).permute(0, 3, 1, 2)
    return normalize_images(rgb.float() / 255.0).to(device)


@torch.no_grad()
def evaluate_depth(
    model: nn.Module,
    scenes: str | os.PathLike,
    *,
    max_views_per_scene: int | None = None,
    device: torch.device | str = "cpu",
) -> list[dict[str, Any]]:
    """One row: AbsRel, delta1 (and the rest of :func:`depth_metrics`) averaged over all views
    of all scenes; relative models are aligned by scale and shift in disparity."""
    model.eval()
    mode = model.config.mode
    alignment = "disparity_scale_shift" if mode == "relative" else "none"
    per_view = []
    for _, views in _scene_views(scenes, max_views_per_scene):
        output = model(_images(views, device))
        predicted = output["disparity" if mode == "relative" else "depth"].cpu()
        for k, view in enumerate(views):
            gt = torch.from_numpy(view["depth"])
            if (gt > 0).any():
                # (1, H, W): metrics.depth_metrics rejects a 2-D valid mask
                gt, pred = gt[None], predicted[k][None]
                per_view.append(depth_metrics(pred, gt, gt > 0, alignment=alignment))
    if not per_view:
        raise ValueError(f"no view with valid depth in {scenes}")
    return [
        {
            "task": "depth",
            "views": 1,
            "num_samples": len(per_view),
            "inputs": f"image ({mode}; alignment {alignment})",
            **_mean_rows(per_view),
        }
    ]


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``(K, K)`` int64 counts, rows = target class, columns = predicted class; pixels whose
    target is ``ignore_index`` (or outside ``0..K-1``) are left out. Inputs: same-shape labels."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    index = target[keep].long() * num_classes + pred[keep].long().clamp(0, num_classes - 1)
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics_from_confusion(confusion: torch.Tensor) -> dict[str, float]:
    """``miou`` = mean over classes present in target or prediction of TP / (TP + FP + FN);
    ``pixel_accuracy`` = TP / all counted pixels (mmsegmentation's definitions)."""
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    present = union > 0
    total = confusion.sum()
    if total == 0:
        raise ValueError("no labelled pixel to score")
    return {
        "miou": float((true_positive[present] / union[present]).mean()),
        "pixel_accuracy": float(true_positive.sum() / total),
    }


def segmentation_metrics(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> dict[str, float]:
    """mIoU and pixel accuracy of predicted labels against target labels (any equal shapes)."""
    return metrics_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    scenes: str | os.PathLike,
    labels: str = "shape",
    *,
    max_views_per_scene: int | None = None,
    device: torch.device | str = "cpu",
) -> list[dict[str, Any]]:
    """One row: mIoU and pixel accuracy over all views of all scenes (one confusion matrix)."""
    model.eval()
    num_classes = model.config.num_classes
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    count = 0
    for scene_dir, views in _scene_views(scenes, max_views_per_scene):
        table = label_table(scene_dir, labels, num_classes)
        predicted = model(_images(views, device))["logits"].argmax(1).cpu()
        target = apply_labels(torch.from_numpy(np.stack([v["object_ids"] for v in views])), table)
        confusion += confusion_matrix(predicted, target, num_classes)
        count += len(views)
    return [
        {
            "task": "segmentation",
            "views": 1,
            "num_samples": count,
            "inputs": f"image ({labels} labels, {num_classes} classes)",
            **metrics_from_confusion(confusion),
        }
    ]


def evaluate_model(
    model: nn.Module,
    config: dict[str, Any],
    scenes: str | os.PathLike,
    view_counts: tuple[int, ...] = DEFAULT_VIEW_COUNTS,
    options: EvalOptions = DEFAULT_OPTIONS,
) -> list[dict[str, Any]]:
    """Score a :func:`pixio_3d.checkpoint.load_model` model (``config``: its ``config.json``) on
    ``scenes`` as its task (:data:`pixio_3d.tasks.TASKS`) says."""
    return get_task(config["task"]).evaluate(model, config, scenes, tuple(view_counts), options)


# ------------------------------------------------------------------------------ output
def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table per task: views, samples, inputs and the headline metrics."""
    lines: list[str] = []
    for task in dict.fromkeys(row["task"] for row in rows):
        columns = TABLE_COLUMNS[task]
        lines.append(f"### {task}\n")
        lines.append("| views | samples | inputs | " + " | ".join(h for _, h in columns) + " |")
        lines.append("|" + "---|" * (3 + len(columns)))
        for row in (r for r in rows if r["task"] == task):
            inputs = row["inputs"]
            if "view_selection" in row:
                inputs += f", {row['view_selection']} views"
            if row.get("pose_solver", "head") != "head":
                inputs += f", poses from {row['pose_solver']}"
            cells = [str(row["views"]), str(row["num_samples"]), inputs]
            cells += [_cell(row.get(key)) for key, _ in columns]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def eval_outputs(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """The two files :func:`write_eval` writes into ``out_dir``."""
    return Path(out_dir) / "results.json", Path(out_dir) / "results.md"


def check_eval_outputs(out_dir: str | os.PathLike, overwrite: bool) -> None:
    """``FileExistsError`` when ``out_dir`` already holds results and ``overwrite`` is false
    (call it before the evaluation, so no work is lost)."""
    existing = [str(p) for p in eval_outputs(out_dir) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} exist; pass --overwrite to replace them, or another --out"
        )


def write_eval(
    rows: list[dict[str, Any]],
    out_dir: str | os.PathLike,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """``out_dir/results.json`` (``{"meta", "rows"}``, NaN written as null) and
    ``out_dir/results.md`` (:func:`markdown_table` under the meta lines), atomically; existing
    results are only replaced with ``overwrite``. Returns both paths."""
    if not rows:
        raise ValueError("no result rows to write")
    check_eval_outputs(out_dir, overwrite)
    out = Path(out_dir)
    clean = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        for row in rows
    ]
    json_path, md_path = eval_outputs(out)
    atomic_write_text(json_path, json.dumps({"meta": meta or {}, "rows": clean}, indent=2))
    header = [f"- {key}: {value}" for key, value in (meta or {}).items()]
    atomic_write_text(
        md_path, "\n".join(["# pixio-recon-eval", "", *header, "", markdown_table(clean)])
    )
    return json_path, md_path
