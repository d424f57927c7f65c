"""COLMAP's incremental structure-from-motion (through pycolmap) as the peer baseline.

:func:`run_colmap_sfm` runs what a user would otherwise run on a handful of photos: SIFT
feature extraction, exhaustive matching with geometric verification and incremental mapping,
all on the CPU, and keeps the reconstruction with the most registered images. Cameras are
``PINHOLE``: either known (the dataset's ``K``, held fixed, the fair peer of a model that is
given intrinsics) or estimated by bundle adjustment (per image, or shared by all images).

Results follow :mod:`pixio_3d.geometry` (OpenCV cameras, camera-to-world poses, pixel centres
at ``+0.5`` (COLMAP's convention too)); the world frame and scale are COLMAP's own, so compare
with gauge-free metrics (:func:`pixio_3d.evaluation.metrics.pose_metrics`) or after a Sim(3) alignment.
A failed reconstruction is a result, not an error: every view is then unregistered (NaN pose),
which :func:`pixio_3d.evaluation.metrics.pose_metrics` scores as failed pairs.

``settings``:

- ``"default"``: COLMAP's defaults (the mapper needs 100 inliers to start a model, so sparse
  wide-baseline sets often fail);
- ``"sparse"``: lower mapper thresholds for few views (``init_min_num_inliers=30``,
  ``abs_pose_min_num_inliers=15``, ``abs_pose_min_inlier_ratio=0.15``);
- ``"tuned"``: ``"sparse"`` plus affine-shape and domain-size-pooled SIFT with a lower peak
  threshold and guided matching (several times slower to extract).

pycolmap logs through glog; set ``pycolmap.logging.minloglevel`` at your entry point to quiet it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
from PIL import Image

from pixio_3d.sfm.features import stretch_contrast
from pixio_core.imaging import read_image

COLMAP_SETTINGS = ("default", "sparse", "tuned")
DATABASE_NAME = "database.db"
SPARSE_MAPPER = {
    "init_min_num_inliers": 30,
    "abs_pose_min_num_inliers": 15,
    "abs_pose_min_inlier_ratio": 0.15,
}
TUNED_SIFT = {"peak_threshold": 0.004, "estimate_affine_shape": True, "domain_size_pooling": True}
PNG_COMPRESSION = 0  # scratch copies for COLMAP: speed over size


def _check_intrinsics(known_intrinsics: Any, num_views: int) -> np.ndarray | None:
    if known_intrinsics is None:
        return None
    matrices = np.asarray(known_intrinsics, dtype=np.float64)
    if matrices.shape == (3, 3):
        matrices = matrices[None]
    elif matrices.shape != (num_views, 3, 3):
        raise ValueError(
            f"known_intrinsics must be (3, 3) or ({num_views}, 3, 3), got {matrices.shape}"
        )
    if (
        not np.isfinite(matrices).all()
        or (matrices[:, 0, 0] <= 0).any()
        or (matrices[:, 1, 1] <= 0).any()
    ):
        raise ValueError("known_intrinsics must be finite pinhole matrices with fx, fy > 0")
    return matrices


def _prepare_images(
    images: np.ndarray | Sequence[str | os.PathLike], image_dir: Path, contrast_stretch: bool
) -> list[str]:
    """Put the views in ``image_dir`` as ``000000.png`` ... (files named by view index, so the
    index survives COLMAP); returns the names in view order."""
    names = []
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be a (V, H, W, 3) uint8 array, got {images.shape} {images.dtype}"
            )
        for index, image in enumerate(images):
            names.append(f"{index:06d}.png")
            rgb = stretch_contrast(image) if contrast_stretch else image
            Image.fromarray(rgb).save(image_dir / names[-1], compress_level=PNG_COMPRESSION)
        return names
    for index, path in enumerate(images):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        if contrast_stretch:  # the project's one reader: 16-bit, palette, CMYK, EXIF-rotated
            rgb = np.asarray(read_image(path))
            names.append(f"{index:06d}.png")
            rgb = stretch_contrast(rgb)
            Image.fromarray(rgb).save(image_dir / names[-1], compress_level=PNG_COMPRESSION)
        else:
            names.append(f"{index:06d}{path.suffix.lower()}")
            os.symlink(path.resolve(), image_dir / names[-1])
    return names


def _options(
    settings: str, num_threads: int, seed: int, fixed_intrinsics: bool
) -> tuple[pycolmap.FeatureExtractionOptions, pycolmap.FeatureMatchingOptions, Any]:
    extraction = pycolmap.FeatureExtractionOptions()
    matching = pycolmap.FeatureMatchingOptions()
    mapping = pycolmap.IncrementalPipelineOptions()
    extraction.num_threads = matching.num_threads = mapping.num_threads = num_threads
    mapping.random_seed = seed
    if settings in ("sparse", "tuned"):
        for name, value in SPARSE_MAPPER.items():
            setattr(mapping.mapper, name, value)
    if settings == "tuned":
        for name, value in TUNED_SIFT.items():
            setattr(extraction.sift, name, value)
        matching.guided_matching = True
    if fixed_intrinsics:
        mapping.ba_refine_focal_length = False
        mapping.ba_refine_principal_point = False
        mapping.ba_refine_extra_params = False
        mapping.mapper.abs_pose_refine_focal_length = False
        mapping.mapper.abs_pose_refine_extra_params = False
    return extraction, matching, mapping


def _set_known_cameras(database_path: Path, names: list[str], intrinsics: np.ndarray) -> None:
    """Overwrite the cameras COLMAP guessed with the known ``K`` (one per camera)."""
    database = pycolmap.Database.open(database_path)
    try:
        for image in database.read_all_images():
            view = names.index(image.name)
            matrix = intrinsics[0] if len(intrinsics) == 1 else intrinsics[view]
            camera = database.read_camera(image.camera_id)
            camera.params = [matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2]]
            camera.has_prior_focal_length = True
            database.update_camera(camera)
    finally:
        database.close()


def _keypoint_counts(database_path: Path, names: list[str]) -> np.ndarray:
    counts = np.zeros(len(names), np.int64)
    database = pycolmap.Database.open(database_path)
    try:
        for image in database.read_all_images():
            counts[names.index(image.name)] = database.num_keypoints_for_image(image.image_id)
    finally:
        database.close()
    return counts


def _fresh_work_dir(work_dir: Path, overwrite: bool) -> None:
    owned = [work_dir / DATABASE_NAME, work_dir / "images", work_dir / "sparse"]
    if any(p.exists() for p in owned):
        if not overwrite:
            raise FileExistsError(
                f"{work_dir} holds a previous COLMAP run ({DATABASE_NAME}, images/ or sparse/); "
                "pass overwrite=True to replace it"
            )
        for path in owned:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    (work_dir / "images").mkdir(parents=True)
    (work_dir / "sparse").mkdir()


def run_colmap_sfm(
    images: np.ndarray | Sequence[str | os.PathLike],
    work_dir: str | os.PathLike | None = None,
    known_intrinsics: np.ndarray | None = None,
    *,
    shared_intrinsics: bool = False,
    settings: str = "default",
    contrast_stretch: bool = False,
    num_threads: int = -1,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Incremental SfM of ``V`` views with COLMAP; never raises because nothing reconstructs.

    Args:
        images: ``(V, H, W, 3)`` uint8 RGB, or ``V`` image paths.
        work_dir: folder for the database, images and models (kept); ``None``: a temporary
            folder, removed afterwards. A previous run there raises unless ``overwrite``.
        known_intrinsics: ``(3, 3)`` shared or ``(V, 3, 3)`` per-view pinhole ``K`` in pixels
            (centre of pixel (c, r) at (c + 0.5, r + 0.5)), held fixed; ``None``: estimated.
        shared_intrinsics: with unknown intrinsics, one camera for all views (else one each).
        settings: one of :data:`COLMAP_SETTINGS` (module docstring).
        contrast_stretch: :func:`stretch_contrast` every view before extraction.
        num_threads: COLMAP threads for every stage (-1: all cores).
        seed: the mapper's random seed.

    Returns a dict: ``cam2world (V, 4, 4)`` float64 (NaN rows for unregistered views),
    ``registered (V,)`` bool, ``intrinsics (V, 3, 3)`` (used or estimated; NaN if
    unregistered), ``points (N, 3)`` float64 and ``colors (N, 3)`` uint8 of the sparse model,
    ``num_registered``, ``num_models``, ``keypoints (V,)`` SIFT keypoints per view,
    ``seconds`` (everything from writing the images to reading the model), ``stage_seconds``
    (``prepare``, ``extract``, ``match``, ``map``), ``status`` (``"ok"``,
    ``"no_reconstruction"`` or ``"mapper_error: ..."``) and ``reconstruction`` (the
    ``pycolmap.Reconstruction`` kept, or None).
    """
    if settings not in COLMAP_SETTINGS:
        raise ValueError(f"settings must be one of {COLMAP_SETTINGS}, got {settings!r}")
    if isinstance(images, str | os.PathLike):
        raise ValueError(f"images must be an array or a list of image paths, got {images!r}")
    num_views = len(images)
    if num_views < 1:
        raise ValueError("images must hold at least one view")
    intrinsics = _check_intrinsics(known_intrinsics, num_views)
    temporary = tempfile.TemporaryDirectory(prefix="pixio_colmap_") if work_dir is None else None
    root = Path(temporary.name if temporary is not None else work_dir)  # type: ignore[arg-type]
    try:
        _fresh_work_dir(root, overwrite)
        return _run(
            images, root, intrinsics, shared_intrinsics, settings, contrast_stretch, num_threads,
            seed,
        )  # fmt: skip
    finally:
        if temporary is not None:
            temporary.cleanup()


def _run(
    images: np.ndarray | Sequence[str | os.PathLike],
    root: Path,
    intrinsics: np.ndarray | None,
    shared_intrinsics: bool,
    settings: str,
    contrast_stretch: bool,
    num_threads: int,
    seed: int,
) -> dict[str, Any]:
    num_views = len(images)
    image_dir, database_path = root / "images", root / DATABASE_NAME
    stages: dict[str, float] = {}
    start = last = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal last
        now = time.perf_counter()
        stages[stage], last = now - last, now

    names = _prepare_images(images, image_dir, contrast_stretch)
    lap("prepare")
    extraction, matching, mapping = _options(settings, num_threads, seed, intrinsics is not None)
    shared = len(intrinsics) == 1 if intrinsics is not None else shared_intrinsics
    pycolmap.extract_features(
        database_path,
        image_dir,
        image_names=names,
        camera_mode=pycolmap.CameraMode.SINGLE if shared else pycolmap.CameraMode.PER_IMAGE,
        reader_options=pycolmap.ImageReaderOptions(camera_model="PINHOLE"),
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    if intrinsics is not None:
        _set_known_cameras(database_path, names, intrinsics)
    lap("extract")
    pycolmap.match_exhaustive(database_path, matching_options=matching, device=pycolmap.Device.cpu)
    lap("match")
    status = "ok"
    try:
        models = pycolmap.incremental_mapping(database_path, image_dir, root / "sparse", mapping)
    except RuntimeError as error:  # a mapper failure is a baseline result, not a crash
        models, status = {}, f"mapper_error: {error}"
    lap("map")

    cam2world = np.full((num_views, 4, 4), np.nan)
    used_intrinsics = np.full((num_views, 3, 3), np.nan)
    registered = np.zeros(num_views, bool)
    points, colors = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    best = max(models.values(), key=lambda m: m.num_reg_images(), default=None)
    if best is None and status == "ok":
        status = "no_reconstruction"
    if best is not None:
        for image in best.images.values():
            if not image.has_pose:
                continue
            view = names.index(image.name)
            world2cam = np.eye(4)
            world2cam[:3] = image.cam_from_world().matrix()
            cam2world[view] = np.linalg.inv(world2cam)
            used_intrinsics[view] = image.camera.calibration_matrix()
            registered[view] = True
        if best.num_points3D():
            points = np.stack([p.xyz for p in best.points3D.values()]).astype(np.float64)
            colors = np.stack([p.color for p in best.points3D.values()]).astype(np.uint8)
    seconds = time.perf_counter() - start
    return {
        "cam2world": cam2world,
        "registered": registered,
        "intrinsics": used_intrinsics,
        "points": points,
        "colors": colors,
        "num_registered": int(registered.sum()),
        "num_models": len(models),
        "keypoints": _keypoint_counts(database_path, names),
        "seconds": seconds,
        "stage_seconds": stages,
        "status": status,
        "reconstruction": best,
    }
