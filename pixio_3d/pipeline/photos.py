"""A folder of photos in, a reconstruction that other 3D tools open out (``pixio-recon``).

:func:`reconstruct_photos` loads the photos (:func:`pixio_3d.data.photos.load_photos`: EXIF
orientation, mixed sizes, one working size with sides that are multiples of 16, unreadable and
too-small files skipped and listed), runs a :class:`~pixio_3d.models.ReconstructionModel` on all
of them at once and writes, into ``out_dir``::

    images/<stem>.png          the views the model saw (working resolution)
    sparse/0/{cameras,images,points3D}.bin
                               COLMAP model at the working resolution (PINHOLE cameras, poses,
                               the filtered points with tracks), so ``images/`` + ``sparse/0``
                               is the layout gsplat / nerfstudio / COLMAP expect
    transforms.json            the same cameras for nerfstudio (``ns-train splatfacto --data
                               OUT_DIR``): OpenGL camera axes, ``ply_file_path`` = points.ply
    points.ply                 coloured points: the network's confidence, multi-view
                               consistency, voxel grid, outlier removal
    scene.glb                  the same points and one wire frustum per camera (glTF, y up)
    depth/<stem>.png, .npy     z-depth in metres (colour map, float32 ``(H, W)``)
    confidence/<stem>.png, .npy
                               multi-view support in [0, 1] (:mod:`pixio_3d.sfm.fusion`: the
                               share of the other views that see the pixel and agree, 0.5 when
                               none sees it; grey scale 0..1, float32 ``(H, W)``)
    network_confidence/<stem>.npy
                               the network's own confidence (float32 ``(H, W)``, >= 1)
    depth_original/<stem>.png, .npy
                               with ``original_depth=True`` (``--original-depth``): the depth
                               on each upright original photo's pixel grid (nearest working
                               pixel; 0 outside the working crop)
    preview.png                a render of the point cloud
    viewer.html                the point cloud and the cameras with their photos in one offline
                               page (viser; opens from disk in any browser, confidence filter in
                               its Scene tree)
    summary.json               inputs, skipped files, cameras, counts, timings, what was written

Cameras, depth and confidence are at the **working resolution** (the views in ``images/``);
``summary.json`` also gives each photo's intrinsics mapped back to the upright original photo
(:meth:`PhotoTransform.intrinsics_to_original`) and the crop/scale that links the two. Poses are
OpenCV camera-to-world in the frame of the first photo; units are the model's metric guess.
By default they come from SIFT two-view geometry in the working views with translation lengths
from the model's depth (``pose_solver="features"``); ``summary["pose_solver"]`` says which solver
ran, and each photo's ``pose_support`` how many inliers placed it (0: the pose head's camera).
With them, each view's depth is fitted to the bundle-adjusted points it sees (each photo's
``depth_fit``), and ``summary["metric_scale"]`` says how well the views agree on the metric
scale. The views are then fused: a pixel enters the point cloud only where its depth agrees
with the other views that see it (``summary["fusion"]``).

One photo falls back to monocular depth: the reconstruction model runs on that single view (its
camera is the identity) and ``summary["mode"]`` is ``"monocular"``. Nothing already in
``out_dir`` is replaced without ``overwrite=True``: the outputs are built in a temporary sibling
folder and moved in at the end, and files of other names in ``out_dir`` are left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pixio_3d import export
from pixio_3d.data.cameras import read_known_cameras
from pixio_3d.data.photos import LoadedPhotos, is_video, load_photos
from pixio_3d.export.preview import render_point_cloud_preview
from pixio_3d.export.viewer import write_viewer_html
from pixio_3d.models import ReconstructionModel
from pixio_3d.pipeline.predict import predict_views
from pixio_3d.pipeline.report import build_summary, degenerate_inputs, model_note
from pixio_3d.sfm import FeatureSettings
from pixio_3d.sfm.fusion import FUSION_MODES, REL_TOL, consistency
from pixio_core.precision import PRECISIONS, resolve_precision

__all__ = ["OUTPUT_ENTRIES", "reconstruct_photos"]

logger = logging.getLogger(__name__)


OUTPUT_ENTRIES = (
    "images",
    "sparse",
    "transforms.json",
    "points.ply",
    "scene.glb",
    "depth",
    "confidence",
    "network_confidence",
    "depth_original",
    "preview.png",
    "viewer.html",
    "summary.json",  # written last: a folder with it holds a complete reconstruction
)


STAGES = (
    "load photos",
    "model",
    "fusion",
    "maps",
    "point cloud",
    "glb",
    "colmap",
    "nerfstudio",
    "preview",
    "viewer",
)


def _existing_outputs(out_dir: Path) -> list[str]:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"output folder {out_dir} is a file")
    return [name for name in OUTPUT_ENTRIES if (out_dir / name).exists()]


def _unique_stems(paths: list[Path]) -> list[str]:
    """File stems; the whole name (dots as ``_``) where photos share a stem, then ``_<index>``
    for any name still taken (``a.jpg``, ``a.png`` -> ``a_jpg``, ``a_png``)."""
    stems = [p.stem for p in paths]
    names = [p.name.replace(".", "_") if stems.count(p.stem) > 1 else p.stem for p in paths]
    return [
        name if names.count(name) == 1 else f"{name}_{index}" for index, name in enumerate(names)
    ]


def _working_intrinsics(photos: LoadedPhotos, focal_px: float | Sequence[float]) -> np.ndarray:
    """``(V, 3, 3)``: focal ``focal_px`` (one for all photos or one per photo) at each original
    photo's centre, mapped to the views."""
    focals = [focal_px] * len(photos.transforms) if np.isscalar(focal_px) else list(focal_px)
    if not all(f > 0 for f in focals):
        raise ValueError(
            f"focal_px must be positive (pixels of the original photos), got {focal_px}"
        )
    result = []
    for transform, focal in zip(photos.transforms, focals, strict=True):
        width, height = transform.original_size
        original = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
        result.append(transform.intrinsics_from_original(original))
    return np.stack(result)


def _known_focals(
    photos: LoadedPhotos, focal_px: float | None, exif_focal: bool
) -> tuple[float | list[float] | None, str]:
    """The focal lengths to condition on and where they come from: ``focal_px`` if given, else
    every photo's EXIF focal length if all have one (and ``exif_focal``), else None."""
    if focal_px is not None:
        return focal_px, f"given: focal_px={focal_px}"
    exif = [t.exif_focal_px for t in photos.transforms]
    if exif_focal and all(f is not None for f in exif):
        return [float(f) for f in exif], "EXIF FocalLengthIn35mmFilm of each photo"
    missing = sum(f is None for f in exif)
    note = f" ({missing} of {len(exif)} photos without an EXIF focal length)" if exif_focal else ""
    return None, "fitted to the predicted rays" + note


def _check_intrinsics(intrinsics: np.ndarray, names: list[str]) -> None:
    focal = intrinsics[:, [0, 1], [0, 1]]
    bad = [
        i
        for i in range(len(names))
        if not (np.isfinite(intrinsics[i]).all() and focal[i].min() > 0)
    ]
    if bad:
        details = ", ".join(f"{names[i]} (fx={focal[i, 0]:.3g}, fy={focal[i, 1]:.3g})" for i in bad)
        raise ValueError(
            f"the model's rays give no valid pinhole camera for {details}: the checkpoint may be "
            "untrained or the photos unlike its training data; pass the focal length "
            "(focal_px / --focal-px, in pixels of the original photos) to fix the cameras"
        )


@contextmanager
def _staging_folder(out_dir: Path) -> Iterator[Path]:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, out_dir: Path, overwrite: bool) -> None:
    existing = _existing_outputs(out_dir)
    if existing and not overwrite:  # appeared while we worked
        raise FileExistsError(f"{out_dir} now holds {existing}; pass overwrite=True to replace")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_ENTRIES:
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if (staging / name).exists():
            os.replace(staging / name, target)


def reconstruct_photos(
    photo_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: ReconstructionModel,
    *,
    overwrite: bool = False,
    min_confidence: float | None = None,
    confidence_quantile: float = 0.1,
    voxel_size: float | None = None,
    voxel_fraction: float = 0.01,
    max_points: int = 1_000_000,
    max_observations_per_image: int = 10_000,
    long_side: int = 512,
    min_side: int = 32,
    focal_px: float | None = None,
    cameras: str | os.PathLike | None = None,
    exif_focal: bool = True,
    pose_solver: str = "features",
    feature_settings: FeatureSettings | None = None,
    fusion: str = "consistent",
    precision: str = "auto",
    original_depth: bool = False,
    preview_size: tuple[int, int] = (640, 480),
    seed: int = 0,
    fps: float = 2.0,
    checkpoint: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Reconstruct the photos of ``photo_dir`` into ``out_dir`` (layout in the module docstring).

    Args:
        model: a :class:`ReconstructionModel` (e.g. from :func:`pixio_3d.checkpoint.load_model`);
            it runs on the device its parameters are on.
        overwrite: replace the outputs of an earlier reconstruction in ``out_dir``; without it a
            ``FileExistsError`` is raised before any work is done.
        min_confidence: keep pixels whose confidence is at least this; ``None`` drops the
            ``confidence_quantile`` least confident pixels of all views instead.
        voxel_size: voxel grid of the point cloud in scene units; ``None`` uses
            ``voxel_fraction`` of the robust scene extent; ``0`` keeps every point.
        max_points: confident points beyond this are subsampled at random (``seed``) before
            voxelising, which bounds memory and time for many large photos.
        max_observations_per_image: COLMAP keypoints (track elements) kept per image, a
            random subset of the points each view sees (the points themselves are all kept).
        long_side, min_side: the working size and the smallest photo side accepted.
        focal_px: known focal length in pixels of the original photos (principal point at each
            photo's centre); it conditions the model and fixes the cameras. Without it, each
            photo's EXIF 35 mm-equivalent focal length is used when every photo has one
            (``exif_focal``), and otherwise the intrinsics are fitted to the predicted rays.
        exif_focal: use the photos' EXIF focal lengths (see ``focal_px``).
        cameras: known cameras, a COLMAP model folder or a JSON file
            (:mod:`pixio_3d.data.cameras`; pixels of the original photos): full intrinsics of
            every photo, and with poses for every photo no pose is estimated. They are honoured
            exactly in every output; ``focal_px`` and EXIF are then not used.
        pose_solver: where the cameras come from: ``features`` (the default: SIFT two-view
            geometry in the working views, the network's depth for the translation lengths and
            its pose head for views that geometry cannot place), ``head`` or ``matches`` (see
            :meth:`ReconstructionModel.infer`).
        feature_settings: the ``features`` solver's settings (default
            :class:`~pixio_3d.sfm.FeatureSettings()`).
        fusion: which pixels enter ``points.ply`` (:data:`pixio_3d.sfm.fusion.FUSION_MODES`):
            ``consistent`` (default: those no other view contradicts, unverified ones included),
            ``verified`` (only those another view sees and agrees with) or ``all``.
        precision: the network's arithmetic, ``auto`` (default: bf16 autocast where it is
            native, CUDA or a CPU with AMX / AVX512-BF16, else fp32), ``bf16`` or ``fp32``
            (:func:`pixio_3d.pipeline.predict`); recorded in the summary.
        original_depth: also write ``depth_original/``: each depth map resampled onto its
            original photo's pixels (z-depth does not change with image scale).
        preview_size: ``(width, height)`` of ``preview.png``.
        checkpoint: recorded in ``summary.json``.
        fps: ``photo_dir`` may be one video file: its frames are sampled at this rate
            (:func:`pixio_3d.data.photos.read_video_frames`) and reconstructed like photos.

    Returns the summary written to ``summary.json`` (plain JSON values). Raises
    ``FileNotFoundError`` for a missing or empty folder, ``ValueError`` when no photo is usable
    or the model gives no valid camera, ``FileExistsError`` as described for ``overwrite``.
    """
    photo_dir, out_dir = Path(photo_dir), Path(out_dir)
    if out_dir.resolve() == photo_dir.resolve():
        raise ValueError(f"output folder {out_dir} must differ from the photo folder")
    existing = _existing_outputs(out_dir)
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a reconstruction ({', '.join(existing)}); pass "
            "overwrite=True (--overwrite) to replace it, or choose another folder"
        )
    if max_points < 1 or not 0 <= confidence_quantile < 1:
        raise ValueError(
            f"need max_points >= 1 and 0 <= confidence_quantile < 1, got {max_points}, "
            f"{confidence_quantile}"
        )
    if voxel_size is not None and voxel_size < 0:
        raise ValueError(f"voxel_size must be >= 0 (0: no voxel grid), got {voxel_size}")
    if fusion not in FUSION_MODES:
        raise ValueError(f"fusion must be one of {FUSION_MODES}, got {fusion!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")

    seconds: dict[str, float] = {}
    with tqdm(total=len(STAGES), desc="pixio-recon", unit="stage", disable=not progress) as bar:

        @contextmanager
        def timed(name: str) -> Iterator[None]:
            bar.set_postfix_str(name)
            started = time.perf_counter()
            yield
            seconds[name] = round(time.perf_counter() - started, 3)
            bar.update()

        with timed("load photos"):
            photos = load_photos(photo_dir, long_side=long_side, min_side=min_side, fps=fps)
            names = [p.name for p in photos.paths]
            stems = _unique_stems(photos.paths)
            height, width = photos.images.shape[-2:]
        with timed("model"):
            known = None
            if cameras is not None:
                sizes = [t.original_size for t in photos.transforms]
                known = read_known_cameras(cameras, names, sizes)
                given = np.stack(
                    [
                        t.intrinsics_from_original(k)
                        for t, k in zip(photos.transforms, known.intrinsics, strict=True)
                    ]
                )
                intrinsics_source = f"given: {known.source}"
                if known.cam2world is not None:
                    pose_solver = "given"
            else:
                focals, intrinsics_source = _known_focals(photos, focal_px, exif_focal)
                if focals is None and pose_solver == "features" and len(photos.paths) > 1:
                    intrinsics_source += "; focal lengths refined by the features solver's "
                    intrinsics_source += "bundle adjustment where it placed the photo"
                given = None if focals is None else _working_intrinsics(photos, focals)
            given_poses = None if known is None else known.cam2world
            prediction = predict_views(
                model,
                photos.images,
                None if given is None else torch.from_numpy(given),
                pose_solver="head" if given_poses is not None else pose_solver,
                feature_settings=feature_settings,
                poses=None if given_poses is None else torch.from_numpy(given_poses),
                precision=precision,
            )
            if given is not None:
                prediction["intrinsics"] = given  # exactly the given ones, not float32 copies
            if given_poses is not None:
                prediction["camera_poses"] = given_poses  # exactly, not float32 copies
            _check_intrinsics(prediction["intrinsics"], names)
        colors = np.round(photos.images.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
        poses, intrinsics = prediction["camera_poses"], prediction["intrinsics"]
        with timed("fusion"):
            fused = consistency(prediction["depth_z"], intrinsics, poses)

        with _staging_folder(out_dir) as staging:
            with timed("maps"):
                originals = photos.transforms if original_depth else None
                export.write_view_maps(
                    staging,
                    stems,
                    colors,
                    prediction["depth_z"],
                    fused.support,
                    network_confidence=prediction["conf"],
                    originals=originals,
                    confidence_range=(0.0, 1.0),
                )
            with timed("point cloud"):
                cloud, cloud_info = _write_point_cloud(
                    staging / "points.ply",
                    prediction,
                    colors,
                    consistent=fused.kept(fusion),
                    min_confidence=min_confidence,
                    confidence_quantile=confidence_quantile,
                    voxel_size=voxel_size,
                    voxel_fraction=voxel_fraction,
                    max_points=max_points,
                    seed=seed,
                )
            with timed("glb"):
                export.write_glb_scene(
                    staging / "scene.glb",
                    cloud.points,
                    cloud.colors,
                    poses,
                    intrinsics,
                    (height, width),
                )
            with timed("colmap"):
                observations = export.colmap_observations(
                    cloud.points,
                    poses,
                    intrinsics,
                    prediction["depth_z"],
                    absolute_tolerance=cloud_info["voxel_size"] or 0.0,
                    max_per_image=max_observations_per_image,
                    seed=seed,
                )
                export.write_colmap_model(
                    staging / "sparse" / "0",
                    poses,
                    intrinsics,
                    [f"{stem}.png" for stem in stems],
                    (height, width),
                    points3D=cloud.points,
                    colors=cloud.colors,
                    observations=observations,
                )
            with timed("nerfstudio"):
                export.write_nerfstudio_transforms(
                    staging / "transforms.json",
                    poses,
                    intrinsics,
                    [f"images/{stem}.png" for stem in stems],
                    (height, width),
                    ply_file_path="points.ply",
                )
            with timed("preview"):
                render_point_cloud_preview(
                    staging / "preview.png",
                    cloud.points,
                    cloud.colors,
                    width=preview_size[0],
                    height=preview_size[1],
                )
            with timed("viewer"):
                write_viewer_html(
                    staging / "viewer.html",
                    cloud.points,
                    cloud.colors,
                    poses,
                    intrinsics,
                    (height, width),
                    images=list(colors),
                    confidence=cloud.confidence,
                    names=stems,
                )
            summary = build_summary(
                photo_dir,
                out_dir,
                photos,
                stems,
                prediction,
                intrinsics_source,
                given_poses=given_poses is not None,
            )
            summary["pose_solver"] = pose_solver
            if pose_solver == "features":
                summary["feature_settings"] = asdict(feature_settings or FeatureSettings())
            summary["outputs"] = [name for name in OUTPUT_ENTRIES if (staging / name).exists()] + [
                "summary.json"
            ]
            if original_depth:
                for entry, stem in zip(summary["photos"], stems, strict=True):
                    entry["depth_original"] = f"depth_original/{stem}.npy"
            summary["checkpoint"] = checkpoint
            if is_video(photo_dir):
                summary["video"] = {"path": str(Path(photo_dir).resolve()), "fps": fps}
            summary["model"] = model_note(model)
            dtype = resolve_precision(precision, next(model.parameters()).device)
            summary["precision"] = {"requested": precision, "network": str(dtype).split(".")[1]}
            summary["confidence"] = (
                "confidence/: multi-view support in [0, 1], (agreeing + 0.5) / (seeing + 1) of "
                "the other views (0.5: no other view sees the pixel); network_confidence/: the "
                "network's own (>= 1)"
            )
            summary["fusion"] = {
                "mode": fusion,
                "relative_depth_tolerance": REL_TOL,
                "pixels": int(np.isfinite(prediction["depth_z"]).sum()),
                "seen_by_another_view": int((fused.seen > 0).sum()),
                "consistent": int(fused.keep.sum()),
                "verified": int(fused.kept("verified").sum()),
            }
            summary["warnings"] = degenerate_inputs(colors, prediction, names, pose_solver)
            summary["point_cloud"] = cloud_info
            summary["colmap"] = {
                "path": "sparse/0",
                "images": len(stems),
                "points3D": len(cloud.points),
                "observations": len(observations[0]),
            }
            summary["seconds"] = {**seconds, "total": round(sum(seconds.values()), 3)}
            if summary["mode"] == "monocular":
                logger.warning(summary["message"])
            (staging / "summary.json").write_text(json.dumps(summary, indent=2))
            _move_into_place(staging, out_dir, overwrite)
    return summary


def _write_point_cloud(
    path: Path,
    prediction: dict[str, np.ndarray],
    colors: np.ndarray,
    *,
    consistent: np.ndarray,
    min_confidence: float | None,
    confidence_quantile: float,
    voxel_size: float | None,
    voxel_fraction: float,
    max_points: int,
    seed: int,
) -> tuple[export.FilteredPoints, dict[str, Any]]:
    """Filter the predicted points (the network's confidence, then the multi-view
    ``consistent (V, H, W)`` mask, then :func:`pixio_3d.export.filter_point_cloud`) and write
    them to ``points.ply``; return the written points and what was done (threshold, voxel size,
    counts)."""
    points = prediction["pts3d"].reshape(-1, 3)
    confidence = prediction["conf"].reshape(-1)
    finite = np.isfinite(points).all(axis=1) & np.isfinite(confidence)
    if min_confidence is None:
        threshold = export.confidence_threshold(confidence[finite], confidence_quantile)
    else:
        threshold = float(min_confidence)
    confident_mask = finite & (confidence >= threshold)
    keep = np.flatnonzero(confident_mask & consistent.reshape(-1))
    inconsistent = int(confident_mask.sum()) - len(keep)
    if not confident_mask.any():
        raise ValueError(
            f"no pixel has confidence >= {threshold:.4g} (the model's confidences lie in "
            f"[{confidence[finite].min():.4g}, {confidence[finite].max():.4g}]); lower it"
        )
    if len(keep) == 0:
        raise ValueError(
            "no confident pixel is consistent across the views (every one disagrees with the "
            "other views that see it): the cameras or the depth are wrong"
        )
    confident = len(keep)
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_points, replace=False))
    if voxel_size is None:
        voxel_size = export.auto_voxel_size(points[keep], voxel_fraction)
    cloud = export.filter_point_cloud(
        points[keep],
        colors.reshape(-1, 3)[keep],
        confidence[keep],
        voxel_size=voxel_size or None,
    )
    export.write_ply(path, cloud.points, cloud.colors, cloud.confidence)
    info = {
        "min_confidence": threshold,
        "voxel_size": voxel_size or None,
        "counts": {
            "pixels": len(points),
            "network_confident": int(confident_mask.sum()),
            "dropped_inconsistent": inconsistent,
            "confident": confident,
            **cloud.counts,
        },
    }
    return cloud, info
