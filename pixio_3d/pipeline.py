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
    points.ply                 coloured points: confidence filter, voxel grid, outlier removal
    scene.glb                  the same points and one wire frustum per camera (glTF, y up)
    depth/<stem>.png, .npy     z-depth in metres (colour map, float32 ``(H, W)``)
    confidence/<stem>.png, .npy
                               the model's confidence (grey scale, float32 ``(H, W)``, >= 1)
    depth_original/<stem>.png, .npy
                               with ``original_depth=True`` (``--original-depth``): the depth
                               on each upright original photo's pixel grid (nearest working
                               pixel; 0 outside the working crop)
    preview.png                a render of the point cloud
    summary.json               inputs, skipped files, cameras, counts, timings, what was written

Cameras, depth and confidence are at the **working resolution** (the views in ``images/``);
``summary.json`` also gives each photo's intrinsics mapped back to the upright original photo
(:meth:`PhotoTransform.intrinsics_to_original`) and the crop/scale that links the two. Poses are
OpenCV camera-to-world in the frame of the first photo; units are the model's metric guess.
By default they come from SIFT two-view geometry in the working views with translation lengths
from the model's depth (``pose_solver="features"``); ``summary["pose_solver"]`` says which solver
ran, and each photo's ``pose_support`` how many inliers placed it (0: the pose head's camera).

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
from pixio_3d.data.photos import LoadedPhotos, load_photos
from pixio_3d.export.preview import render_point_cloud_preview
from pixio_3d.geometry import quaternion_translation_from_pose, transform_points
from pixio_3d.models import ReconstructionModel
from pixio_3d.sfm import POSE_SOLVERS, FeatureSettings, poses_from_matches, refine_with_features
from pixio_core.imaging import denormalize_images, normalize_images

__all__ = ["OUTPUT_ENTRIES", "predict", "predict_views", "reconstruct_photos"]

logger = logging.getLogger(__name__)

OUTPUT_ENTRIES = (
    "images",
    "sparse",
    "transforms.json",
    "points.ply",
    "scene.glb",
    "depth",
    "confidence",
    "depth_original",
    "preview.png",
    "summary.json",  # written last: a folder with it holds a complete reconstruction
)
STAGES = ("load photos", "model", "maps", "point cloud", "glb", "colmap", "nerfstudio", "preview")


@torch.no_grad()
def predict(
    model: ReconstructionModel,
    images: torch.Tensor,
    intrinsics: torch.Tensor | None = None,
    *,
    pose_solver: str = "head",
    photos: Sequence[Sequence[np.ndarray]] | None = None,
    feature_settings: FeatureSettings | None = None,
) -> dict[str, torch.Tensor]:
    """The network's reconstruction (:meth:`ReconstructionModel.infer`) with the cameras from
    ``pose_solver``: the stages :mod:`pixio_3d.models` -> :mod:`pixio_3d.sfm` joined.

    Args:
        images: ``(B, V, 3, H, W)`` ImageNet-normalized, ``H, W`` multiples of 16, ``V >= 1``.
        intrinsics: optional known ``(B, V, 3, 3)`` (see :meth:`ReconstructionModel.infer`).
        pose_solver: ``head`` (the pose head's poses), ``matches`` (a robust rigid fit of each
            view's camera-frame points to view 0's at the pose-matching matches,
            :mod:`pixio_3d.sfm.matches`; needs ``pose_matching``; views with too few matches
            keep the head's pose) or ``features`` (SIFT two-view geometry chained over a view
            graph and bundle-adjusted, translation lengths from the predicted depth; views it
            cannot place keep the head's pose; :mod:`pixio_3d.sfm.refine`).
        photos: for ``features`` only: per scene the ``V`` uint8 ``(H', W', 3)`` images the
            keypoints come from, framing the views exactly (e.g. the photos at a higher
            resolution than the network's); default: the views themselves.
        feature_settings: for ``features`` only (default :class:`FeatureSettings()`).

    Returns the outputs of :meth:`ReconstructionModel.infer`; with ``matches`` or ``features``
    also ``pose_support (B, V)``: the matches (``matches``) or the inliers of the view-graph
    edge (``features``) behind each view's pose, 0 where the head's pose was kept (and for view
    0); with ``features`` also ``pose_reprojection_error (B,)`` (NaN where no bundle
    adjustment ran). Without known ``intrinsics``, ``features`` returns the focal lengths the
    bundle adjustment refined, with the rays, camera-frame points and depths along the rays
    that follow from them (the z-depth stays the network's).
    """
    if pose_solver not in POSE_SOLVERS:
        raise ValueError(f"pose_solver must be one of {POSE_SOLVERS}, got {pose_solver!r}")
    if pose_solver == "matches" and not model.config.pose_matching:
        raise ValueError("pose_solver='matches' needs a model built with pose_matching=True")
    out = model.infer(images, intrinsics, keep_match_logits=pose_solver == "matches")
    if pose_solver == "head":
        return out
    if pose_solver == "matches":
        grid = (images.shape[-2] // model.patch_size, images.shape[-1] // model.patch_size)
        match_logits = out.pop("match_logits")
        poses, support = poses_from_matches(
            out["pts3d_cam"], match_logits, out["camera_poses"], grid
        )
    else:
        if photos is None:  # the views' own colours
            pixels = (denormalize_images(images.float()) * 255.0).round().to(torch.uint8)
            photos = [list(scene.permute(0, 2, 3, 1).cpu().numpy()) for scene in pixels]
        out, poses, support = refine_with_features(
            out, photos, refine_focal=intrinsics is None, settings=feature_settings
        )
    quats, trans = quaternion_translation_from_pose(poses)
    out.update(
        pose_support=support,
        camera_poses=poses,
        cam_quats=quats,
        cam_trans=trans,
        pts3d=transform_points(poses, out["pts3d_cam"]),
    )
    return out


def predict_views(
    model: ReconstructionModel,
    images: torch.Tensor,
    intrinsics: torch.Tensor | None = None,
    pose_solver: str = "head",
    feature_settings: FeatureSettings | None = None,
) -> dict[str, np.ndarray]:
    """Run ``model.infer`` on one scene: ``images (V, 3, H, W)`` in [0, 1], optional known
    ``intrinsics (V, 3, 3)`` (working pixels), poses from ``pose_solver`` (with
    ``feature_settings`` for ``features``; see :func:`predict`). Returns the outputs of
    :func:`predict` for that scene as float64 numpy arrays without the batch axis (``pts3d (V, H, W, 3)``, ``camera_poses (V, 4, 4)``, ``metric_scaling_factor ()``...).
    """
    if not isinstance(model, ReconstructionModel):
        raise ValueError(
            f"reconstruction needs a ReconstructionModel (checkpoint task 'reconstruction'), got "
            f"{type(model).__name__}; for a single photo with a depth checkpoint use pixio-depth"
        )
    device = next(model.parameters()).device
    normalized = normalize_images(images.to(device))[None]
    known = None if intrinsics is None else intrinsics.to(device, torch.float32)[None]
    photos = None
    if pose_solver == "features":  # the keypoints come from the views' own uint8 colours
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        photos = [list(pixels.cpu().numpy())]
    outputs = predict(
        model,
        normalized,
        known,
        pose_solver=pose_solver,
        photos=photos,
        feature_settings=feature_settings,
    )
    return {key: value[0].double().cpu().numpy() for key, value in outputs.items()}


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


def _reprojection_error(prediction: dict[str, np.ndarray]) -> dict[str, float]:
    """The features solver's bundle-adjustment error (working pixels), when one ran."""
    error = prediction.get("pose_reprojection_error")
    if error is None or not np.isfinite(error):
        return {}
    return {"bundle_adjustment_reprojection_error_px": float(error)}


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
    exif_focal: bool = True,
    pose_solver: str = "features",
    feature_settings: FeatureSettings | None = None,
    original_depth: bool = False,
    preview_size: tuple[int, int] = (640, 480),
    seed: int = 0,
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
        pose_solver: where the cameras come from: ``features`` (the default: SIFT two-view
            geometry in the working views, the network's depth for the translation lengths and
            its pose head for views that geometry cannot place), ``head`` or ``matches`` (see
            :meth:`ReconstructionModel.infer`).
        feature_settings: the ``features`` solver's settings (default
            :class:`~pixio_3d.sfm.FeatureSettings()`).
        original_depth: also write ``depth_original/``: each depth map resampled onto its
            original photo's pixels (z-depth does not change with image scale).
        preview_size: ``(width, height)`` of ``preview.png``.
        checkpoint: recorded in ``summary.json``.

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
            photos = load_photos(photo_dir, long_side=long_side, min_side=min_side)
            names = [p.name for p in photos.paths]
            stems = _unique_stems(photos.paths)
            height, width = photos.images.shape[-2:]
        with timed("model"):
            focals, intrinsics_source = _known_focals(photos, focal_px, exif_focal)
            if focals is None and pose_solver == "features" and len(photos.paths) > 1:
                intrinsics_source += "; focal lengths refined by the features solver's bundle "
                intrinsics_source += "adjustment where it placed the photo"
            given = None if focals is None else _working_intrinsics(photos, focals)
            prediction = predict_views(
                model,
                photos.images,
                None if given is None else torch.from_numpy(given),
                pose_solver=pose_solver,
                feature_settings=feature_settings,
            )
            if given is not None:
                prediction["intrinsics"] = given  # exactly the given ones, not float32 copies
            _check_intrinsics(prediction["intrinsics"], names)
        colors = np.round(photos.images.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
        poses, intrinsics = prediction["camera_poses"], prediction["intrinsics"]

        with _staging_folder(out_dir) as staging:
            with timed("maps"):
                originals = photos.transforms if original_depth else None
                export.write_view_maps(staging, stems, colors, prediction, originals)
            with timed("point cloud"):
                cloud, cloud_info = _write_point_cloud(
                    staging / "points.ply",
                    prediction,
                    colors,
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
            summary = _summary(photo_dir, out_dir, photos, stems, prediction, intrinsics_source)
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
    min_confidence: float | None,
    confidence_quantile: float,
    voxel_size: float | None,
    voxel_fraction: float,
    max_points: int,
    seed: int,
) -> tuple[export.FilteredPoints, dict[str, Any]]:
    """Filter the predicted points (:func:`pixio_3d.export.filter_point_cloud`) and write them
    to ``points.ply``; return the written points and what was done (threshold, voxel size,
    counts)."""
    points = prediction["pts3d"].reshape(-1, 3)
    confidence = prediction["conf"].reshape(-1)
    finite = np.isfinite(points).all(axis=1) & np.isfinite(confidence)
    if min_confidence is None:
        threshold = export.confidence_threshold(confidence[finite], confidence_quantile)
    else:
        threshold = float(min_confidence)
    keep = np.flatnonzero(finite & (confidence >= threshold))
    if len(keep) == 0:
        raise ValueError(
            f"no pixel has confidence >= {threshold:.4g} (the model's confidences lie in "
            f"[{confidence[finite].min():.4g}, {confidence[finite].max():.4g}]); lower it"
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
        "counts": {"pixels": len(points), "confident": confident, **cloud.counts},
    }
    return cloud, info


def _summary(
    photo_dir: Path,
    out_dir: Path,
    photos: LoadedPhotos,
    stems: list[str],
    prediction: dict[str, np.ndarray],
    intrinsics_source: str,
) -> dict[str, Any]:
    num_views, _, height, width = photos.images.shape
    if num_views == 1:
        mode = "monocular"
        message = (
            f"only one photo ({photos.paths[0].name}): monocular depth from the reconstruction "
            "model run on this single view; its camera is the identity and the scale is the "
            "model's guess"
        )
    else:
        mode, message = "multi_view", f"reconstructed {num_views} photos"
    per_photo = []
    for view, (path, stem, transform) in enumerate(
        zip(photos.paths, stems, photos.transforms, strict=True)
    ):
        intrinsics = prediction["intrinsics"][view]
        per_photo.append(
            {
                "path": str(path),
                "image": f"images/{stem}.png",
                "depth": f"depth/{stem}.npy",
                "confidence": f"confidence/{stem}.npy",
                "original_size": list(transform.original_size),
                "crop": {"scale": transform.scale, "left": transform.left, "top": transform.top},
                "intrinsics": intrinsics.tolist(),
                "intrinsics_original": transform.intrinsics_to_original(intrinsics).tolist(),
                "cam2world": prediction["camera_poses"][view].tolist(),
            }
        )
        if "pose_support" in prediction:
            per_photo[-1]["pose_support"] = int(prediction["pose_support"][view])
    return {
        "mode": mode,
        "message": message,
        "photo_dir": str(photo_dir.resolve()),
        "out_dir": str(out_dir.resolve()),
        "num_views": num_views,
        "image_size": {"height": height, "width": width},
        "resolution": "cameras, depth and confidence are at the working image_size; "
        "intrinsics_original maps each camera to its upright original photo",
        "pose_convention": "OpenCV camera-to-world (x right, y down, z forward); world = the "
        "camera of the first photo; depth maps are z-depth",
        "intrinsics_source": intrinsics_source,
        "metric_scaling_factor": float(prediction["metric_scaling_factor"]),
        **_reprojection_error(prediction),
        "skipped": [{"path": str(p), "reason": reason} for p, reason in photos.skipped],
        "photos": per_photo,
    }
