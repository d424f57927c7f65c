"""Two-view geometry: essential matrices (pycolmap's LO-RANSAC) of matched keypoints, midpoint
triangulation, and the view pairs worth verifying."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pixio_3d.sfm.features import bf16_descriptors, fast_bf16_matching, match_descriptors
from pixio_3d.sfm.settings import DEFAULT_FEATURE_SETTINGS, FeatureSettings

__all__ = [
    "candidate_pairs",
    "ransac_trials",
    "relative_pose",
    "relative_pose_from_features",
    "triangulated_depth",
    "verified_pair",
]

RANSAC_CONFIDENCE = 0.9999  # pycolmap's RANSACOptions default


def _pinhole(intrinsics: np.ndarray, width: int, height: int):
    import pycolmap

    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    return pycolmap.Camera(model="PINHOLE", width=width, height=height, params=[fx, fy, cx, cy])


def triangulated_depth(
    points1: np.ndarray,
    points2: np.ndarray,
    intrinsics1: np.ndarray,
    intrinsics2: np.ndarray,
    cam2_from_cam1: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint triangulation: z-depths in camera 1 and camera 2 of matched pixels ``(M, 2)``
    (NaN where the rays are parallel), in the units of ``cam2_from_cam1``'s translation."""
    rotation, translation = cam2_from_cam1[:3, :3], cam2_from_cam1[:3, 3]
    ones = np.ones((len(points1), 1))
    ray1 = np.hstack([points1, ones]) @ np.linalg.inv(intrinsics1).T  # z = 1, camera 1
    ray2 = np.hstack([points2, ones]) @ np.linalg.inv(intrinsics2).T  # z = 1, camera 2
    ray2_in_1 = ray2 @ rotation  # R^T r2
    centre2 = -rotation.T @ translation
    # s * ray1 - u * ray2_in_1 = centre2 in least squares
    aa = (ray1 * ray1).sum(1)
    ab = (ray1 * ray2_in_1).sum(1)
    bb = (ray2_in_1 * ray2_in_1).sum(1)
    ac = ray1 @ centre2
    bc = ray2_in_1 @ centre2
    det = ab * ab - aa * bb
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(np.abs(det) > 1e-12, (ab * bc - ac * bb) / det, np.nan)
        u = np.where(np.abs(det) > 1e-12, (aa * bc - ab * ac) / det, np.nan)
    return s, u  # ray1 and ray2 have z = 1, so the ray parameters are the z-depths


def ransac_trials(matches: int, settings: FeatureSettings = DEFAULT_FEATURE_SETTINGS) -> int:
    """RANSAC trials for an essential matrix of ``matches`` correspondences: at most
    ``settings.max_trials``, and no more than it takes to draw, with probability
    ``RANSAC_CONFIDENCE``, one 5-point sample of inliers of a pose that has the
    ``settings.min_inliers`` a pair needs (at least ``settings.min_trials``).

    A pair of 26 matches needs at most 198 trials for that, so a pair without a 15-inlier
    pose is given up after 198 instead of 500 (on the COLMAP benchmark such pairs took a third
    of the RANSAC time); pairs of 32 matches or more keep ``max_trials``.
    """
    need = max(settings.min_inliers, 5)
    if matches <= need:  # every sample is all inliers of such a pose, if there is one
        return settings.min_trials
    # all 5 drawn (without replacement) among `need` inliers of `matches`
    p = math.prod((need - k) / (matches - k) for k in range(5))
    trials = math.ceil(math.log(1.0 - RANSAC_CONFIDENCE) / math.log1p(-p))
    return int(min(settings.max_trials, max(settings.min_trials, trials)))


def relative_pose(
    points1: np.ndarray,
    points2: np.ndarray,
    intrinsics1: np.ndarray,
    intrinsics2: np.ndarray,
    image_size: tuple[int, int],
    settings: FeatureSettings = DEFAULT_FEATURE_SETTINGS,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Essential-matrix pose of a view pair from matched pixels ``(M, 2)``: ``cam2_from_cam1
    (4, 4)`` with a unit translation and the inlier mask ``(M,)``, or None (fewer than
    ``settings.min_inliers`` inliers). ``image_size`` is the keypoint images' ``(width,
    height)``."""
    import pycolmap

    if len(points1) < max(settings.min_inliers, 5):
        return None
    options = pycolmap.RANSACOptions()
    options.max_error = settings.max_error
    options.random_seed = settings.seed
    options.min_num_trials = settings.min_trials
    options.max_num_trials = ransac_trials(len(points1), settings)
    result = pycolmap.estimate_essential_matrix(
        points1,
        points2,
        _pinhole(intrinsics1, *image_size),
        _pinhole(intrinsics2, *image_size),
        options,
    )
    if result is None or int(result["num_inliers"]) < settings.min_inliers:
        return None
    pose = np.eye(4)
    pose[:3] = result["cam2_from_cam1"].matrix()
    return pose, np.asarray(result["inlier_mask"], dtype=bool)


def relative_pose_from_features(
    features1: tuple[np.ndarray, np.ndarray],
    features2: tuple[np.ndarray, np.ndarray],
    intrinsics1: np.ndarray,
    intrinsics2: np.ndarray,
    image_size: tuple[int, int],
    settings: FeatureSettings = DEFAULT_FEATURE_SETTINGS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`relative_pose` of two views' keypoints and descriptors (matched with
    :func:`match_descriptors`): ``cam2_from_cam1`` and the inlier keypoints ``(n, 2)`` of both
    views, or None."""
    found = verified_pair(features1, features2, intrinsics1, intrinsics2, image_size, settings)
    if found is None:
        return None
    pose, matches = found
    return pose, features1[0][matches[:, 0]], features2[0][matches[:, 1]]


def verified_pair(
    features1: tuple[np.ndarray, np.ndarray],
    features2: tuple[np.ndarray, np.ndarray],
    intrinsics1: np.ndarray,
    intrinsics2: np.ndarray,
    image_size: tuple[int, int],
    settings: FeatureSettings,
    matches: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``cam2_from_cam1`` and the inlier matches ``(n, 2)`` (keypoint indices), or None;
    ``matches`` from :func:`match_descriptors` unless given."""
    if matches is None:
        matches = match_descriptors(features1[1], features2[1], settings.ratio)
    points1, points2 = features1[0][matches[:, 0]], features2[0][matches[:, 1]]
    found = relative_pose(points1, points2, intrinsics1, intrinsics2, image_size, settings)
    if found is None:
        return None
    pose, inliers = found
    return pose, matches[inliers]


def candidate_pairs(
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    usable: Sequence[bool],
    settings: FeatureSettings = DEFAULT_FEATURE_SETTINGS,
) -> dict[tuple[int, int], np.ndarray]:
    """The view pairs worth an essential-matrix fit, with their descriptor matches: every pair
    of ``usable`` views with at least ``settings.min_inliers`` matches, and with
    ``settings.max_pairs_per_view > 0`` only those among the top that many of either view (by
    match count; RANSAC on pairs that share little costs the most and adds the least).
    ``settings.match_precision`` picks float32 or bf16 similarities (:func:`match_descriptors`)."""
    views = len(features)
    found: dict[tuple[int, int], np.ndarray] = {}
    descriptors: Sequence[Any] = [f[1] for f in features]
    precision = settings.match_precision
    if precision == "bf16" or (precision == "auto" and fast_bf16_matching()):
        descriptors = [bf16_descriptors(d) for d in descriptors]
    for i in range(views):
        for j in range(i + 1, views):
            if usable[i] and usable[j]:
                matches = match_descriptors(descriptors[i], descriptors[j], settings.ratio)
                if len(matches) >= max(settings.min_inliers, 5):
                    found[i, j] = matches
    limit = settings.max_pairs_per_view
    if limit <= 0:
        return found
    best: set[tuple[int, int]] = set()
    for view in range(views):
        mine = [pair for pair in found if view in pair]
        best.update(sorted(mine, key=lambda pair: -len(found[pair]))[:limit])
    return {pair: matches for pair, matches in found.items() if pair in best}
