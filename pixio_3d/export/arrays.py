"""Array checks shared by the writers: numpy or torch in, validated numpy out.

Conventions of every writer (as :mod:`pixio_3d.geometry`): OpenCV cameras (x right, y down,
z forward), camera-to-world 4x4 poses, 3x3 pinhole intrinsics with pixel centres at +0.5
(COLMAP's own convention, so COLMAP cameras take ``fx, fy, cx, cy`` unchanged).
``image_size`` is always ``(height, width)``, like the ``(V, 3, H, W)`` image tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

__all__ = [
    "ArrayLike",
    "as_numpy",
    "as_points",
    "check_image_size",
    "colors_uint8",
    "poses_and_intrinsics",
]


def as_numpy(value: ArrayLike, name: str, dtype=np.float64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}") from error


def as_points(points: ArrayLike, name: str = "points") -> np.ndarray:
    array = as_numpy(points, name)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {array.shape}")
    return array


def colors_uint8(colors: ArrayLike | None, count: int) -> np.ndarray:
    """(N, 3) uint8 colours from uint8 or float in [0, 1]; grey when None."""
    if colors is None:
        return np.full((count, 3), 128, dtype=np.uint8)
    raw = colors.detach().cpu().numpy() if isinstance(colors, torch.Tensor) else np.asarray(colors)
    if raw.shape != (count, 3):
        raise ValueError(f"colors must have shape ({count}, 3), got {raw.shape}")
    if raw.dtype == np.uint8:
        return raw
    if np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"integer colors must be uint8, got {raw.dtype}")
    if raw.size and (np.nanmin(raw) < 0 or np.nanmax(raw) > 1):
        raise ValueError("float colors must lie in [0, 1] (pass uint8 for 0-255 values)")
    return np.round(np.nan_to_num(raw) * 255).astype(np.uint8)


def poses_and_intrinsics(
    cam2world: ArrayLike, intrinsics: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    poses = as_numpy(cam2world, "cam2world")
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"cam2world must have shape (V, 4, 4), got {poses.shape}")
    k = as_numpy(intrinsics, "intrinsics")
    if k.shape == (3, 3):
        k = np.broadcast_to(k, (len(poses), 3, 3))
    if k.shape != (len(poses), 3, 3):
        raise ValueError(
            f"intrinsics must have shape (3, 3) or ({len(poses)}, 3, 3), got {k.shape}"
        )
    return poses, k


def check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (height, width) > 0, got {tuple(image_size)}")
    return int(image_size[0]), int(image_size[1])
