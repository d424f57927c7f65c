"""Known cameras for a folder of photos: a COLMAP model folder or a small JSON file.

JSON (pixels of the original, upright photos; OpenCV cameras, camera-to-world)::

    {"intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}            one camera for every photo
    {"intrinsics": {"fx": 1200, "fy": 1200, "cx": 960, "cy": 540}}    the same, by name
    {"intrinsics": {"a.jpg": [[...]], "b.jpg": {"fx": ...}, ...}}       one per photo
    {"intrinsics": ..., "cam2world": {"a.jpg": [[r00, r01, r02, tx], ..., [0, 0, 0, 1]], ...}}

A folder is read as a COLMAP sparse model (:func:`pixio_3d.export.colmap.read_colmap_cameras`):
every photo's intrinsics and pose. Photos are matched by file name. Poses must be given for
every photo or none; intrinsics for every photo (or one shared camera).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KnownCameras", "read_known_cameras"]


@dataclass(frozen=True)
class KnownCameras:
    """``intrinsics (V, 3, 3)`` in pixels of the original photos, ``cam2world (V, 4, 4)`` or
    None, in the order of the photo names they were read for; ``source`` says where from."""

    intrinsics: np.ndarray
    cam2world: np.ndarray | None
    source: str


def _intrinsics(value: Any, where: str) -> np.ndarray:
    if isinstance(value, dict) and {"fx", "fy", "cx", "cy"} <= set(value):
        fx, fy, cx, cy = (float(value[k]) for k in ("fx", "fy", "cx", "cy"))
        matrix = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    else:
        try:
            matrix = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            matrix = np.zeros(0)
        if matrix.shape != (3, 3):
            raise ValueError(
                f"{where} must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] or "
                f"{{fx, fy, cx, cy}}, got {value!r}"
            )
    if not (np.isfinite(matrix).all() and matrix[0, 0] > 0 and matrix[1, 1] > 0):
        raise ValueError(f"{where}: fx and fy must be positive and every value finite")
    if not np.allclose(matrix[2], [0, 0, 1]) or abs(matrix[1, 0]) > 1e-9:
        raise ValueError(f"{where}: the last row must be (0, 0, 1) and the matrix upper triangular")
    return matrix


def _pose(value: Any, where: str) -> np.ndarray:
    try:
        pose = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        pose = np.zeros(0)
    if pose.shape == (3, 4):
        pose = np.vstack([pose, [0.0, 0.0, 0.0, 1.0]])
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise ValueError(f"{where} must be a 4x4 (or 3x4) camera-to-world matrix, got {value!r}")
    rotation = pose[:3, :3]
    if not (
        np.allclose(pose[3], [0, 0, 0, 1])
        and np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        and np.linalg.det(rotation) > 0
    ):
        raise ValueError(f"{where} must be a rigid transform (a rotation and a translation)")
    return pose


def _check_sizes(intrinsics: np.ndarray, sizes: list[tuple[int, int]], names: list[str], source):
    for matrix, (width, height), name in zip(intrinsics, sizes, names, strict=True):
        if not (0 <= matrix[0, 2] <= width and 0 <= matrix[1, 2] <= height):
            raise ValueError(
                f"{source}: the principal point ({matrix[0, 2]:.6g}, {matrix[1, 2]:.6g}) of "
                f"{name} lies outside its {width}x{height} pixels"
            )


def read_known_cameras(
    path: str | os.PathLike, names: list[str], sizes: list[tuple[int, int]]
) -> KnownCameras:
    """The cameras of the photos ``names`` (file names; ``sizes`` their upright ``(width,
    height)``) from a COLMAP model folder or a JSON file (see the module docstring). Errors
    name the file and what is missing or wrong."""
    path = Path(path)
    if path.is_dir():
        from pixio_3d.export.colmap import read_colmap_cameras

        found = read_colmap_cameras(path)
        missing = [name for name in names if name not in found]
        if missing:
            raise ValueError(
                f"the COLMAP model {path} has no camera for {', '.join(missing[:5])} "
                f"(it has {', '.join(sorted(found)[:5])}...)"
            )
        intrinsics = np.stack([found[name][0] for name in names])
        cam2world = np.stack([found[name][1] for name in names])
        _check_sizes(intrinsics, sizes, names, path)
        return KnownCameras(intrinsics, cam2world, f"COLMAP model {path}")
    if not path.is_file():
        raise FileNotFoundError(f"camera file {path} does not exist")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a JSON file ({error})") from None
    if not isinstance(meta, dict) or "intrinsics" not in meta:
        raise ValueError(f"{path} needs an 'intrinsics' entry (see pixio_3d.data.cameras)")
    given = meta["intrinsics"]
    per_photo = isinstance(given, dict) and not {"fx", "fy", "cx", "cy"} <= set(given)
    if per_photo:
        missing = [name for name in names if name not in given]
        if missing:
            raise ValueError(f"{path}: 'intrinsics' has no entry for {', '.join(missing[:5])}")
        intrinsics = np.stack(
            [_intrinsics(given[name], f"{path}: intrinsics[{name!r}]") for name in names]
        )
    else:
        shared = _intrinsics(given, f"{path}: intrinsics")
        intrinsics = np.broadcast_to(shared, (len(names), 3, 3)).copy()
    _check_sizes(intrinsics, sizes, names, path)
    cam2world = None
    if meta.get("cam2world") is not None:
        poses = meta["cam2world"]
        if not isinstance(poses, dict):
            raise ValueError(f"{path}: 'cam2world' must map every photo's file name to a pose")
        missing = [name for name in names if name not in poses]
        if missing:
            raise ValueError(
                f"{path}: 'cam2world' has no pose for {', '.join(missing[:5])}; give every "
                "photo a pose, or none"
            )
        cam2world = np.stack([_pose(poses[name], f"{path}: cam2world[{name!r}]") for name in names])
    return KnownCameras(intrinsics, cam2world, f"camera file {path}")
