"""The network joined with the pose solvers: :func:`predict` (a batch of scenes as tensors)
and :func:`predict_views` (one scene of views in [0, 1], as numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pixio_3d.geometry import quaternion_translation_from_pose, transform_points
from pixio_3d.models import ReconstructionModel
from pixio_3d.models.mapanything import MapAnythingModel
from pixio_3d.sfm import POSE_SOLVERS, FeatureSettings, poses_from_matches, refine_with_features
from pixio_3d.sfm.bundle_adjust import depth_ratios, scale_spread
from pixio_3d.sfm.depth_fit import MODELS
from pixio_3d.sfm.known import sparse_depth_from_known_cameras
from pixio_3d.sfm.refine import FeaturePoses, with_fitted_depth
from pixio_core.imaging import denormalize_images, normalize_images
from pixio_core.precision import autocast_dtype

__all__ = ["predict", "predict_views"]


@torch.no_grad()
def predict(
    model: ReconstructionModel,
    images: torch.Tensor,
    intrinsics: torch.Tensor | None = None,
    *,
    pose_solver: str = "head",
    photos: Sequence[Sequence[np.ndarray]] | None = None,
    feature_settings: FeatureSettings | None = None,
    fit_depth: bool | Sequence[str] = True,
    poses: torch.Tensor | None = None,
    precision: str | None = None,
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
        fit_depth: for ``features`` only: fit each view's depth to the bundle-adjusted points it
            sees (:mod:`pixio_3d.sfm.depth_fit`), so the dense geometry agrees with the cameras
            (a sequence of model names limits the fit, e.g. ``("none", "scale")``).
        poses: known camera-to-world ``(B, V, 4, 4)`` (needs known ``intrinsics``): no pose is
            estimated; the returned cameras are exactly these, and each view's depth is fitted
            to the points triangulated from them (:mod:`pixio_3d.sfm.known`), so the dense points
            are in their frame and units. ``pose_support`` then counts each view's
            observations of those points.
        precision: the network's arithmetic (:data:`pixio_core.precision.PRECISIONS`):
            ``fp32``, ``bf16`` (autocast) or ``auto`` (bf16 where it is native: CUDA, CPUs with
            AMX or AVX512-BF16); None: the model's own default (fp32 for this project's
            models, see :meth:`MapAnythingModel.infer` for the released ones). With bf16 on
            a CPU a MapAnything model runs its dense heads in bf16 too (MapAnything keeps them
            in fp32; on a CPU that is ~3x slower). The pose solvers and every output are fp32
            either way.

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
    network = _network_precision(model, precision, images.device)
    if poses is not None:
        return _predict_with_known_cameras(
            model, images, intrinsics, poses, photos, feature_settings, fit_depth, network
        )
    if pose_solver == "matches" and not model.config.pose_matching:
        raise ValueError("pose_solver='matches' needs a model built with pose_matching=True")
    out = model.infer(images, intrinsics, keep_match_logits=pose_solver == "matches", **network)
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
            photos = _default_photos(images)
        out, poses, support = refine_with_features(
            out,
            photos,
            refine_focal=intrinsics is None,
            settings=feature_settings,
            fit_depth=fit_depth,
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


def _network_precision(
    model: ReconstructionModel | MapAnythingModel, precision: str | None, device: torch.device
) -> dict[str, Any]:
    """The keyword arguments of ``model.infer`` for ``precision`` (None: the model's own)."""
    if precision is None:
        return {}
    dtype = autocast_dtype(precision, device)
    network: dict[str, Any] = {"autocast_dtype": dtype}
    if isinstance(model, MapAnythingModel) and dtype is not None and device.type == "cpu":
        # MapAnything keeps its dense heads in fp32; on a CPU they are most of a small model's
        # time, and bf16 runs them ~3x faster (tiny model, 16 views at 128x96: the network
        # 0.28 -> 0.15-0.19 s, depth moved by a median 0.5 %, 99th percentile 1.6 %)
        network["dense_head_autocast"] = True
    return network


def _default_photos(images: torch.Tensor) -> list[list[np.ndarray]]:
    """The views' own colours as uint8 photos, per scene."""
    pixels = (denormalize_images(images.float()) * 255.0).round().to(torch.uint8)
    return [list(scene.permute(0, 2, 3, 1).cpu().numpy()) for scene in pixels]


def _predict_with_known_cameras(
    model: ReconstructionModel,
    images: torch.Tensor,
    intrinsics: torch.Tensor | None,
    poses: torch.Tensor,
    photos: Sequence[Sequence[np.ndarray]] | None,
    feature_settings: FeatureSettings | None,
    fit_depth: bool | Sequence[str],
    network: dict[str, Any],
) -> dict[str, torch.Tensor]:
    if intrinsics is None:
        raise ValueError("known poses need known intrinsics (the cameras' focal lengths too)")
    batch, views = images.shape[:2]
    if tuple(poses.shape) != (batch, views, 4, 4):
        raise ValueError(f"poses must be ({batch}, {views}, 4, 4), got {tuple(poses.shape)}")
    out = model.infer(images, intrinsics, **network)
    photos = _default_photos(images) if photos is None else photos
    settings = feature_settings or FeatureSettings()
    size = tuple(images.shape[-2:])
    solved, spreads = [], []
    for b in range(batch):
        sparse = sparse_depth_from_known_cameras(
            photos[b], intrinsics[b].double().cpu().numpy(), poses[b].double().cpu().numpy(),
            size, settings,
        )  # fmt: skip
        depth = out["depth_z"][b].double().cpu().numpy()
        ratios = depth_ratios(depth, sparse.views, sparse.pixels, sparse.z)
        spreads.append(scale_spread(ratios))
        solved.append(FeaturePoses(poses[b], torch.zeros(views), intrinsics[b], sparse=sparse))
    if fit_depth:
        models = MODELS if fit_depth is True else tuple(fit_depth)
        out = with_fitted_depth(out, solved, models)
    support = torch.stack(
        [torch.bincount(torch.from_numpy(s.sparse.views), minlength=views) for s in solved]
    )
    poses = poses.to(out["depth_z"])
    quats, trans = quaternion_translation_from_pose(poses)
    out.update(
        pose_support=support.to(poses.device),
        camera_poses=poses,
        cam_quats=quats,
        cam_trans=trans,
        pts3d=transform_points(poses, out["pts3d_cam"]),
        metric_scale_spread=torch.tensor(spreads, device=poses.device),
    )
    return out


def predict_views(
    model: ReconstructionModel,
    images: torch.Tensor,
    intrinsics: torch.Tensor | None = None,
    pose_solver: str = "head",
    feature_settings: FeatureSettings | None = None,
    fit_depth: bool | Sequence[str] = True,
    poses: torch.Tensor | None = None,
    precision: str | None = None,
) -> dict[str, np.ndarray]:
    """Run ``model.infer`` on one scene: ``images (V, 3, H, W)`` in [0, 1], optional known
    ``intrinsics (V, 3, 3)`` (working pixels), poses from ``pose_solver`` (with
    ``feature_settings`` for ``features``) and the network's ``precision`` (see :func:`predict`). Returns the outputs of
    :func:`predict` for that scene as float64 numpy arrays without the batch axis (``pts3d (V, H, W, 3)``, ``camera_poses (V, 4, 4)``, ``metric_scaling_factor ()``...).
    """
    if not isinstance(model, (ReconstructionModel, MapAnythingModel)):
        raise ValueError(
            "reconstruction needs a ReconstructionModel (checkpoint task 'reconstruction') or a "
            f"MapAnythingModel, got "
            f"{type(model).__name__}; for a single photo with a depth checkpoint use pixio-depth"
        )
    device = next(model.parameters()).device
    normalized = normalize_images(images.to(device))[None]
    known = None if intrinsics is None else intrinsics.to(device, torch.float32)[None]
    photos = None
    if pose_solver == "features" or poses is not None:  # keypoints from the views' colours
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        photos = [list(pixels.cpu().numpy())]
    outputs = predict(
        model,
        normalized,
        known,
        pose_solver=pose_solver,
        photos=photos,
        feature_settings=feature_settings,
        fit_depth=fit_depth,
        poses=None if poses is None else poses.to(device, torch.float64)[None],
        precision=precision,
    )
    return {key: value[0].double().cpu().numpy() for key, value in outputs.items()}
