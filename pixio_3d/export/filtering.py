"""Point filtering, its own step before any writer: confidence, voxel grid, outlier removal.

:func:`filter_point_cloud` takes every predicted point with its colour and confidence and keeps,
in order: the finite points; those with ``confidence >= min_confidence``; one averaged point per
voxel of ``voxel_size`` (colours and confidence averaged); and the points that are not
statistical outliers (mean distance to their ``outlier_nb_neighbors`` nearest neighbours more
than ``outlier_std_ratio`` standard deviations above the global mean; open3d). Voxelising first
makes the outlier step faster and independent of the density. The writers
(:mod:`~pixio_3d.export.ply`, ``glb``, ``colmap``) write whatever points they are given.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pixio_3d.export.arrays import ArrayLike, as_numpy, as_points, colors_uint8

__all__ = ["FilteredPoints", "auto_voxel_size", "confidence_threshold", "filter_point_cloud"]


class FilteredPoints(NamedTuple):
    """``points (N, 3)`` float64, ``colors (N, 3)`` uint8, ``confidence (N,)`` float32 or None,
    and ``counts``: the points left after each step (``input``, ``finite``, ``confident``,
    ``voxel``, ``written``)."""

    points: np.ndarray
    colors: np.ndarray
    confidence: np.ndarray | None
    counts: dict[str, int]


def confidence_threshold(confidence: np.ndarray, quantile: float) -> float:
    """The confidence below which the ``quantile`` least confident finite values lie."""
    finite = confidence[np.isfinite(confidence)]
    if finite.size == 0:
        raise ValueError("no finite confidence value")
    return float(np.quantile(finite, quantile))


def auto_voxel_size(points: np.ndarray, fraction: float) -> float:
    """``fraction`` of the length of the points' per-axis interquartile range (robust extent)."""
    q25, q75 = np.percentile(points, [25, 75], axis=0)
    return fraction * float(np.linalg.norm(q75 - q25))


def filter_point_cloud(
    points: ArrayLike,
    colors: ArrayLike | None = None,
    confidence: ArrayLike | None = None,
    *,
    min_confidence: float | None = None,
    voxel_size: float | None = None,
    outlier_nb_neighbors: int = 20,
    outlier_std_ratio: float = 2.0,
) -> FilteredPoints:
    """Filter ``points (N, 3)`` with ``colors (N, 3)`` (uint8 or float in [0, 1]) and
    ``confidence (N,)`` as the module docstring says (``voxel_size=None``: no voxel grid;
    ``outlier_nb_neighbors=0``: no outlier removal). Raises ``ValueError`` when no point is
    left."""
    import open3d as o3d

    xyz = as_points(points)
    rgb = colors_uint8(colors, len(xyz))
    keep = np.isfinite(xyz).all(axis=1)
    counts = {"input": len(xyz), "finite": int(keep.sum())}
    conf = None
    if confidence is not None:
        conf = as_numpy(confidence, "confidence").reshape(-1)
        if conf.shape != (len(xyz),):
            raise ValueError(f"confidence must have shape ({len(xyz)},), got {conf.shape}")
        keep &= np.isfinite(conf)
    if min_confidence is not None:
        if conf is None:
            raise ValueError("min_confidence needs confidence values")
        keep &= conf >= min_confidence
    counts["confident"] = int(keep.sum())
    cloud = o3d.t.geometry.PointCloud(o3d.core.Tensor(xyz[keep].astype(np.float32)))
    cloud.point.colors = o3d.core.Tensor(np.ascontiguousarray(rgb[keep]))
    if conf is not None:
        cloud.point.confidence = o3d.core.Tensor(conf[keep].astype(np.float32)[:, None])
    if voxel_size is not None and counts["confident"] > 0:
        if voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        cloud = cloud.voxel_down_sample(float(voxel_size))
    counts["voxel"] = len(cloud.point.positions)
    if outlier_nb_neighbors > 0 and counts["voxel"] > outlier_nb_neighbors:
        cloud, _ = cloud.remove_statistical_outliers(outlier_nb_neighbors, outlier_std_ratio)
    counts["written"] = len(cloud.point.positions)
    if counts["written"] == 0:
        raise ValueError(f"no points left after filtering: {counts}")
    kept_colors = cloud.point.colors.numpy()
    if kept_colors.dtype != np.uint8:  # averaged by the voxel grid
        kept_colors = np.clip(np.round(kept_colors), 0, 255).astype(np.uint8)
    kept_conf = cloud.point.confidence.numpy()[:, 0] if conf is not None else None
    return FilteredPoints(
        cloud.point.positions.numpy().astype(np.float64), kept_colors, kept_conf, counts
    )
