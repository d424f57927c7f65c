"""Binary PLY point clouds (open3d): float ``x y z``, uchar ``red green blue`` and, when given,
float ``confidence``. Filter the points first (:mod:`~pixio_3d.export.filtering`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pixio_3d.export.arrays import ArrayLike, as_numpy, as_points, colors_uint8
from pixio_core.io import atomic_file

__all__ = ["write_ply"]


def write_ply(
    path: str | os.PathLike,
    points: ArrayLike,
    colors: ArrayLike | None = None,
    confidence: ArrayLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``points (N, 3)`` with ``colors (N, 3)`` (uint8 or float in [0, 1]; grey when None)
    and optional ``confidence (N,)`` as a binary PLY, atomically. Non-finite points are a
    ``ValueError`` (filter them out first)."""
    import open3d as o3d

    xyz = as_points(points)
    if not np.isfinite(xyz).all():
        raise ValueError(f"{path}: points must be finite (filter_point_cloud drops the others)")
    cloud = o3d.t.geometry.PointCloud(o3d.core.Tensor(xyz.astype(np.float32)))
    cloud.point.colors = o3d.core.Tensor(np.ascontiguousarray(colors_uint8(colors, len(xyz))))
    if confidence is not None:
        conf = as_numpy(confidence, "confidence").reshape(-1)
        if conf.shape != (len(xyz),):
            raise ValueError(f"confidence must have shape ({len(xyz)},), got {conf.shape}")
        cloud.point.confidence = o3d.core.Tensor(conf.astype(np.float32)[:, None])
    with atomic_file(path, overwrite) as tmp:
        if not o3d.t.io.write_point_cloud(str(tmp), cloud, write_ascii=False):
            raise OSError(f"open3d could not write {path}")
    return Path(path)
