"""nerfstudio / instant-ngp ``transforms.json``: the cameras in OpenGL camera axes."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixio_3d.export.arrays import ArrayLike, check_image_size, poses_and_intrinsics
from pixio_core.io import atomic_file

__all__ = ["OPENCV_TO_OPENGL_CAMERA", "write_nerfstudio_transforms"]


# nerfstudio / instant-ngp cameras are OpenGL-style (x right, y up, z back): the camera axes of
# an OpenCV camera-to-world matrix flip in y and z; the world frame itself is kept.
OPENCV_TO_OPENGL_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])


def write_nerfstudio_transforms(
    path: str | os.PathLike,
    cam2world: ArrayLike,
    intrinsics: ArrayLike,
    image_paths: Sequence[str],
    image_size: Sequence[int],
    ply_file_path: str | None = None,
    overwrite: bool = False,
) -> Path:
    """A nerfstudio ``transforms.json`` (the instant-ngp layout nerfstudio reads).

    ``transform_matrix`` is each camera's camera-to-world in nerfstudio's OpenGL camera convention
    (``cam2world @ diag(1, -1, -1, 1)``); the world frame is ours (``applied_transform`` is the
    identity, so ``ply_file_path`` points, e.g. ``points.ply``, stay in the same frame and
    splatfacto can start from them). Intrinsics are ``fl_x, fl_y, cx, cy`` with ``w, h`` and
    ``camera_model: OPENCV`` without distortion; they sit at the top level when every view
    shares them, in each frame otherwise. Pixel centres are at +0.5 as in COLMAP, which
    nerfstudio's own COLMAP converter copies unchanged. ``image_paths`` are relative to the
    folder of ``path``; ``image_size`` is ``(height, width)``.
    """
    poses, k = poses_and_intrinsics(cam2world, intrinsics)
    height, width = check_image_size(image_size)
    names = [str(name) for name in image_paths]
    if len(names) != len(poses):
        raise ValueError(f"need {len(poses)} image paths, got {len(names)}")
    if not np.isfinite(poses).all() or not np.isfinite(k).all():
        raise ValueError("cam2world and intrinsics must be finite")

    def camera(matrix: np.ndarray) -> dict[str, float]:
        return {
            "fl_x": float(matrix[0, 0]),
            "fl_y": float(matrix[1, 1]),
            "cx": float(matrix[0, 2]),
            "cy": float(matrix[1, 2]),
        }

    shared = bool(np.all(k == k[:1]))
    frames = []
    for name, pose, matrix in zip(names, poses, k, strict=True):
        frame: dict = {"file_path": name}
        frame["transform_matrix"] = (pose @ OPENCV_TO_OPENGL_CAMERA).tolist()
        if not shared:
            frame.update(camera(matrix))
        frames.append(frame)
    meta: dict = {"camera_model": "OPENCV", "w": width, "h": height}
    if shared:
        meta.update(camera(k[0]))
    meta["applied_transform"] = np.eye(4)[:3].tolist()
    if ply_file_path is not None:
        meta["ply_file_path"] = str(ply_file_path)
    meta["frames"] = frames
    with atomic_file(path, overwrite) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return Path(path)
