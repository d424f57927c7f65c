"""Writers for reconstructions: PLY point clouds, GLB scenes, COLMAP models, nerfstudio
``transforms.json``, depth maps (previews: :mod:`pixio_3d.preview`).

Inputs follow :mod:`pixio_3d.geometry`: OpenCV cameras (x right, y down, z forward),
camera-to-world 4x4 poses, 3x3 pinhole intrinsics with pixel centres at +0.5 (COLMAP's own
convention, so COLMAP cameras take ``fx, fy, cx, cy`` unchanged). Arrays may be numpy or torch.
``image_size`` is always ``(height, width)``, like the ``(V, 3, H, W)`` image tensors.

Every writer goes through a temporary sibling that is renamed into place, so an interrupted
export never leaves a half-written file; an existing output is only replaced with
``overwrite=True`` (``FileExistsError`` otherwise).
"""

from __future__ import annotations

import colorsys
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

# glTF is y-up and its cameras look down -z; OpenCV is y-down, z-forward. Flipping y and z of
# the whole world makes camera 0 (identity) look down -z with +y up, so a viewer's default view
# shows the scene the way photo 0 did.
OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0, 1.0])

__all__ = [
    "OPENCV_TO_GLTF",
    "colmap_observations",
    "save_depth_map",
    "write_colmap_model",
    "write_glb_scene",
    "write_nerfstudio_transforms",
    "write_point_cloud_ply",
]


def _numpy(value: ArrayLike, name: str, dtype=np.float64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}") from error


def _points(points: ArrayLike, name: str = "points") -> np.ndarray:
    array = _numpy(points, name)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {array.shape}")
    return array


def _colors_uint8(colors: ArrayLike | None, count: int) -> np.ndarray:
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


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); rename it into place on success."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def _atomic_directory(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` on success."""
    path = Path(path)
    if path.exists() and not overwrite and (path.is_file() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# PLY
# --------------------------------------------------------------------------------------------


def write_point_cloud_ply(
    path: str | os.PathLike,
    points: ArrayLike,
    colors: ArrayLike | None = None,
    confidence: ArrayLike | None = None,
    min_confidence: float | None = None,
    outlier_nb_neighbors: int = 20,
    outlier_std_ratio: float = 2.0,
    voxel_size: float | None = None,
    overwrite: bool = False,
) -> dict[str, int]:
    """Filter a coloured point cloud with open3d and write it as a binary PLY.

    ``points (N, 3)``, ``colors (N, 3)`` uint8 or float in [0, 1], ``confidence (N,)``.
    Steps, in order: drop non-finite points; keep ``confidence >= min_confidence``; average into
    voxels of ``voxel_size`` (colours and confidence are averaged); drop statistical outliers
    (points whose mean distance to their ``outlier_nb_neighbors`` nearest neighbours exceeds the
    global mean by ``outlier_std_ratio`` standard deviations; ``outlier_nb_neighbors=0``
    disables it). Voxelising first makes the outlier step faster and density-independent.
    The PLY has float ``x y z``, uchar ``red green blue`` and, when given, float ``confidence``.
    Returns the point counts after each step (``input``, ``finite``, ``confident``, ``voxel``,
    ``written``).
    """
    import open3d as o3d

    xyz = _points(points)
    rgb = _colors_uint8(colors, len(xyz))
    keep = np.isfinite(xyz).all(axis=1)
    counts = {"input": len(xyz), "finite": int(keep.sum())}
    conf = None
    if confidence is not None:
        conf = _numpy(confidence, "confidence").reshape(-1)
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
        raise ValueError(f"no points left to write to {path} after filtering: {counts}")
    with _atomic_file(path, overwrite) as tmp:
        if not o3d.t.io.write_point_cloud(str(tmp), cloud, write_ascii=False):
            raise OSError(f"open3d could not write {path}")
    return counts


# --------------------------------------------------------------------------------------------
# GLB
# --------------------------------------------------------------------------------------------


def _poses_and_intrinsics(
    cam2world: ArrayLike, intrinsics: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    poses = _numpy(cam2world, "cam2world")
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"cam2world must have shape (V, 4, 4), got {poses.shape}")
    k = _numpy(intrinsics, "intrinsics")
    if k.shape == (3, 3):
        k = np.broadcast_to(k, (len(poses), 3, 3))
    if k.shape != (len(poses), 3, 3):
        raise ValueError(
            f"intrinsics must have shape (3, 3) or ({len(poses)}, 3, 3), got {k.shape}"
        )
    return poses, k


def _check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (height, width) > 0, got {tuple(image_size)}")
    return int(image_size[0]), int(image_size[1])


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

    xyz = _points(points)
    rgb = _colors_uint8(colors, len(xyz))
    poses, k = _poses_and_intrinsics(cam2world, intrinsics)
    height, width = _check_image_size(image_size)
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
    with _atomic_file(path, overwrite) as tmp:
        tmp.write_bytes(scene.export(file_type="glb"))
    return Path(path)


# --------------------------------------------------------------------------------------------
# COLMAP
# --------------------------------------------------------------------------------------------


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

    poses, k = _poses_and_intrinsics(cam2world, intrinsics)
    height, width = _check_image_size(image_size)
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
    xyz = np.zeros((0, 3)) if points3D is None else _points(points3D, "points3D")
    rgb = _colors_uint8(colors, len(xyz))

    keypoints: list[list[np.ndarray]] = [[] for _ in names]
    point_tracks: list[list[tuple[int, int]]] = [[] for _ in range(len(xyz))]
    if observations is not None:
        point_index = _numpy(observations[0], "observations[0]", np.int64).reshape(-1)
        image_index = _numpy(observations[1], "observations[1]", np.int64).reshape(-1)
        pixels = _numpy(observations[2], "observations[2]").reshape(-1, 2)
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

    with _atomic_directory(directory, overwrite) as tmp:
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
    import json

    poses, k = _poses_and_intrinsics(cam2world, intrinsics)
    height, width = _check_image_size(image_size)
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
    with _atomic_file(path, overwrite) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return Path(path)


# --------------------------------------------------------------------------------------------
# Depth maps and previews
# --------------------------------------------------------------------------------------------


def save_depth_map(
    path_png: str | os.PathLike,
    depth: ArrayLike,
    confidence: ArrayLike | None = None,
    min_confidence: float | None = None,
    colormap: str = "turbo",
    overwrite: bool = False,
) -> dict[str, Path]:
    """A colour-mapped PNG of ``depth (H, W)`` plus the raw values as ``.npy`` next to it.

    The PNG maps inverse depth (near = the high end of ``colormap``) between its 2nd and 98th
    percentiles over valid pixels; invalid pixels (non-finite, ``<= 0``, or confidence below
    ``min_confidence``) are black. Writes ``<stem>.npy`` (float32 depth) and, with
    ``confidence (H, W)``, ``<stem>_confidence.npy``. Returns the written paths.
    """
    import matplotlib
    from PIL import Image

    values = _numpy(depth, "depth")
    if values.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {values.shape}")
    valid = np.isfinite(values) & (values > 0)
    conf = None
    if confidence is not None:
        conf = _numpy(confidence, "confidence")
        if conf.shape != values.shape:
            raise ValueError(f"confidence {conf.shape} must match depth {values.shape}")
        if min_confidence is not None:
            valid &= conf >= min_confidence
    rgb = np.zeros(values.shape + (3,), dtype=np.uint8)
    if valid.any():
        inverse = 1.0 / values[valid]
        low, high = np.percentile(inverse, [2, 98])
        scaled = np.clip((inverse - low) / max(high - low, 1e-12), 0, 1)
        rgb[valid] = (matplotlib.colormaps[colormap](scaled)[:, :3] * 255).round().astype(np.uint8)
    path_png = Path(path_png)
    outputs = {"png": path_png, "depth": path_png.with_suffix(".npy")}
    if conf is not None:
        outputs["confidence"] = path_png.with_name(f"{path_png.stem}_confidence.npy")
    with contextlib.ExitStack() as stack:
        tmp = {key: stack.enter_context(_atomic_file(p, overwrite)) for key, p in outputs.items()}
        Image.fromarray(rgb).save(tmp["png"], format="PNG")
        with open(tmp["depth"], "wb") as handle:
            np.save(handle, values.astype(np.float32))
        if conf is not None:
            with open(tmp["confidence"], "wb") as handle:
                np.save(handle, conf.astype(np.float32))
    return outputs
