"""``features``: camera poses of one scene from SIFT two-view geometry and the network's depth.

SIFT keypoints of every view (:mod:`~pixio_3d.sfm.features`), descriptor matches of every view
pair and an essential matrix for each view's best pairs (:mod:`~pixio_3d.sfm.two_view`, with the
known or predicted intrinsics) give relative rotations and translation directions that do not
depend on the predicted depth. The predicted depth fixes each pair's translation length (median
ratio of the predicted z-depth to the triangulated one at the inliers), so all pairs share the
network's metric scale. A maximum spanning tree of the view graph's largest connected component
(:mod:`~pixio_3d.sfm.view_graph`), grown from its first view (view 0 where it belongs to it),
chains the relative poses; views outside it keep the head's pose. A
bundle adjustment (:mod:`~pixio_3d.sfm.bundle_adjust`, COLMAP's through pycolmap) then refines
the placed views jointly, and with predicted intrinsics also each view's focal length (the
network's focal lengths are ~10 % off, which bends the two-view geometry). Keypoints can come
from higher-resolution copies of the views (``photos``), as COLMAP would use them.

:func:`refine_with_features` applies it to the output of
:meth:`pixio_3d.models.ReconstructionModel.infer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from pixio_3d.geometry import centred_pinhole_from_rays, points_from_z_depth, ray_directions
from pixio_3d.sfm.bundle_adjust import SparseDepth, bundle_adjust, depth_ratios
from pixio_3d.sfm.depth_fit import MODELS, fit_depth_to_points
from pixio_3d.sfm.features import sift_extractor, sift_features
from pixio_3d.sfm.matches import MIN_MATCHES
from pixio_3d.sfm.settings import DEFAULT_FEATURE_SETTINGS, FeatureSettings
from pixio_3d.sfm.two_view import candidate_pairs, triangulated_depth, verified_pair
from pixio_3d.sfm.view_graph import ViewPair, chain_view_graph, largest_component_root

# the median relative change of the placed views' focal lengths in an adjustment above which
# the pairs are verified again (1 px inlier threshold: 2 % of a 180 px focal length moves a
# point 100 px off-centre by 1.1 px)
REVERIFY_FOCAL_CHANGE = 0.02

__all__ = ["FeaturePoses", "poses_from_features", "poses_from_keypoints", "refine_with_features"]


class FeaturePoses(NamedTuple):
    """What the ``features`` solver returns for one scene.

    ``poses (V, 4, 4)`` camera-to-world; ``placed (V,)`` the inlier count of the view-graph edge
    that placed each view (0 for view 0, the reference, for the view graph's ``root`` and for
    views that kept their fallback pose); ``intrinsics (V, 3, 3)`` at the network's size: the given ones, or the bundle
    adjustment's refined focal length where it refined one; ``reprojection_error`` the bundle
    adjustment's final mean reprojection error in pixels of the keypoint images (NaN without
    one); ``num_points`` its 3D points (0 without one); ``sparse`` their observations in the
    views (:class:`~pixio_3d.sfm.bundle_adjust.SparseDepth`, None without an adjustment);
    ``scale_spread`` how much the depth ratios behind the metric scale disagree (see
    :class:`~pixio_3d.sfm.bundle_adjust.BundleResult`); ``multi_view (V,)`` each view's
    observations of points seen by three or more views (-1 without an adjustment); ``root``
    the view the view graph was chained from: the first of the largest group of views that
    share matches (0 unless view 0 is outside it; then that group is placed relative to view 0
    by the fallback pose of ``root``, the views that share matches with view 0 are chained from
    it, unadjusted, and the views in neither keep their fallback poses).
    """

    poses: torch.Tensor
    placed: torch.Tensor
    intrinsics: torch.Tensor
    reprojection_error: float = float("nan")
    num_points: int = 0
    sparse: SparseDepth | None = None
    scale_spread: float = float("nan")
    multi_view: torch.Tensor | None = None
    root: int = 0
    main_group: torch.Tensor | None = None


def poses_from_features(
    photos: Sequence[np.ndarray],
    intrinsics: torch.Tensor,
    depth_z: torch.Tensor,
    fallback: torch.Tensor,
    settings: FeatureSettings = DEFAULT_FEATURE_SETTINGS,
    refine_focal: bool = False,
) -> FeaturePoses:
    """Camera-to-world poses of one scene from SIFT two-view geometry, chained over the view
    graph and (``settings.bundle_adjustment``) refined by a bundle adjustment of all views.

    Args:
        photos: ``V`` uint8 images ``(H', W', 3)`` framing the views exactly (any common size of
            the views' aspect ratio, e.g. the originals before resizing for the network).
        intrinsics: ``(V, 3, 3)`` of the views at the network's size ``(H, W)``.
        depth_z: ``(V, H, W)`` the network's z-depth (sets the translation lengths).
        fallback: ``(V, 4, 4)`` poses kept for views the view graph does not reach.
        refine_focal: the bundle adjustment also refines each placed view's focal length
            (one per view, fx = fy, starting from the mean of its ``intrinsics``' fx and fy; for
            predicted intrinsics).
    """
    views, height, width = depth_z.shape
    if len(photos) != views:
        raise ValueError(f"{len(photos)} photos for {views} views")
    photo_height, photo_width = np.asarray(photos[0]).shape[:2]
    if any(np.asarray(p).shape[:2] != (photo_height, photo_width) for p in photos):
        raise ValueError("all photos of a scene must have the same size")
    if abs(photo_width / photo_height - width / height) > 0.01 * width / height:
        raise ValueError(
            f"photos of {photo_width}x{photo_height} do not frame views of {width}x{height} "
            "(aspect ratios differ)"
        )
    extractor = sift_extractor(
        settings.max_features, settings.first_octave, settings.sift, settings.contrast_threshold
    )
    features = [sift_features(p, extractor) for p in photos]
    return poses_from_keypoints(
        features,
        (photo_width, photo_height),
        intrinsics,
        depth_z,
        fallback,
        settings,
        refine_focal,
    )


def poses_from_keypoints(
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    image_size: tuple[int, int],
    intrinsics: torch.Tensor,
    depth_z: torch.Tensor,
    fallback: torch.Tensor,
    settings: FeatureSettings = DEFAULT_FEATURE_SETTINGS,
    refine_focal: bool = False,
) -> FeaturePoses:
    """:func:`poses_from_features` on given keypoints and unit descriptors per view, found in
    images of ``image_size = (W', H')`` that frame the views of ``depth_z (V, H, W)``."""
    views, height, width = depth_z.shape
    to_photo = np.diag([image_size[0] / width, image_size[1] / height, 1.0])
    k_photo = to_photo @ intrinsics.detach().double().cpu().numpy()
    usable_k = np.isfinite(k_photo).all(axis=(1, 2)) & (k_photo[:, [0, 1], [0, 1]] > 0).all(1)
    depth = depth_z.detach().double().cpu().numpy()
    # a view without a pinhole camera is in no pair: it keeps its fallback pose
    candidates = candidate_pairs(features, usable_k, settings)
    # predicted intrinsics: where the adjustment moved the focal lengths, the pairs are
    # verified again with its focal lengths (the first essential matrices were fitted with the
    # network's), then chained and adjusted again
    passes = max(1, settings.focal_passes) if refine_focal else 1
    best = None
    for _ in range(passes):
        edges = _verified_edges(
            features, candidates, k_photo, depth, to_photo, image_size, settings
        )
        found = _chained_and_adjusted(
            features, edges, views, k_photo, depth, to_photo, image_size, fallback, settings,
            refine_focal,
        )  # fmt: skip
        if best is not None and not found.num_points:
            break  # the second pass found no adjustment: keep the first's
        best = found
        adjusted = found.main_group
        change = np.median(np.abs(found.intrinsics[adjusted, 0, 0] / k_photo[adjusted, 0, 0] - 1))
        if not found.num_points or change < REVERIFY_FOCAL_CHANGE:
            break
        k_photo = found.intrinsics
    assert best is not None  # at least one pass ran
    in_main_group = np.zeros(views, dtype=bool)
    in_main_group[best.main_group] = True
    poses = fallback.detach().clone()
    for view, pose in best.cam2world.items():
        if view > 0:  # view 0 is the world frame
            poses[view] = torch.from_numpy(pose).to(poses)
    k_network = torch.from_numpy(np.linalg.inv(to_photo) @ best.intrinsics).to(intrinsics)
    return FeaturePoses(
        poses,
        torch.from_numpy(best.placed_by),
        k_network,
        best.error,
        best.num_points,
        best.sparse,
        best.spread,
        torch.from_numpy(best.multi_view),
        best.root,
        torch.from_numpy(in_main_group),
    )


def _verified_edges(
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    candidates: dict[tuple[int, int], np.ndarray],
    k_photo: np.ndarray,
    depth: np.ndarray,
    to_photo: np.ndarray,
    image_size: tuple[int, int],
    settings: FeatureSettings,
) -> list[ViewPair]:
    """The view graph's edges: each candidate pair's essential-matrix pose with ``k_photo``,
    its translation at the network's metric scale (median ratio of the predicted z-depth to
    the triangulated one at the inliers in front of both cameras)."""
    edges = []
    for (i, j), matches in candidates.items():
        found = verified_pair(
            features[i], features[j], k_photo[i], k_photo[j], image_size, settings, matches
        )
        if found is None:
            continue
        pose, inliers = found
        points_i, points_j = features[i][0][inliers[:, 0]], features[j][0][inliers[:, 1]]
        z_i, z_j = triangulated_depth(points_i, points_j, k_photo[i], k_photo[j], pose)
        in_front = np.where(z_j > 0, z_i, np.nan)  # points in front of both cameras
        views_i = np.full(len(z_i), i)
        ratios = depth_ratios(depth, views_i, points_i / np.diag(to_photo)[:2], in_front)
        if len(ratios) < MIN_MATCHES:
            continue
        pose[:3, 3] *= np.median(ratios)
        edges.append(ViewPair(len(inliers), i, j, pose, inliers))
    return edges


class _Pass(NamedTuple):
    """One pass of chaining and adjustment: the placed views' poses (``main_group``: those of
    the largest group, adjusted), the intrinsics it ends with and the adjustment's report."""

    cam2world: dict[int, np.ndarray]
    main_group: list[int]
    placed_by: np.ndarray
    root: int
    intrinsics: np.ndarray
    error: float
    num_points: int
    sparse: SparseDepth | None
    spread: float
    multi_view: np.ndarray


def _chained_and_adjusted(
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    edges: list[ViewPair],
    views: int,
    k_photo: np.ndarray,
    depth: np.ndarray,
    to_photo: np.ndarray,
    image_size: tuple[int, int],
    fallback: torch.Tensor,
    settings: FeatureSettings,
    refine_focal: bool,
) -> _Pass:
    """The edges chained over the view graph's largest group and bundle-adjusted."""
    # the largest group of views that share matches; when view 0 is not in it (a photo that
    # overlaps only one other, or none), the group is chained from its first view, placed
    # where the fallback puts that view
    root = largest_component_root(edges, views)
    cam2world, placed_by = chain_view_graph(edges, views, root)
    first_group: dict[int, np.ndarray] = {}
    if root != 0:
        anchor = fallback[root].detach().double().cpu().numpy()
        cam2world = {view: anchor @ pose for view, pose in cam2world.items()}
        # view 0's own smaller group keeps its pairs' poses relative to view 0 (not adjusted)
        first_group, first_placed = chain_view_graph(edges, views, 0)
        first_group.pop(0)
        placed_by = placed_by + first_placed
    multi_view = np.full(views, -1, np.int64)
    if settings.bundle_adjustment and len(cam2world) >= 2:
        adjusted = bundle_adjust(
            features,
            edges,
            cam2world,
            k_photo,
            image_size,
            depth=depth,
            to_photo=to_photo,
            refine_focal=refine_focal,
            max_error=settings.max_reprojection_error,
            rounds=settings.focal_ba_rounds if refine_focal else settings.ba_rounds,
            max_iterations=settings.ba_max_iterations,
        )
        if adjusted is not None:
            return _Pass(
                {**adjusted.poses, **first_group},
                sorted(adjusted.poses),
                placed_by,
                root,
                adjusted.intrinsics,
                adjusted.reprojection_error,
                adjusted.num_points,
                adjusted.sparse,
                adjusted.scale_spread,
                adjusted.multi_view,
            )
    return _Pass(
        {**cam2world, **first_group},
        sorted(cam2world),
        placed_by,
        root,
        k_photo,
        float("nan"),
        0,
        None,
        float("nan"),
        multi_view,
    )


def _with_intrinsics(
    out: dict[str, torch.Tensor], intrinsics: dict[int, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``out`` with new ``intrinsics (V, 3, 3)`` for the scenes ``{b: ...}`` and the rays,
    camera-frame points and depths along the rays that follow from them for the same z-depth
    (a new focal length moves the points along the image plane)."""
    out = dict(out)
    for key in ("intrinsics", "ray_directions", "pts3d_cam", "depth_along_ray"):
        out[key] = out[key].clone()
    height, width = out["depth_z"].shape[-2:]
    for b, scene_intrinsics in intrinsics.items():
        scene_intrinsics = scene_intrinsics.to(out["depth_z"])
        points_cam = points_from_z_depth(out["depth_z"][b], scene_intrinsics)
        out["intrinsics"][b] = scene_intrinsics
        out["ray_directions"][b] = ray_directions(scene_intrinsics, height, width)
        out["pts3d_cam"][b] = points_cam
        out["depth_along_ray"][b] = points_cam.norm(dim=-1)
    return out


def with_centred_intrinsics(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``out`` with each view's predicted intrinsics replaced by the square-pixel pinhole with
    the principal point at the image centre closest to its rays
    (:func:`~pixio_3d.geometry.centred_pinhole_from_rays`), as COLMAP starts a camera, and what
    follows from them (see :func:`_with_intrinsics`). The bundle adjustment refines only the
    focal length; a principal point or an aspect ratio off by the network stays off. The demo
    network's were: cx 52-61 px for 64, fy / fx 0.73-0.90 at 128x96, and with them AUC@5 of
    the 16-view COLMAP benchmark scenes was 0.04 against 0.30 centred (2 rounds)."""
    rays = out["ray_directions"]
    return _with_intrinsics(out, dict(enumerate(centred_pinhole_from_rays(rays.double()))))


def with_refined_intrinsics(
    out: dict[str, torch.Tensor], solved: Sequence[FeaturePoses]
) -> dict[str, torch.Tensor]:
    """``out`` with the intrinsics of the scenes whose focal lengths the features solver's
    bundle adjustment refined, and the rays, camera-frame points and depths along the rays that
    follow from them for the same z-depth (a refined focal length moves the points along the
    image plane)."""
    refined = {b: found.intrinsics for b, found in enumerate(solved) if found.num_points}
    return _with_intrinsics(out, refined)


def refine_with_features(
    out: dict[str, torch.Tensor],
    photos: Sequence[Sequence[np.ndarray]],
    *,
    refine_focal: bool,
    settings: FeatureSettings | None = None,
    fit_depth: bool | Sequence[str] = True,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The ``features`` solver on every scene of a prediction (the output of
    :meth:`~pixio_3d.models.ReconstructionModel.infer`, batch first).

    ``photos``: per scene the ``V`` uint8 ``(H', W', 3)`` images the keypoints come from,
    framing the views exactly. ``refine_focal``: the intrinsics were predicted, so they are
    replaced by the nearest square-pixel ones with a centred principal point
    (:func:`with_centred_intrinsics`), the bundle adjustment also refines each view's focal
    length, and the returned prediction carries the refined intrinsics with the rays,
    camera-frame points and depths along the rays that follow from them (for the same
    z-depth). ``fit_depth``: each view's z-depth is then fitted to the
    bundle-adjusted points it sees (:func:`with_fitted_depth`; a sequence of model names of
    :data:`pixio_3d.sfm.depth_fit.MODELS` limits the fit to those).

    Returns ``(prediction, poses (B, V, 4, 4), support (B, V))``; the prediction also gets
    ``pose_reprojection_error (B,)``, the bundle adjustment's mean reprojection error in pixels
    of the keypoint images (NaN where none ran), and ``metric_scale_spread (B,)``, how much the
    depth ratios behind the metric scale disagree (NaN without an adjustment), and
    ``pose_multi_view (B, V)``, each view's observations of points seen by three or more views
    (-1 without an adjustment; see :class:`FeaturePoses`), and ``pose_chain_root (B,)``, the
    view the view graph was chained from (0 unless view 0 shares too few matches with the
    largest group of views; see :class:`FeaturePoses`), ``pose_main_group (B, V)`` whether each
    view is in that group. ``support`` is
    the inlier count of the view-graph edge that placed each view (0 for view 0 and for views
    that kept the head's pose)."""
    batch = out["depth_z"].shape[0]
    if len(photos) != batch:
        raise ValueError(f"photos for {len(photos)} scenes, images of {batch}")
    settings = settings or FeatureSettings()
    if refine_focal:
        out = with_centred_intrinsics(out)
    solved = [
        poses_from_features(
            scene_photos,
            out["intrinsics"][b],
            out["depth_z"][b],
            out["camera_poses"][b],
            settings,
            refine_focal=refine_focal,
        )
        for b, scene_photos in enumerate(photos)
    ]
    poses = torch.stack([found.poses for found in solved])
    support = torch.stack([found.placed for found in solved]).to(poses.device)
    out = dict(out)
    out["pose_reprojection_error"] = torch.tensor(
        [found.reprojection_error for found in solved], device=poses.device
    )
    out["metric_scale_spread"] = torch.tensor(
        [found.scale_spread for found in solved], device=poses.device
    )
    out["pose_multi_view"] = torch.stack([found.multi_view for found in solved]).to(poses.device)
    out["pose_chain_root"] = torch.tensor([found.root for found in solved], device=poses.device)
    out["pose_main_group"] = torch.stack(
        [
            found.main_group
            if found.main_group is not None
            else torch.zeros(len(found.placed), dtype=torch.bool)
            for found in solved
        ]
    ).to(poses.device)
    if refine_focal:
        out = with_refined_intrinsics(out, solved)
    if fit_depth:
        models = MODELS if fit_depth is True else tuple(fit_depth)
        out = with_fitted_depth(out, solved, models)
    return out, poses, support


def with_fitted_depth(
    out: dict[str, torch.Tensor],
    solved: Sequence[FeaturePoses],
    models: tuple[str, ...] = MODELS,
) -> dict[str, torch.Tensor]:
    """``out`` with each view's z-depth fitted to the bundle-adjusted points it sees
    (:func:`pixio_3d.sfm.depth_fit.fit_depth_to_points`) and the camera-frame points and depths
    along the rays that follow; adds ``depth_fit_points (B, V)`` and the median relative depth
    error at those points before / after, ``depth_fit_error_before`` / ``_after (B, V)`` (NaN
    without points). Scenes without a bundle adjustment keep the network's depth."""
    out = dict(out)
    batch, views = out["depth_z"].shape[:2]
    for key in ("depth_z", "pts3d_cam", "depth_along_ray"):
        out[key] = out[key].clone()
    counts = torch.zeros(batch, views, dtype=torch.long)
    before = torch.full((batch, views), float("nan"))
    after = torch.full((batch, views), float("nan"))
    for b, found in enumerate(solved):
        if found.sparse is None or not len(found.sparse.z):
            continue
        depth = out["depth_z"][b].detach().double().cpu().numpy()
        fitted, report = fit_depth_to_points(depth, found.sparse, models=models)
        depth_z = torch.from_numpy(fitted).to(out["depth_z"])
        points_cam = points_from_z_depth(depth_z, out["intrinsics"][b].to(depth_z))
        out["depth_z"][b], out["pts3d_cam"][b] = depth_z, points_cam
        out["depth_along_ray"][b] = points_cam.norm(dim=-1)
        counts[b] = torch.tensor([fit.points for fit in report])
        before[b] = torch.tensor([fit.before for fit in report])
        after[b] = torch.tensor([fit.after for fit in report])
    device = out["depth_z"].device
    out.update(
        depth_fit_points=counts.to(device),
        depth_fit_error_before=before.to(device),
        depth_fit_error_after=after.to(device),
    )
    return out
