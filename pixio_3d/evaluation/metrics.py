"""Reconstruction metrics with the anchors' exact definitions (MapAnything dense_n_view, VGGT, DUSt3R).

Inputs are numpy arrays or torch tensors (any float dtype; computed in float64 on the CPU);
results are Python floats. Conventions follow :mod:`pixio_3d.geometry`: OpenCV cameras,
camera-to-world 4x4 poses, view 0 is the reference.

Units:

- angles are in **degrees**;
- ratios (inlier ratio, delta, AUC, RRA/RTA) are **fractions in [0, 1]** (MapAnything and VGGT
  print them x100);
- distances (ATE, Chamfer, RMSE) are in the units of the ground truth (metres for metric data),
  except after ``normalize=True``, where both sides are divided by their own avg-dis factor and
  distances become unitless.

Normalisation (MapAnything ``normalize_multiple_pointclouds`` with ``avg_dis``): prediction and
ground truth are each expressed in their own view-0 camera frame, then each is divided by the
mean Euclidean norm of its valid points over all views (:func:`normalize_scene`). Metrics after
it are invariant to a global similarity transform of either side.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy.spatial import cKDTree

from pixio_3d.geometry import (
    average_point_norm,
    invert_pose,
    relative_poses,
    transform_points,
    umeyama,
)

ArrayLike = np.ndarray | torch.Tensor
DepthAlignment = Literal["none", "median", "scale_shift", "disparity_scale_shift"]
UNREGISTERED_ERROR_DEG = 180.0


def _tensor(value: ArrayLike, name: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}") from error


def _mask(valid: ArrayLike | None, shape: tuple[int, ...], name: str = "valid") -> torch.Tensor:
    if valid is None:
        return torch.ones(shape, dtype=torch.bool)
    mask = torch.as_tensor(valid).detach().cpu().bool()
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {shape}")
    return mask


def _check_poses(poses: torch.Tensor, name: str) -> None:
    if poses.ndim != 3 or poses.shape[-2:] != (4, 4):
        raise ValueError(f"{name} must have shape (V, 4, 4), got {tuple(poses.shape)}")


# --------------------------------------------------------------------------------------------
# Normalisation and dense metrics
# --------------------------------------------------------------------------------------------


def normalize_scene(
    points: ArrayLike, valid: ArrayLike | None = None, cam2world: ArrayLike | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Express a scene in its view-0 frame and divide by its avg-dis factor.

    Args:
        points: world points ``(V, ..., 3)`` (e.g. ``(V, H, W, 3)``); with ``cam2world=None``
            they are taken to be in the view-0 frame already.
        valid: ``(V, ...)`` bool mask of the points to use (all by default).
        cam2world: ``(V, 4, 4)`` poses, or None.

    Returns:
        ``(points, cam2world, factor)``: points in view-0 frame divided by ``factor``, poses
        relative to view 0 with translations divided by ``factor`` (None if not given), and
        ``factor`` = mean norm of the valid view-0-frame points (0 when none is valid).
    """
    points = _tensor(points, "points")
    if points.ndim < 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (V, ..., 3), got {tuple(points.shape)}")
    mask = _mask(valid, tuple(points.shape[:-1]))
    poses = None
    if cam2world is not None:
        poses = _tensor(cam2world, "cam2world")
        _check_poses(poses, "cam2world")
        if poses.shape[0] != points.shape[0]:
            raise ValueError(f"{poses.shape[0]} poses for {points.shape[0]} views of points")
        points = transform_points(invert_pose(poses[0]), points)
        poses = relative_poses(poses)
    factor = float(average_point_norm(points.reshape(-1, 3), mask.reshape(-1)))
    if factor > 0:
        points = points / factor
        if poses is not None:
            poses = poses.clone()
            poses[:, :3, 3] /= factor
    return points, poses, factor


def _relative_error_and_inliers(
    pred_norm: torch.Tensor,
    gt_norm: torch.Tensor,
    error: torch.Tensor,
    mask: torch.Tensor,
    threshold: float,
) -> tuple[float, float]:
    """Per-view mean of ``error / gt_norm`` and of ``max(gt/pred, pred/gt) < threshold``, then the
    mean over views that have at least one valid pixel."""
    views = mask.shape[0]
    mask = mask.reshape(views, -1)
    relative = (error / gt_norm.clamp_min(1e-12)).reshape(views, -1)
    ratio = torch.maximum(gt_norm / pred_norm, pred_norm / gt_norm).reshape(views, -1)
    inlier = torch.nan_to_num(ratio, nan=np.inf) < threshold  # a zero prediction is an outlier
    count = mask.sum(dim=1)
    used = count > 0
    if not used.any():
        raise ValueError("no valid pixel in any view")
    per_view_rel = (relative * mask).sum(dim=1)[used] / count[used]
    per_view_inlier = (inlier & mask).sum(dim=1)[used] / count[used]
    return float(per_view_rel.mean()), float(per_view_inlier.mean())


def pointmap_metrics(
    pred_points: ArrayLike,
    gt_points: ArrayLike,
    valid: ArrayLike | None = None,
    pred_cam2world: ArrayLike | None = None,
    gt_cam2world: ArrayLike | None = None,
    normalize: bool = True,
    inlier_threshold: float = 1.03,
) -> dict[str, float]:
    """MapAnything's ``pointmaps_abs_rel`` and ``pointmaps_inlier_thres_103``.

    ``pred_points`` and ``gt_points`` are ``(V, H, W, 3)`` (or ``(V, N, 3)``) world points,
    ``valid`` the GT mask ``(V, H, W)``. With poses, each side is first moved to its own view-0
    frame; with ``normalize`` each is divided by its avg-dis factor over ``valid``.
    rel = mean ``||X_pred - X|| / ||X||``; inlier = share with
    ``max(||X|| / ||X_pred||, ||X_pred|| / ||X||) < 1.03`` (norms, not the error vector).
    Both are averaged per view, then over views.
    """
    pred, gt = _tensor(pred_points, "pred_points"), _tensor(gt_points, "gt_points")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_points {tuple(pred.shape)} != gt_points {tuple(gt.shape)}")
    mask = _mask(valid, tuple(gt.shape[:-1]))
    if normalize or pred_cam2world is not None or gt_cam2world is not None:
        if (pred_cam2world is None) != (gt_cam2world is None):
            raise ValueError("give both pred_cam2world and gt_cam2world, or neither")
        pred, _, pred_factor = normalize_scene(pred, mask, pred_cam2world)
        gt, _, gt_factor = normalize_scene(gt, mask, gt_cam2world)
        if not normalize:
            pred, gt = pred * pred_factor, gt * gt_factor
    rel, inlier = _relative_error_and_inliers(
        pred.norm(dim=-1), gt.norm(dim=-1), (pred - gt).norm(dim=-1), mask, inlier_threshold
    )
    return {"pointmaps_abs_rel": rel, "pointmaps_inlier_thres_103": inlier}


def metric_scale_abs_rel(
    pred_metric_points: ArrayLike,
    gt_points: ArrayLike,
    valid: ArrayLike | None = None,
    pred_cam2world: ArrayLike | None = None,
    gt_cam2world: ArrayLike | None = None,
) -> float:
    """``|z_pred - z_gt| / z_gt`` of the avg-dis factors (view-0 frame) of metric points (MapAnything)."""
    gt = _tensor(gt_points, "gt_points")
    mask = _mask(valid, tuple(gt.shape[:-1]))
    _, _, pred_factor = normalize_scene(pred_metric_points, mask, pred_cam2world)
    _, _, gt_factor = normalize_scene(gt, mask, gt_cam2world)
    if gt_factor <= 0:
        raise ValueError("ground-truth avg-dis factor is 0: no valid point away from the origin")
    return abs(pred_factor - gt_factor) / gt_factor


def ray_angular_error(
    pred_rays: ArrayLike, gt_rays: ArrayLike, valid: ArrayLike | None = None
) -> float:
    """Mean angle in degrees between ray directions ``(..., 3)`` (normalised first): ``2 asin(|r̂ - r| / 2)``."""
    pred = torch.nn.functional.normalize(_tensor(pred_rays, "pred_rays"), dim=-1)
    gt = torch.nn.functional.normalize(_tensor(gt_rays, "gt_rays"), dim=-1)
    if pred.shape != gt.shape:
        raise ValueError(f"pred_rays {tuple(pred.shape)} != gt_rays {tuple(gt.shape)}")
    mask = _mask(valid, tuple(gt.shape[:-1]))
    angles = 2 * torch.asin(((pred - gt).norm(dim=-1) / 2).clamp(max=1.0))
    return float(torch.rad2deg(angles[mask]).mean())


def _align_depth(pred: torch.Tensor, gt: torch.Tensor, alignment: str) -> torch.Tensor:
    """Aligned prediction for one map (``pred``/``gt`` are the valid pixels, 1-D)."""
    if alignment == "none":
        return pred
    if alignment == "median":
        return pred * (gt.median() / pred.median())
    if alignment in ("scale_shift", "disparity_scale_shift"):
        target = gt if alignment == "scale_shift" else 1.0 / gt
        design = torch.stack([pred, torch.ones_like(pred)], dim=1)
        solution = torch.linalg.lstsq(design, target.unsqueeze(1)).solution.squeeze(1)
        fitted = design @ solution
        if alignment == "scale_shift":
            return fitted
        return 1.0 / fitted.clamp_min(1.0 / gt.max())  # disparity <= 0 -> farthest GT depth
    raise ValueError(
        f"alignment must be one of none, median, scale_shift, disparity_scale_shift; got {alignment!r}"
    )


def depth_metrics(
    pred_depth: ArrayLike,
    gt_depth: ArrayLike,
    valid: ArrayLike | None = None,
    alignment: DepthAlignment = "none",
) -> dict[str, float]:
    """Standard depth metrics per map, averaged over maps.

    ``pred_depth`` and ``gt_depth`` are ``(H, W)`` or ``(V, H, W)``; valid pixels are ``valid``
    and ``gt > 0`` and finite. ``alignment`` is fitted per map on its valid pixels:

    - ``"none"``: metric depth as predicted;
    - ``"median"``: ``pred * median(gt) / median(pred)`` (DUSt3R / MapAnything "aligned");
    - ``"scale_shift"``: least squares ``a * pred + b ≈ gt`` in depth;
    - ``"disparity_scale_shift"``: ``pred`` is an affine-invariant disparity (inverse depth);
      ``a * pred + b ≈ 1 / gt`` by least squares, depth = 1 / fit (MiDaS / Depth Anything
      relative protocol), non-positive fits are clamped to the farthest GT depth.

    Returns ``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``silog``, ``delta1..3``
    (share of ``max(d̂/d, d/d̂) < 1.25^k``) and ``inlier_103`` (same with 1.03, MapAnything's
    z-depth τ). Non-positive predictions count as outliers (they are clamped to 1e-12).
    """
    pred, gt = _tensor(pred_depth, "pred_depth"), _tensor(gt_depth, "gt_depth")
    if pred.shape != gt.shape or pred.ndim not in (2, 3):
        raise ValueError(
            f"pred_depth and gt_depth must both be (H, W) or (V, H, W), got "
            f"{tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
        valid = None if valid is None else torch.as_tensor(valid)[None]
    mask = _mask(valid, tuple(gt.shape)) & (gt > 0) & torch.isfinite(gt) & torch.isfinite(pred)
    per_map: list[dict[str, float]] = []
    for view in range(gt.shape[0]):
        d_gt = gt[view][mask[view]]
        if d_gt.numel() == 0:
            continue
        d_pred = _align_depth(pred[view][mask[view]], d_gt, alignment).clamp_min(1e-12)
        log_diff = d_pred.log() - d_gt.log()
        ratio = torch.maximum(d_pred / d_gt, d_gt / d_pred)
        silog_sq = (log_diff**2).mean() - 0.5 * log_diff.mean() ** 2
        per_map.append(
            {
                "abs_rel": float(((d_pred - d_gt).abs() / d_gt).mean()),
                "sq_rel": float(((d_pred - d_gt) ** 2 / d_gt).mean()),
                "rmse": float(((d_pred - d_gt) ** 2).mean().sqrt()),
                "rmse_log": float((log_diff**2).mean().sqrt()),
                "silog": float(silog_sq.clamp_min(0).sqrt()),
                "delta1": float((ratio < 1.25).double().mean()),
                "delta2": float((ratio < 1.25**2).double().mean()),
                "delta3": float((ratio < 1.25**3).double().mean()),
                "inlier_103": float((ratio < 1.03).double().mean()),
            }
        )
    if not per_map:
        raise ValueError("no valid depth pixel (valid mask, gt > 0, finite) in any map")
    return {key: float(np.mean([m[key] for m in per_map])) for key in per_map[0]}


# --------------------------------------------------------------------------------------------
# Camera poses
# --------------------------------------------------------------------------------------------


def _rotation_angle_deg(rotations: torch.Tensor) -> torch.Tensor:
    """Geodesic angle of rotation matrices ``(..., 3, 3)``, stable at 0 and 180 degrees."""
    trace = rotations.diagonal(dim1=-2, dim2=-1).sum(-1)
    skew = rotations - rotations.transpose(-1, -2)
    sin = torch.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], dim=-1).norm(dim=-1) / 2
    return torch.rad2deg(torch.atan2(sin, (trace - 1) / 2))


def relative_pose_errors(
    pred_cam2world: ArrayLike,
    gt_cam2world: ArrayLike,
    registered: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation-direction errors (degrees) of every view pair ``i < j``.

    Relative poses are ``T_i^-1 T_j`` (cam2world); VGGT's world-to-camera ``T_i T_j^-1`` is the
    same thing. Rotation error = geodesic angle between predicted and GT relative rotations.
    Translation error = angle between the relative translation directions with the sign
    ambiguity folded, ``min(θ, 180 - θ)`` (scale-invariant; a zero translation gives 90).
    Pairs that involve a view with ``registered[v] == False`` (e.g. COLMAP failed to register
    it; its pose may be anything, NaN included) get 180 degrees for both errors.
    Pairs are ordered (0,1), (0,2), ..., (1,2), ...; returns two arrays of ``V (V-1) / 2``.
    """
    pred, gt = _tensor(pred_cam2world, "pred_cam2world"), _tensor(gt_cam2world, "gt_cam2world")
    _check_poses(pred, "pred_cam2world")
    _check_poses(gt, "gt_cam2world")
    if pred.shape != gt.shape:
        raise ValueError(f"{pred.shape[0]} predicted poses for {gt.shape[0]} ground-truth poses")
    views = gt.shape[0]
    mask = _mask(registered, (views,), "registered")
    first, second = torch.triu_indices(views, views, offset=1)
    pred_rel = invert_pose(pred[first]) @ pred[second]
    gt_rel = invert_pose(gt[first]) @ gt[second]
    rotation_error = _rotation_angle_deg(pred_rel[:, :3, :3].transpose(-1, -2) @ gt_rel[:, :3, :3])
    pred_dir = torch.nn.functional.normalize(pred_rel[:, :3, 3], dim=-1)
    gt_dir = torch.nn.functional.normalize(gt_rel[:, :3, 3], dim=-1)
    cosine = (pred_dir * gt_dir).sum(-1).abs().clamp(max=1.0)
    translation_error = torch.rad2deg(torch.acos(cosine))
    both = mask[first] & mask[second]
    failed = torch.full_like(rotation_error, UNREGISTERED_ERROR_DEG)
    rotation_error = torch.where(both, rotation_error, failed)
    translation_error = torch.where(both, translation_error, failed)
    return rotation_error.numpy(), translation_error.numpy()


def pose_auc(
    rotation_errors_deg: ArrayLike, translation_errors_deg: ArrayLike, threshold_deg: int
) -> float:
    """AUC@threshold of ``max(rotation, translation)`` pair errors (VGGT ``calculate_auc_np``).

    1-degree bins on ``[0, threshold]``; the result is the mean over ``k = 1..threshold`` of the
    share of pairs with error ``< k`` (the last bin includes ``threshold``), in [0, 1].
    """
    if int(threshold_deg) != threshold_deg or threshold_deg < 1:
        raise ValueError(f"threshold_deg must be a positive whole number, got {threshold_deg}")
    errors = np.maximum(np.asarray(rotation_errors_deg), np.asarray(translation_errors_deg))
    if errors.size == 0:
        raise ValueError("no pairs to score (need at least 2 views)")
    histogram, _ = np.histogram(errors, bins=np.arange(int(threshold_deg) + 1))
    return float(np.mean(np.cumsum(histogram / errors.size)))


def _camera_centre_alignment_error(
    pred: torch.Tensor, gt: torch.Tensor, with_scale: bool
) -> torch.Tensor:
    scale, rotation, translation = umeyama(pred, gt, with_scale=with_scale)
    return (scale * pred @ rotation.T + translation - gt).norm(dim=-1)


def absolute_trajectory_error(
    pred_cam2world: ArrayLike,
    gt_cam2world: ArrayLike,
    registered: ArrayLike | None = None,
    with_scale: bool = True,
    reduction: Literal["rmse", "mean"] = "rmse",
) -> float:
    """ATE of camera centres after a Umeyama alignment of predicted to GT centres.

    Default: Sim(3) alignment and RMSE (evo style, the COLMAP baseline protocol). MapAnything's
    ``pose_ate_rmse`` is ``with_scale=False, reduction="mean"`` on :func:`normalize_scene`'d
    poses. Only registered views are used; fewer than 3 gives NaN (a similarity fits any 2
    centres exactly). In GT units.
    """
    pred, gt = _tensor(pred_cam2world, "pred_cam2world"), _tensor(gt_cam2world, "gt_cam2world")
    _check_poses(pred, "pred_cam2world")
    _check_poses(gt, "gt_cam2world")
    if pred.shape != gt.shape:
        raise ValueError(f"{pred.shape[0]} predicted poses for {gt.shape[0]} ground-truth poses")
    if reduction not in ("rmse", "mean"):
        raise ValueError(f"reduction must be 'rmse' or 'mean', got {reduction!r}")
    mask = _mask(registered, (gt.shape[0],), "registered")
    if int(mask.sum()) < 3:
        return float("nan")
    errors = _camera_centre_alignment_error(pred[mask, :3, 3], gt[mask, :3, 3], with_scale)
    return float((errors**2).mean().sqrt() if reduction == "rmse" else errors.mean())


def pose_metrics(
    pred_cam2world: ArrayLike,
    gt_cam2world: ArrayLike,
    registered: ArrayLike | None = None,
    auc_thresholds_deg: tuple[int, ...] = (5, 30),
    accuracy_thresholds_deg: tuple[float, ...] = (5, 15, 30),
) -> dict[str, float]:
    """Pose summary: ``auc_{T}``, ``rra_{x}``, ``rta_{x}`` (fractions), ``ate`` (Sim(3) RMSE),
    ``registered_ratio``. Unregistered views make all their pairs fail (see
    :func:`relative_pose_errors`), so COLMAP and feed-forward models are scored alike."""
    rotation, translation = relative_pose_errors(pred_cam2world, gt_cam2world, registered)
    views = _tensor(gt_cam2world, "gt_cam2world").shape[0]
    mask = _mask(registered, (views,), "registered")
    result = {f"auc_{t}": pose_auc(rotation, translation, t) for t in auc_thresholds_deg}
    for threshold in accuracy_thresholds_deg:
        result[f"rra_{threshold:g}"] = float(np.mean(rotation < threshold))
        result[f"rta_{threshold:g}"] = float(np.mean(translation < threshold))
    result["ate"] = absolute_trajectory_error(pred_cam2world, gt_cam2world, registered)
    result["registered_ratio"] = float(mask.double().mean())
    return result


# --------------------------------------------------------------------------------------------
# Point clouds
# --------------------------------------------------------------------------------------------


def chamfer_distance(
    pred_points: ArrayLike,
    gt_points: ArrayLike,
    alignment: Literal["sim3", "se3", "none"] = "sim3",
    correspondences: tuple[ArrayLike, ArrayLike] | None = None,
    fscore_threshold: float | None = None,
) -> dict[str, float]:
    """Chamfer distance (DTU / VGGT style) after aligning the prediction to the ground truth.

    ``pred_points (N, 3)`` and ``gt_points (M, 3)``. Alignment is a Umeyama fit (``sim3`` with
    scale, ``se3`` rigid) of corresponding points: ``correspondences=(pred (K, 3), gt (K, 3))``,
    or, if not given, ``pred_points`` and ``gt_points`` themselves (then ``N == M`` and row i of
    one matches row i of the other, e.g. flattened valid pixels of pointmaps).
    Returns ``accuracy`` = mean over predicted points of the distance to the nearest GT point,
    ``completeness`` = the reverse, ``chamfer`` = their mean, ``scale`` of the alignment, and
    with ``fscore_threshold`` also ``precision``, ``recall``, ``fscore`` at that distance.
    Distances are in GT units.
    """
    pred, gt = _tensor(pred_points, "pred_points"), _tensor(gt_points, "gt_points")
    for name, points in (("pred_points", pred), ("gt_points", gt)):
        if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
            raise ValueError(f"{name} must have shape (N, 3) with N > 0, got {tuple(points.shape)}")
    scale = 1.0
    if alignment != "none":
        if alignment not in ("sim3", "se3"):
            raise ValueError(f"alignment must be 'sim3', 'se3' or 'none', got {alignment!r}")
        if correspondences is None:
            if pred.shape != gt.shape:
                raise ValueError(
                    f"pred_points {tuple(pred.shape)} and gt_points {tuple(gt.shape)} do not "
                    "correspond row by row: pass correspondences=(pred, gt) or alignment='none'"
                )
            source, target = pred, gt
        else:
            source = _tensor(correspondences[0], "correspondences[0]")
            target = _tensor(correspondences[1], "correspondences[1]")
        s, rotation, translation = umeyama(source, target, with_scale=alignment == "sim3")
        pred = s * pred @ rotation.T + translation
        scale = float(s)
    pred_np, gt_np = pred.numpy(), gt.numpy()
    to_gt, _ = cKDTree(gt_np).query(pred_np)
    to_pred, _ = cKDTree(pred_np).query(gt_np)
    accuracy, completeness = float(to_gt.mean()), float(to_pred.mean())
    result = {
        "accuracy": accuracy,
        "completeness": completeness,
        "chamfer": (accuracy + completeness) / 2,
        "scale": scale,
    }
    if fscore_threshold is not None:
        precision = float(np.mean(to_gt < fscore_threshold))
        recall = float(np.mean(to_pred < fscore_threshold))
        total = precision + recall
        result.update(
            precision=precision,
            recall=recall,
            fscore=2 * precision * recall / total if total > 0 else 0.0,
        )
    return result
