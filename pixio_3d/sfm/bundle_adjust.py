"""Bundle adjustment of the ``features`` pose solver (:mod:`pixio_3d.sfm.refine`).

The inlier matches of all verified view pairs are joined into tracks (connected components of
the match graph), triangulated from the chained cameras (the point nearest to all rays), and
adjusted with COLMAP's bundle adjuster through pycolmap (Ceres, Cauchy loss, gauge fixed on two
cameras), optionally with a focal length per view. The result goes back to the chained frame
(view 0's, where it was placed) and the network's metric scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from pixio_3d.geometry import plausible_focal_range
from pixio_3d.sfm.view_graph import ViewPair

MIN_POINTS = 6  # fewer triangulated points: no bundle adjustment
# Ceres stops once a step changes the parameters by less than this (relative); COLMAP's 0 runs
# every allowed iteration. On the COLMAP benchmark's 16-view calls it took ~15 % off the
# adjustment and moved no camera by more than 0.001 degrees.
PARAMETER_TOLERANCE = 1e-6
# ... and once a step lowers the cost by less than this (relative); COLMAP's 0 never stops on
# it. On the benchmark's four 16-view scenes it cut the iterations of both rounds from 186 to
# 121 (solve 73 -> 47 ms per scene) and left AUC@5 at 8 and 16 views where it was (0.955 /
# 0.968 there, 0.600 / 0.582 on four scenes of seed 2000)
FUNCTION_TOLERANCE = 1e-5
# the first round's inlier threshold grows with the keypoint images' longer side beyond this:
# a view the chain placed a little off (its baseline's length is the network's depth guess)
# reprojects its multi-view points that many pixels more at a larger size, and dropping them
# leaves the adjustment nothing to move it with (see :func:`first_round_error`)
REFERENCE_LONG_SIDE = 256


class SparseDepth(NamedTuple):
    """The adjusted points as each view sees them: ``views (n,)``, ``pixels (n, 2)`` in the
    network's view pixels (centres at +0.5) and ``z (n,)`` metric z-depth in that view's
    camera."""

    views: np.ndarray
    pixels: np.ndarray
    z: np.ndarray


class BundleResult(NamedTuple):
    """``poses`` camera-to-world per placed view (the first at its given pose, metric),
    ``intrinsics`` (keypoint-image pixels), mean ``reprojection_error`` (px), ``num_points``, the ``sparse``
    observations, and the metric ``scale`` (median of the network's z over the points' z) with
    its ``scale_spread``: the interquartile range of the log ratios, as a factor (1.1 = the
    middle half of the observations agree on the scale within +-5 %). ``multi_view (V,)``:
    each view's observations of points that at least two other views see too. A view with
    (almost) none is tied to the rest by two-view points only, which leave its distance along
    the baseline free: the network's depth sets it."""

    poses: dict[int, np.ndarray]
    intrinsics: np.ndarray
    reprojection_error: float
    num_points: int
    sparse: SparseDepth
    scale: float
    scale_spread: float
    multi_view: np.ndarray | None = None


def scale_spread(ratios: np.ndarray) -> float:
    """``exp(IQR(log ratios))``: how much the middle half of the depth ratios disagree."""
    if len(ratios) < 2:
        return float("nan")
    low, high = np.percentile(np.log(ratios), [25, 75])
    return float(np.exp(high - low))


def sample_depth(depth: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``depth (H, W)`` at continuous pixel positions (nearest pixel; NaN outside)."""
    cols = np.floor(pixels[:, 0]).astype(np.int64)
    rows = np.floor(pixels[:, 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < depth.shape[1]) & (rows >= 0) & (rows < depth.shape[0])
    out = np.full(len(pixels), np.nan)
    out[inside] = depth[rows[inside], cols[inside]]
    return out


def depth_ratios(
    depth: np.ndarray, views: np.ndarray, pixels: np.ndarray, z: np.ndarray
) -> np.ndarray:
    """The network's z-depth over ``z (n,)`` at observations in ``views (n,)`` at ``pixels (n,
    2)`` of the depth maps ``depth (V, H, W)``, where both are finite and positive: their median
    puts geometry of arbitrary scale at the network's metric scale."""
    network_z = np.full(len(views), np.nan)
    for view in np.unique(views):
        here = views == view
        network_z[here] = sample_depth(depth[view], pixels[here])
    usable = np.isfinite(network_z) & (network_z > 0) & np.isfinite(z) & (z > 0)
    return network_z[usable] / z[usable]


def feature_tracks(
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    edges: Sequence[ViewPair],
    views: set[int],
) -> list[np.ndarray]:
    """Tracks ``(n, 2)`` of ``(view, keypoint)`` from the inlier matches of the edges between
    ``views``: connected components of the match graph; a component that holds two keypoints of
    one view (an inconsistent match) is dropped."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offsets = np.cumsum([0] + [len(f[0]) for f in features])
    pairs = [
        np.stack([offsets[e.i] + e.matches[:, 0], offsets[e.j] + e.matches[:, 1]], 1)
        for e in edges
        if e.i in views and e.j in views
    ]
    if not pairs:
        return []
    links = np.concatenate(pairs)
    total = int(offsets[-1])
    graph = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(total, total))
    _, labels = connected_components(graph, directed=False)
    nodes = np.unique(links)
    view_of = np.repeat(np.arange(len(features)), np.diff(offsets))
    nodes = nodes[np.lexsort((nodes, labels[nodes]))]  # by component, then keypoint
    label, view = labels[nodes], view_of[nodes]
    starts = np.flatnonzero(np.r_[True, label[1:] != label[:-1]])
    sizes = np.diff(np.r_[starts, len(nodes)])
    by_view = np.lexsort((view, label))  # a view twice in one component: adjacent here
    twice = (label[by_view][1:] == label[by_view][:-1]) & (view[by_view][1:] == view[by_view][:-1])
    consistent = (sizes >= 2) & ~np.isin(label[starts], label[by_view][1:][twice])
    observations = np.stack([view, nodes - offsets[view]], 1)
    ends = starts + sizes  # slices: np.split is ~3x slower for a thousand tracks
    return [observations[a:b] for a, b, ok in zip(starts, ends, consistent, strict=True) if ok]


MIN_TRIANGULATION_EIGENVALUE = 1.0 - math.cos(math.radians(0.5))  # rays 0.5 degrees apart


def triangulate_tracks(
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    tracks: Sequence[np.ndarray],
    world2cam: dict[int, np.ndarray],
    k_photo: np.ndarray,
    max_error: float,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Triangulate every track from ``world2cam`` ``(3, 4)`` per view and the intrinsics: the
    point closest to all its rays in least squares (vectorised over tracks; tracks whose rays
    are within ~0.5 degrees of parallel are dropped). Observations behind the camera or
    reprojecting further than ``max_error`` pixels are dropped, then tracks left with fewer
    than two. Returns the points ``(N, 3)`` and their kept observations ``(n, 2)`` of ``(view,
    keypoint)``."""
    if not tracks:
        return np.zeros((0, 3)), []
    observations = np.concatenate(tracks)
    track_of = np.repeat(np.arange(len(tracks)), [len(t) for t in tracks])
    views = observations[:, 0]
    offsets = np.cumsum([0] + [len(f[0]) for f in features])
    pixels = np.concatenate([f[0] for f in features])[offsets[views] + observations[:, 1]]
    rotation = np.zeros((len(features), 3, 3))
    translation = np.zeros((len(features), 3))
    for v, from_world in world2cam.items():
        rotation[v], translation[v] = from_world[:, :3], from_world[:, 3]
    rays = np.einsum(
        "nij,nj->ni", np.linalg.inv(k_photo)[views], np.c_[pixels, np.ones(len(views))]
    )
    directions = np.einsum("nji,nj->ni", rotation[views], rays)  # R^T r: world frame
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    centres = -np.einsum("nji,nj->ni", rotation[views], translation[views])
    # sum over rays of (I - d d^T) X = sum of (I - d d^T) c
    projector = np.eye(3) - directions[:, :, None] * directions[:, None, :]
    lhs = np.zeros((len(tracks), 3, 3))
    rhs = np.zeros((len(tracks), 3))
    np.add.at(lhs, track_of, projector)
    np.add.at(rhs, track_of, np.einsum("nij,nj->ni", projector, centres))
    solvable = np.linalg.eigvalsh(lhs)[:, 0] > MIN_TRIANGULATION_EIGENVALUE
    points = np.zeros((len(tracks), 3))
    points[solvable] = np.linalg.solve(lhs[solvable], rhs[solvable][..., None])[..., 0]
    cam = np.einsum("nij,nj->ni", rotation[views], points[track_of]) + translation[views]
    projected = np.einsum("nij,nj->ni", k_photo[views], cam)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.linalg.norm(projected[:, :2] / projected[:, 2:] - pixels, axis=1)
    good = solvable[track_of] & (cam[:, 2] > 0) & (error < max_error)
    counts = np.bincount(track_of[good], minlength=len(tracks))
    keep = counts >= 2
    # the kept observations of the kept tracks, cut into tracks by slices
    lengths = counts[keep]
    kept_observations = observations[good & keep[track_of]]
    ends = np.cumsum(lengths)
    pieces = zip(ends.tolist(), lengths.tolist(), strict=True)
    kept = [kept_observations[b - n : b] for b, n in pieces]
    return points[keep], kept


def _reconstruction(
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    world2cam: dict[int, np.ndarray],
    k_photo: np.ndarray,
    image_size: tuple[int, int],
    points: Sequence[np.ndarray],
    tracks: Sequence[np.ndarray],
    refine_focal: bool,
) -> tuple[Any, list[int]]:
    """A pycolmap ``Reconstruction``: one camera per view (``SIMPLE_PINHOLE`` when its focal
    length is refined, else ``PINHOLE``), image and camera ids ``view + 1``; and the ids of the
    points, in the order of ``points``."""
    import pycolmap

    reconstruction = pycolmap.Reconstruction()
    width, height = image_size
    for v, from_world in world2cam.items():
        k = k_photo[v]
        if refine_focal:
            model, params = "SIMPLE_PINHOLE", [k[0, 0], k[0, 2], k[1, 2]]
        else:
            model, params = "PINHOLE", [k[0, 0], k[1, 1], k[0, 2], k[1, 2]]
        camera = pycolmap.Camera(
            model=model, width=width, height=height, params=params, camera_id=v + 1
        )
        reconstruction.add_camera_with_trivial_rig(camera)
        image = pycolmap.Image(
            name=f"view{v}", keypoints=features[v][0], camera_id=v + 1, image_id=v + 1
        )
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(from_world[:, :3]), from_world[:, 3])
        reconstruction.add_image_with_trivial_frame(image, pose)
    point_ids, color = [], np.zeros(3, np.uint8)
    for point, track in zip(points, tracks, strict=True):
        elements = pycolmap.Track()
        for v, k in track.tolist():  # Python ints: ~4x faster than TrackElement objects
            elements.add_element(v + 1, k)
        point_ids.append(reconstruction.add_point3D(point, elements, color))
    return reconstruction, point_ids


def _observations(
    reconstruction: Any,
    point_ids: Sequence[int],
    tracks: Sequence[np.ndarray],
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    world2cam: dict[int, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every observation of the adjusted points (``tracks[i]``: ``(view, keypoint)`` rows of
    the point added as ``point_ids[i]``), in the reconstruction's own point order: ``views
    (n,)``, keypoint ``pixels (n, 2)``, z-depths ``(n,)`` in the adjusted cameras, and
    ``multi_view (V,)``: each view's observations of points seen by 3+ views."""
    track_of = {point_id: i for i, point_id in enumerate(point_ids)}
    order = list(reconstruction.points3D.keys())  # (its iteration order, as COLMAP keeps it)
    xyz = np.array([reconstruction.point3D(point_id).xyz for point_id in order], np.float64)
    ordered = [tracks[track_of[point_id]] for point_id in order]
    lengths = np.array([len(track) for track in ordered], np.int64)
    observed = np.concatenate(ordered).astype(np.int64).reshape(-1, 2)
    views, keypoints = observed[:, 0], observed[:, 1]
    pixels = np.zeros((len(views), 2))
    for v in np.unique(views):
        here = views == v
        pixels[here] = features[v][0][keypoints[here]]
    depth_row = np.zeros((len(features), 4))
    for v, from_world in world2cam.items():
        depth_row[v] = from_world[2]
    points = np.repeat(xyz.reshape(-1, 3), lengths, axis=0)
    z = np.einsum("ni,ni->n", depth_row[views, :3], points) + depth_row[views, 3]
    in_long_tracks = np.repeat(lengths >= 3, lengths)
    multi_view = np.bincount(views[in_long_tracks], minlength=len(features)).astype(np.int64)
    return views, pixels, z, multi_view


def first_round_error(max_error: float, image_size: tuple[int, int]) -> float:
    """The inlier threshold (pixels) of the first round of :func:`bundle_adjust` for keypoint
    images of ``image_size = (W, H)``: ``max_error`` scaled by the longer side over
    ``REFERENCE_LONG_SIDE`` (never below ``max_error``); later rounds use ``max_error``.

    The chained cameras are only as good as the network's depth along each view's baseline, so
    the first triangulation meets them with the same angular tolerance at every size. With a
    fixed 4 px, at 1024x768 views placed 5-10 degrees off kept none of their observations of
    points that other views see too, the adjustment could not move them, and they stayed off
    (COLMAP benchmark scenes of seed 1000 at 1024x768, known intrinsics, 16 views: AUC@5 0.838;
    with this 1.000; at 8 views 0.861 -> 0.870, and 1.000 with 32 px). 128 px as the
    reference (8 px at 256) took the portrait test scene (160x240) over its 1-degree limit
    (1.56); at 256 px and below the threshold is the setting's."""
    return max_error * max(1.0, max(image_size) / REFERENCE_LONG_SIDE)


def bundle_adjust(
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    edges: Sequence[ViewPair],
    cam2world: dict[int, np.ndarray],
    k_photo: np.ndarray,
    image_size: tuple[int, int],
    *,
    depth: np.ndarray,
    to_photo: np.ndarray,
    refine_focal: bool,
    max_error: float = 4.0,
    rounds: int = 2,
    max_iterations: int = 25,
) -> BundleResult | None:
    """Refine the chained poses of the placed views (and each one's focal length when
    ``refine_focal``) by COLMAP's bundle adjustment (pycolmap/Ceres, Cauchy loss, gauge fixed
    on two cameras) of the tracks of all verified pairs (:func:`feature_tracks`), triangulated
    from the current cameras (:func:`triangulate_tracks`, ``max_error`` pixels; the first
    round :func:`first_round_error`); ``rounds`` times, re-triangulating in between as COLMAP
    does; a refined focal length outside
    :func:`~pixio_3d.geometry.plausible_focal_range` restarts at the median of the plausible
    ones (None where none is plausible). The result is moved back to the frame of
    ``cam2world`` (its first view keeps its pose; view 0 where it is placed) and to the network's metric scale (median ratio of its z-depth to the points' at the
    observations, over all views and pairs). Returns a :class:`BundleResult`, or None (too few
    points)."""
    import pycolmap

    tracks = feature_tracks(features, edges, set(cam2world))
    world2cam = {v: np.linalg.inv(cam2world[v])[:3] for v in sorted(cam2world)}
    k_photo = k_photo.copy()
    low, high = plausible_focal_range(image_size[1], image_size[0])
    if refine_focal:  # SIMPLE_PINHOLE cameras: one focal length per placed view
        for v in world2cam:
            k_photo[v, 0, 0] = k_photo[v, 1, 1] = k_photo[v, [0, 1], [0, 1]].mean()
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_focal_length = refine_focal
    options.refine_principal_point = False
    options.refine_extra_params = False
    options.print_summary = False
    options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    options.ceres.solver_options.num_threads = torch.get_num_threads()
    options.ceres.solver_options.max_num_iterations = max_iterations
    options.ceres.solver_options.parameter_tolerance = PARAMETER_TOLERANCE
    options.ceres.solver_options.function_tolerance = FUNCTION_TOLERANCE
    for round_ in range(rounds):
        threshold = first_round_error(max_error, image_size) if round_ == 0 else max_error
        points, kept = triangulate_tracks(features, tracks, world2cam, k_photo, threshold)
        if len(points) < MIN_POINTS:
            return None
        reconstruction, point_ids = _reconstruction(
            features, world2cam, k_photo, image_size, points, kept, refine_focal
        )
        config = pycolmap.BundleAdjustmentConfig()
        for v in world2cam:
            config.add_image(v + 1)
        config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
        pycolmap.create_default_bundle_adjuster(options, config, reconstruction).solve()
        for v in world2cam:
            world2cam[v] = reconstruction.image(v + 1).cam_from_world().matrix()
        if refine_focal:
            placed = list(world2cam)
            focals = np.array([reconstruction.camera(v + 1).params[0] for v in placed])
            plausible = np.isfinite(focals) & (focals >= low) & (focals <= high)
            if not plausible.any():
                return None  # a degenerate adjustment (a 170-degree lens fits anything)
            # a view whose focal length ran away (one badly started view among good ones, seen
            # at 10x the others) restarts at the median of the others for the next round
            focals[~plausible] = np.median(focals[plausible])
            k_photo[placed, 0, 0] = k_photo[placed, 1, 1] = focals

    views, pixels, z, multi_view = _observations(
        reconstruction, point_ids, kept, features, world2cam
    )
    pixels = pixels / np.diag(to_photo)[:2]
    ratios = depth_ratios(depth, views, pixels, z)
    if len(ratios) < MIN_POINTS:
        return None
    scale = float(np.median(ratios))
    first = min(world2cam)  # view 0 where it was placed: back where it was, the rest metric
    reference = np.vstack([world2cam[first], [0.0, 0.0, 0.0, 1.0]])
    poses = {}
    for v, from_world in world2cam.items():
        pose = reference @ np.linalg.inv(np.vstack([from_world, [0.0, 0.0, 0.0, 1.0]]))
        pose[:3, 3] *= scale  # in the first view's camera frame, metric
        poses[v] = cam2world[first] @ pose
    reconstruction.update_point_3d_errors()
    # the mean over the points within the inlier threshold: one point left at a camera's plane
    # (Cauchy keeps it cheap) had put COLMAP's plain mean at 1e151 px
    errors = np.array([point.error for point in reconstruction.points3D.values()])
    inlying = errors[np.isfinite(errors) & (errors <= max_error)]
    error = float(inlying.mean()) if len(inlying) else float("nan")
    in_front = z > 0
    sparse = SparseDepth(views[in_front], pixels[in_front], z[in_front] * scale)
    return BundleResult(
        poses,
        k_photo,
        error,
        reconstruction.num_points3D(),
        sparse,
        scale,
        scale_spread(ratios),
        multi_view,
    )
