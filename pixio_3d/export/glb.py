"""GLB (binary glTF) scenes: the point cloud and one wire frustum per camera (trimesh)."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixio_3d.export.arrays import (
    ArrayLike,
    as_points,
    check_image_size,
    colors_uint8,
    poses_and_intrinsics,
)
from pixio_core.io import atomic_file

__all__ = ["OPENCV_TO_GLTF", "write_glb_scene"]


# glTF is y-up and its cameras look down -z; OpenCV is y-down, z-forward. Flipping y and z of
# the whole world makes camera 0 (identity) look down -z with +y up, so a viewer's default view
# shows the scene the way photo 0 did.
OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0, 1.0])


def _frustum_segments(
    cam2world: np.ndarray, intrinsics: np.ndarray, height: int, width: int, depth: float
) -> np.ndarray:
    """Line segments ``(S, 2, 3)`` of one camera's frustum in world coordinates (OpenCV)."""
    corners_px = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], float)
    corners = (np.linalg.inv(intrinsics) @ corners_px.T).T
    corners = corners / corners[:, 2:3] * depth
    # a small triangle above the top edge marks "up" in the image
    top_mid = (corners[0] + corners[1]) / 2
    up_tip = top_mid + np.array([0.0, -0.3 * depth * height / max(width, height), 0.0])
    apex = np.zeros(3)
    segments = [(apex, c) for c in corners]
    segments += [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    segments += [(corners[0], up_tip), (up_tip, corners[1])]
    local = np.array(segments)
    return local @ cam2world[:3, :3].T + cam2world[:3, 3]


def write_glb_scene(
    path: str | os.PathLike,
    points: ArrayLike,
    colors: ArrayLike | None,
    cam2world: ArrayLike,
    intrinsics: ArrayLike,
    image_size: Sequence[int],
    frustum_scale: float | None = None,
    overwrite: bool = False,
) -> Path:
    """A GLB (binary glTF) scene with the point cloud and one wire frustum per camera.

    ``points (N, 3)`` world points, ``colors (N, 3)`` uint8 or [0, 1] floats, ``cam2world
    (V, 4, 4)``, ``intrinsics (V, 3, 3)`` or ``(3, 3)``, ``image_size (height, width)``.
    Everything is written in glTF coordinates: world points ``X`` become ``OPENCV_TO_GLTF @ X``
    (y and z negated), so the y-up viewer sees camera 0's view upright. Frusta are line
    primitives (apex to the four image corners at depth ``frustum_scale``, the image rectangle,
    and an "up" triangle over the image top edge); the default depth is 5% of the extent of the
    cameras and points. Geometry names: ``points`` and ``camera_000``, ``camera_001``, ...
    """
    import trimesh

    xyz = as_points(points)
    rgb = colors_uint8(colors, len(xyz))
    poses, k = poses_and_intrinsics(cam2world, intrinsics)
    height, width = check_image_size(image_size)
    finite = np.isfinite(xyz).all(axis=1)
    xyz, rgb = xyz[finite], rgb[finite]
    if frustum_scale is None:
        extent_points = np.concatenate([poses[:, :3, 3], xyz]) if len(xyz) else poses[:, :3, 3]
        low, high = np.percentile(extent_points, [2, 98], axis=0)
        extent = float(np.linalg.norm(high - low))
        frustum_scale = 0.05 * extent if extent > 0 else 1.0
    flip = OPENCV_TO_GLTF[:3, :3]
    scene = trimesh.Scene()
    if len(xyz):
        scene.add_geometry(trimesh.PointCloud(xyz @ flip.T, colors=rgb), geom_name="points")
    for index, (pose, camera_k) in enumerate(zip(poses, k, strict=True)):
        segments = _frustum_segments(pose, camera_k, height, width, frustum_scale) @ flip.T
        path_geometry = trimesh.load_path(segments)
        hue = index / max(len(poses), 1)
        rgba = [int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.9, 0.9)] + [255]
        path_geometry.colors = np.tile(rgba, (len(path_geometry.entities), 1))
        scene.add_geometry(path_geometry, geom_name=f"camera_{index:03d}")
    with atomic_file(path, overwrite) as tmp:
        tmp.write_bytes(scene.export(file_type="glb"))
    return Path(path)
