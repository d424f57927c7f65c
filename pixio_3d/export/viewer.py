"""``viewer.html``: a self-contained, offline page of a reconstruction, made with viser.

viser's scene serializer writes its bundled web client and the recorded scene into one HTML
file that opens from disk, with no server and no internet. The page holds the point cloud, one
camera frustum per view showing its photo, and a confidence filter: the cloud is split into
confidence quartiles (``/points/confidence_q00`` .. ``q75``, no point repeated), each of which
the viewer's "Scene tree" panel hides or shows (hide ``q00`` to keep the 75 % most confident
points, and so on). GUI widgets are not kept by viser's static export, so the filter is the
tree's eye toggles rather than a slider.

Cameras follow :mod:`pixio_3d.geometry`: OpenCV camera-to-world ``(V, 4, 4)`` poses and pixel
intrinsics ``(V, 3, 3)``, as viser's frusta expect (+z forward, +y down).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import numpy as np

from pixio_core.io import atomic_write_text
from pixio_core.network import free_port

QUARTILES = (0, 25, 50, 75)


def _thumbnail(image: np.ndarray, long_side: int) -> np.ndarray:
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    scale = long_side / max(picture.size)
    if scale < 1:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(picture)


def scene_extent(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, float]:
    """A robust center (median) and size (2-98 % range diagonal) of points and cameras."""
    everything = np.concatenate([points.reshape(-1, 3), centers.reshape(-1, 3)])
    everything = everything[np.isfinite(everything).all(axis=1)]
    if not len(everything):
        return np.zeros(3), 1.0
    low, high = np.percentile(everything, [2, 98], axis=0)
    return np.median(everything, axis=0), float(max(np.linalg.norm(high - low), 1e-6))


def write_viewer_html(
    path: str | os.PathLike,
    points: np.ndarray,
    colors: np.ndarray,
    poses: np.ndarray,
    intrinsics: np.ndarray,
    image_hw: tuple[int, int] | list[tuple[int, int]],
    images: list[np.ndarray] | None = None,
    confidence: np.ndarray | None = None,
    names: list[str] | None = None,
    max_points: int = 400_000,
    thumbnail_size: int = 256,
    overwrite: bool = True,
    seed: int = 0,
) -> Path:
    """Write the reconstruction as one offline HTML page (see the module docstring).

    ``points (N, 3)``, ``colors (N, 3)`` uint8, ``poses (V, 4, 4)``, ``intrinsics (V, 3, 3)`` at
    ``image_hw`` (one ``(H, W)`` for all views, or one per view); ``images`` (one ``(H, W, 3)``
    uint8 photo or ``None`` per view) shown in the frusta,
    ``confidence (N,)`` for the quartile filter. More than ``max_points`` points are subsampled
    (seeded) to keep the page light (~1 MB + 15 bytes per point)."""
    import viser
    import viser.transforms as vtf

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    intrinsics = np.asarray(intrinsics, dtype=np.float64).reshape(-1, 3, 3)
    if len(points) != len(colors):
        raise ValueError(f"{len(points)} points but {len(colors)} colors")
    if len(poses) != len(intrinsics) or (images is not None and len(images) != len(poses)):
        raise ValueError(
            f"{len(poses)} poses, {len(intrinsics)} intrinsics and "
            f"{len(images) if images is not None else 'no'} images: one of each per view"
        )
    keep = np.isfinite(points).all(axis=1)
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
        keep &= np.isfinite(confidence)
    index = np.flatnonzero(keep)
    if len(index) > max_points:
        index = np.sort(np.random.default_rng(seed).choice(index, max_points, replace=False))
    points, colors = points[index], colors[index]
    confidence = confidence[index] if confidence is not None else None
    center, size = scene_extent(points, poses[:, :3, 3])
    sizes = [tuple(image_hw)] * len(poses) if np.ndim(image_hw[0]) == 0 else list(image_hw)

    # the recording server's "server listening / closing" lines are websockets' INFO logs,
    # which an entry point's INFO logging would print
    logging.getLogger("websockets").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        if len(poses):
            # look at the scene from behind and above the first camera
            eye = poses[0, :3, 3] - poses[0, :3, 2] * 0.5 * size - poses[0, :3, 1] * 0.25 * size
            server.initial_camera.position = tuple(float(v) for v in eye)
            server.initial_camera.look_at = tuple(float(v) for v in center)
            server.initial_camera.up = tuple(float(v) for v in -poses[0, :3, 1])
        point_size = size / 400.0
        if confidence is None or len(points) < 8:
            groups = {"/points/all": np.ones(len(points), dtype=bool)}
        else:
            edges = np.percentile(confidence, [*QUARTILES, 100])
            bins = np.clip(np.searchsorted(edges[1:-1], confidence, side="right"), 0, 3)
            groups = {f"/points/confidence_q{q:02d}": bins == i for i, q in enumerate(QUARTILES)}
        for name, members in groups.items():
            server.scene.add_point_cloud(
                name,
                points=points[members].astype(np.float32),
                colors=colors[members],
                point_size=point_size,
                point_shape="circle",
            )
        for view in range(len(poses)):
            height, width = sizes[view]
            fy = intrinsics[view, 1, 1]
            photo = images[view] if images is not None else None
            image = _thumbnail(photo, thumbnail_size) if photo is not None else None
            label = names[view] if names is not None else f"view_{view:03d}"
            server.scene.add_camera_frustum(
                f"/cameras/{label}",
                fov=float(2 * np.arctan2(height / 2, fy)),
                aspect=float(width / height),
                scale=0.06 * size,
                color=(230, 120, 20) if view == 0 else (40, 110, 230),
                image=image,
                format="jpeg",
                jpeg_quality=85,
                wxyz=vtf.SO3.from_matrix(poses[view, :3, :3]).wxyz,
                position=poses[view, :3, 3],
            )
        html = server.scene.as_html()
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            server.stop()
    return atomic_write_text(path, html, overwrite=overwrite)
