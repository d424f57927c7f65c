"""PNG previews of point clouds: an exact-colour numpy z-buffer splat, or Open3D's offscreen
renderer. Cameras follow :mod:`pixio_3d.geometry` (OpenCV, camera-to-world, pixel centres at
+0.5)."""

from __future__ import annotations

import os

import numpy as np

from pixio_3d.export.arrays import ArrayLike, as_numpy, as_points, colors_uint8
from pixio_core.io import atomic_file
from pixio_core.software_gl import load_triton_first

__all__ = ["look_at_view", "render_point_cloud_preview"]


def look_at_view(points: np.ndarray, width: int, height: int, fov_deg: float = 60.0):
    """A default preview camera: behind and above the cloud's centre in the OpenCV world
    (-z, -y), looking at it, far enough that the robust radius fits. Returns ``(cam2world,
    intrinsics)``."""
    centre = np.median(points, axis=0)
    radius = float(np.percentile(np.linalg.norm(points - centre, axis=1), 95)) or 1.0
    focal = 0.5 * min(width, height) / np.tan(np.radians(fov_deg) / 2)
    distance = 1.1 * radius / np.sin(np.radians(fov_deg) / 2)
    direction = np.array([0.0, -0.5, -1.0]) / np.sqrt(1.25)
    eye = centre + distance * direction
    forward = (centre - eye) / np.linalg.norm(centre - eye)
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    cam2world = np.eye(4)
    cam2world[:3, :3] = np.stack([right, down, forward], axis=1)
    cam2world[:3, 3] = eye
    intrinsics = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    return cam2world, intrinsics


def _splat(points, rgb, cam2world, intrinsics, width, height, point_size, background):
    """Numpy z-buffer: every point paints a ``point_size`` square; the nearest point wins."""
    local = (points - cam2world[:3, 3]) @ cam2world[:3, :3]
    in_front = local[:, 2] > 1e-9
    local, rgb = local[in_front], rgb[in_front]
    order = np.argsort(local[:, 2], kind="stable")
    local, rgb = local[order], rgb[order]
    pixels = local @ intrinsics.T
    cols = np.floor(pixels[:, 0] / pixels[:, 2]).astype(np.int64)
    rows = np.floor(pixels[:, 1] / pixels[:, 2]).astype(np.int64)
    offsets = np.arange(point_size) - (point_size - 1) // 2
    # (N, s*s) candidates in near-to-far point order; np.unique keeps the first one per pixel
    cand_rows = (rows[:, None, None] + offsets[None, :, None]).repeat(point_size, 2).reshape(-1)
    cand_cols = (cols[:, None, None] + offsets[None, None, :]).repeat(point_size, 1).reshape(-1)
    source = np.repeat(np.arange(len(rows)), point_size * point_size)
    inside = (cand_rows >= 0) & (cand_rows < height) & (cand_cols >= 0) & (cand_cols < width)
    flat = cand_rows[inside] * width + cand_cols[inside]
    pixel_ids, first = np.unique(flat, return_index=True)
    image = np.empty((height * width, 3), dtype=np.uint8)
    image[:] = background
    image[pixel_ids] = rgb[source[inside][first]]
    return image.reshape(height, width, 3)


def _render_open3d(points, rgb, cam2world, intrinsics, width, height, point_size, background):
    """Open3D's Filament renderer (needs Vulkan: lavapipe on CPU-only machines)."""
    load_triton_first()  # before the first software Vulkan context (see pixio_core.software_gl)
    import open3d as o3d

    rendering = o3d.visualization.rendering
    renderer = rendering.OffscreenRenderer(width, height)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.colors = o3d.utility.Vector3dVector(rgb / 255.0)
    material = rendering.MaterialRecord()
    material.shader = "defaultUnlit"
    material.point_size = float(point_size)
    renderer.scene.set_background([*(np.asarray(background) / 255.0), 1.0])
    renderer.scene.view.set_color_grading(
        rendering.ColorGrading(
            rendering.ColorGrading.Quality.HIGH, rendering.ColorGrading.ToneMapping.LINEAR
        )
    )
    renderer.scene.add_geometry("points", cloud, material)
    shifted = intrinsics.copy()
    shifted[:2, 2] -= 0.5  # Open3D puts pixel centres at integers
    renderer.setup_camera(shifted, np.linalg.inv(cam2world), width, height)
    image = np.asarray(renderer.render_to_image()).copy()
    del renderer
    return image


def render_point_cloud_preview(
    path_png: str | os.PathLike,
    points: ArrayLike,
    colors: ArrayLike | None = None,
    width: int = 640,
    height: int = 480,
    cam2world: ArrayLike | None = None,
    intrinsics: ArrayLike | None = None,
    point_size: int = 2,
    background: tuple[int, int, int] = (255, 255, 255),
    backend: str = "numpy",
    overwrite: bool = False,
) -> np.ndarray:
    """Render ``points (N, 3)`` with ``colors`` to a ``height x width`` PNG; returns the image.

    The view is ``cam2world`` (OpenCV, 4x4) with ``intrinsics`` (3x3, for this width/height), or
    by default :func:`look_at_view`. ``backend="numpy"`` (default) is an exact-colour z-buffer
    splat that needs no graphics stack; ``"open3d"`` uses Open3D's OffscreenRenderer (Filament on
    Vulkan; on a CPU-only machine it needs Mesa's lavapipe driver, ``mesa-vulkan-drivers``).
    """
    from PIL import Image

    xyz = as_points(points)
    rgb = colors_uint8(colors, len(xyz))
    finite = np.isfinite(xyz).all(axis=1)
    xyz, rgb = xyz[finite], rgb[finite]
    if len(xyz) == 0:
        raise ValueError("no finite points to render")
    if point_size < 1:
        raise ValueError(f"point_size must be >= 1, got {point_size}")
    default_pose, default_k = look_at_view(xyz, width, height)
    pose = default_pose if cam2world is None else as_numpy(cam2world, "cam2world").reshape(4, 4)
    k = default_k if intrinsics is None else as_numpy(intrinsics, "intrinsics").reshape(3, 3)
    if backend == "numpy":
        image = _splat(xyz, rgb, pose, k, width, height, point_size, background)
    elif backend == "open3d":
        image = _render_open3d(xyz, rgb, pose, k, width, height, point_size, background)
    else:
        raise ValueError(f"backend must be 'numpy' or 'open3d', got {backend!r}")
    with atomic_file(path_png, overwrite) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return image
