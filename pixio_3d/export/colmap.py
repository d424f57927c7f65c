"""COLMAP sparse models (``cameras``, ``images``, ``points3D``) through pycolmap, and the 2D
observations (tracks) of dense points."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixio_3d.export.arrays import (
    ArrayLike,
    as_numpy,
    as_points,
    check_image_size,
    colors_uint8,
    poses_and_intrinsics,
)
from pixio_core.io import atomic_directory

__all__ = ["colmap_observations", "write_colmap_model"]


def write_colmap_model(
    directory: str | os.PathLike,
    cam2world: ArrayLike,
    intrinsics: ArrayLike,
    image_names: Sequence[str],
    image_size: Sequence[int],
    points3D: ArrayLike | None = None,
    colors: ArrayLike | None = None,
    observations: tuple[ArrayLike, ArrayLike, ArrayLike] | None = None,
    binary: bool = True,
    overwrite: bool = False,
) -> Path:
    """A COLMAP sparse model (``cameras``, ``images``, ``points3D``; ``.bin`` or ``.txt``).

    Built with pycolmap's ``Reconstruction`` API, so COLMAP, pycolmap and tools that read COLMAP
    folders (gsplat, nerfstudio) open it. ``cam2world (V, 4, 4)`` OpenCV poses are stored as
    COLMAP's world-to-camera ``cam_from_world`` (same OpenCV camera frame; COLMAP text files
    list the quaternion as QW QX QY QZ, pycolmap's ``Rotation3d.quat`` is x, y, z, w).
    Cameras are PINHOLE ``fx, fy, cx, cy`` (pixel centres at +0.5 in both conventions);
    views with identical intrinsics share one camera. ``image_size`` is ``(height, width)``.
    ``points3D (N, 3)`` with ``colors (N, 3)``; ``observations = (point_index (M,),
    image_index (M,), pixel_xy (M, 2))`` adds 2D keypoints and tracks (e.g. the pixel each
    point came from). Points without observations are kept with empty tracks.
    """
    import pycolmap

    poses, k = poses_and_intrinsics(cam2world, intrinsics)
    height, width = check_image_size(image_size)
    names = [str(n) for n in image_names]
    if len(names) != len(poses) or len(set(names)) != len(names):
        raise ValueError(f"need {len(poses)} distinct image names, got {names}")
    if np.any(np.abs(k[:, 0, 1]) > 1e-9) or np.any(np.abs(k[:, 2] - [0, 0, 1]) > 1e-9):
        raise ValueError("PINHOLE intrinsics need zero skew and a last row of (0, 0, 1)")
    rotations = poses[:, :3, :3]
    orthogonality = np.abs(rotations.transpose(0, 2, 1) @ rotations - np.eye(3)).max()
    if orthogonality > 1e-4 or np.any(np.linalg.det(rotations) < 0):
        raise ValueError(
            f"cam2world rotations must be proper rotations (error {orthogonality:.2g})"
        )
    xyz = np.zeros((0, 3)) if points3D is None else as_points(points3D, "points3D")
    rgb = colors_uint8(colors, len(xyz))

    keypoints: list[list[np.ndarray]] = [[] for _ in names]
    point_tracks: list[list[tuple[int, int]]] = [[] for _ in range(len(xyz))]
    if observations is not None:
        point_index = as_numpy(observations[0], "observations[0]", np.int64).reshape(-1)
        image_index = as_numpy(observations[1], "observations[1]", np.int64).reshape(-1)
        pixels = as_numpy(observations[2], "observations[2]").reshape(-1, 2)
        if not len(point_index) == len(image_index) == len(pixels):
            raise ValueError("observations need equally long point_index, image_index, pixel_xy")
        if len(point_index) and (point_index.min() < 0 or point_index.max() >= len(xyz)):
            raise ValueError(f"observation point indices must lie in [0, {len(xyz)})")
        if len(image_index) and (image_index.min() < 0 or image_index.max() >= len(names)):
            raise ValueError(f"observation image indices must lie in [0, {len(names)})")
        for p, i, xy in zip(point_index.tolist(), image_index.tolist(), pixels, strict=True):
            point_tracks[p].append((i + 1, len(keypoints[i])))
            keypoints[i].append(xy)

    reconstruction = pycolmap.Reconstruction()
    camera_ids: dict[tuple[float, ...], int] = {}
    for index, (pose, camera_k) in enumerate(zip(poses, k, strict=True)):
        params = (camera_k[0, 0], camera_k[1, 1], camera_k[0, 2], camera_k[1, 2])
        if params not in camera_ids:
            camera_ids[params] = len(camera_ids) + 1
            camera = pycolmap.Camera(
                model="PINHOLE",
                width=width,
                height=height,
                params=list(params),
                camera_id=camera_ids[params],
            )
            reconstruction.add_camera_with_trivial_rig(camera)
        image = pycolmap.Image(
            name=names[index],
            keypoints=np.array(keypoints[index], dtype=np.float64).reshape(-1, 2),
            camera_id=camera_ids[params],
            image_id=index + 1,
        )
        rotation_t = pose[:3, :3].T
        cam_from_world = pycolmap.Rigid3d(
            pycolmap.Rotation3d(rotation_t), -rotation_t @ pose[:3, 3]
        )
        reconstruction.add_image_with_trivial_frame(image, cam_from_world)
    for position, color, track in zip(xyz, rgb, point_tracks, strict=True):
        elements = [pycolmap.TrackElement(image_id, idx) for image_id, idx in track]
        reconstruction.add_point3D(position, pycolmap.Track(elements), color)

    with atomic_directory(directory, overwrite) as tmp:
        if binary:
            reconstruction.write(tmp)
        else:
            reconstruction.write_text(tmp)
    return Path(directory)


def colmap_observations(
    points: np.ndarray,
    cam2world: np.ndarray,
    intrinsics: np.ndarray,
    depth_z: np.ndarray,
    relative_tolerance: float = 0.05,
    absolute_tolerance: float = 0.0,
    max_per_image: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which views see each point: the 2D observations of COLMAP tracks.

    ``points (N, 3)`` world, ``cam2world (V, 4, 4)``, ``intrinsics (V, 3, 3)``, ``depth_z (V, H,
    W)``. A point is observed in a view when it projects inside the image in front of the camera
    and its z agrees with the view's depth at that pixel within ``relative_tolerance * depth +
    absolute_tolerance`` (not occluded). ``max_per_image`` keeps a random subset (``seed``) of
    each view's observations, which bounds the size and write time of the model. Returns ``(point_index (M,), image_index (M,), pixel_xy
    (M, 2))``, pixel centres at +0.5, as :func:`pixio_3d.export.write_colmap_model` takes them.
    """
    height, width = depth_z.shape[1:]
    rng = np.random.default_rng(seed)
    point_ids, image_ids, pixels = [], [], []
    for view, (pose, k) in enumerate(zip(cam2world, intrinsics, strict=True)):
        local = (points - pose[:3, 3]) @ pose[:3, :3]
        z = local[:, 2]
        front = z > 1e-9
        u = np.full(len(points), -1.0)
        v = np.full(len(points), -1.0)
        u[front] = k[0, 0] * local[front, 0] / z[front] + k[0, 2]
        v[front] = k[1, 1] * local[front, 1] / z[front] + k[1, 2]
        inside = front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        index = np.flatnonzero(inside)
        observed = depth_z[view, v[index].astype(np.int64), u[index].astype(np.int64)]
        tolerance = relative_tolerance * observed + absolute_tolerance
        visible = index[np.abs(z[index] - observed) <= tolerance]
        if max_per_image is not None and len(visible) > max_per_image:
            visible = np.sort(rng.choice(visible, max_per_image, replace=False))
        point_ids.append(visible)
        image_ids.append(np.full(len(visible), view))
        pixels.append(np.stack([u[visible], v[visible]], axis=1))
    return np.concatenate(point_ids), np.concatenate(image_ids), np.concatenate(pixels)


UNDISTORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")


def read_colmap_cameras(directory: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{image name: (intrinsics (3, 3), cam2world (4, 4))}`` of a COLMAP sparse model folder
    (``cameras``/``images`` ``.bin`` or ``.txt``; pycolmap reads both). Only pinhole cameras
    (``SIMPLE_PINHOLE``, ``PINHOLE``, or a distortion model whose distortion is zero) are
    taken; the images are assumed undistorted. Image names are the file names COLMAP stored."""
    import pycolmap

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"COLMAP model folder {directory} does not exist")
    try:
        reconstruction = pycolmap.Reconstruction(str(directory))
    except Exception as error:  # noqa: BLE001 - pycolmap raises its own runtime errors
        raise ValueError(f"{directory} is not a readable COLMAP model ({error})") from None
    cameras = {}
    for image in reconstruction.images.values():
        camera = reconstruction.camera(image.camera_id)
        model = camera.model.name
        if model not in UNDISTORTED_MODELS:
            extra = np.asarray(camera.params)[len(camera.params) - _distortion_count(model) :]
            if _distortion_count(model) == 0 or np.abs(extra).max() > 1e-9:
                raise ValueError(
                    f"{directory}: camera {image.camera_id} of {image.name} is a {model} camera "
                    "with distortion; undistort the images (colmap image_undistorter) and pass "
                    "the undistorted model"
                )
        pose = np.eye(4)
        pose[:3] = image.cam_from_world().matrix()
        cameras[Path(image.name).name] = (
            np.asarray(camera.calibration_matrix()),
            np.linalg.inv(pose),
        )
    if not cameras:
        raise ValueError(f"{directory} holds no registered images")
    return cameras


def _distortion_count(model: str) -> int:
    """Distortion parameters at the end of a COLMAP camera model's parameter list."""
    return {"SIMPLE_RADIAL": 1, "RADIAL": 2, "OPENCV": 4, "FULL_OPENCV": 8}.get(model, 0)
