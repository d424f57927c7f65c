"""Known cameras: SfM points from given intrinsics and poses, to put the dense depth in their
frame and units.

With every camera given (a COLMAP model, a calibration file), nothing is estimated: SIFT
matches of every candidate view pair are verified against the epipolar geometry of the given
cameras (Sampson distance below ``settings.max_error`` pixels), joined into tracks and
triangulated from the given cameras. Their z-depth in each view is what the network's depth is
then fitted to (:mod:`pixio_3d.sfm.depth_fit`), so the dense points land in the given world
frame at the given scale, and the cameras come out exactly as given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pixio_3d.sfm.bundle_adjust import SparseDepth, feature_tracks, triangulate_tracks
from pixio_3d.sfm.features import sift_extractor, sift_features
from pixio_3d.sfm.settings import DEFAULT_FEATURE_SETTINGS, FeatureSettings
from pixio_3d.sfm.two_view import candidate_pairs
from pixio_3d.sfm.view_graph import ViewPair

__all__ = ["epipolar_inliers", "sparse_depth_from_known_cameras"]

# matches of a pair that fit the given epipolar geometry for the pair to count: fewer than
# RANSAC needs to *estimate* a pose (FeatureSettings.min_inliers), since nothing is estimated
MIN_KNOWN_INLIERS = 8


def _skew(vector: np.ndarray) -> np.ndarray:
    x, y, z = vector
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def epipolar_inliers(
    points1: np.ndarray,
    points2: np.ndarray,
    intrinsics1: np.ndarray,
    intrinsics2: np.ndarray,
    cam2_from_cam1: np.ndarray,
    max_error: float,
) -> np.ndarray:
    """``(M,)`` bool: the matched pixels whose Sampson distance to the epipolar geometry of the
    given cameras is below ``max_error`` pixels."""
    rotation, translation = cam2_from_cam1[:3, :3], cam2_from_cam1[:3, 3]
    if np.linalg.norm(translation) < 1e-12:  # no baseline: no epipolar constraint
        return np.zeros(len(points1), bool)
    essential = _skew(translation) @ rotation
    fundamental = np.linalg.inv(intrinsics2).T @ essential @ np.linalg.inv(intrinsics1)
    x1 = np.c_[points1, np.ones(len(points1))]
    x2 = np.c_[points2, np.ones(len(points2))]
    fx1, ftx2 = x1 @ fundamental.T, x2 @ fundamental
    numerator = np.einsum("ij,ij->i", x2, fx1) ** 2
    denominator = fx1[:, 0] ** 2 + fx1[:, 1] ** 2 + ftx2[:, 0] ** 2 + ftx2[:, 1] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        sampson = np.sqrt(numerator / denominator)
    return np.isfinite(sampson) & (sampson < max_error)


def sparse_depth_from_known_cameras(
    photos: Sequence[np.ndarray],
    intrinsics: np.ndarray,
    cam2world: np.ndarray,
    network_size: tuple[int, int],
    settings: FeatureSettings = DEFAULT_FEATURE_SETTINGS,
) -> SparseDepth:
    """SfM points of the given cameras, as each view sees them.

    Args:
        photos: ``V`` uint8 images framing the views exactly (any common size of their aspect).
        intrinsics: ``(V, 3, 3)`` of the views at the network's size ``network_size = (H, W)``.
        cam2world: ``(V, 4, 4)`` the given camera-to-world poses (OpenCV), any units.

    Returns the observations (network pixels, z in the given units); empty when nothing could
    be triangulated.
    """
    views = len(photos)
    height, width = network_size
    photo_height, photo_width = np.asarray(photos[0]).shape[:2]
    to_photo = np.diag([photo_width / width, photo_height / height, 1.0])
    k_photo = to_photo @ np.asarray(intrinsics, np.float64)
    extractor = sift_extractor(
        settings.max_features, settings.first_octave, settings.sift, settings.contrast_threshold
    )
    features = [sift_features(photo, extractor) for photo in photos]
    world2cam = np.linalg.inv(np.asarray(cam2world, np.float64))
    edges = []
    for (i, j), matches in candidate_pairs(features, [True] * views, settings).items():
        j_from_i = world2cam[j] @ np.asarray(cam2world[i], np.float64)
        inliers = epipolar_inliers(
            features[i][0][matches[:, 0]],
            features[j][0][matches[:, 1]],
            k_photo[i],
            k_photo[j],
            j_from_i,
            settings.max_error,
        )
        if inliers.sum() >= min(settings.min_inliers, MIN_KNOWN_INLIERS):
            edges.append(ViewPair(int(inliers.sum()), i, j, j_from_i, matches[inliers]))
    tracks = feature_tracks(features, edges, set(range(views)))
    points, kept = triangulate_tracks(
        features,
        tracks,
        {v: world2cam[v][:3] for v in range(views)},
        k_photo,
        settings.max_reprojection_error,
    )
    observed_views, pixels, z = [], [], []
    for point, track in zip(points, kept, strict=True):
        for view, keypoint in track:
            observed_views.append(view)
            pixels.append(features[view][0][keypoint])
            z.append(world2cam[view][2, :3] @ point + world2cam[view][2, 3])
    if not z:
        return SparseDepth(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0))
    return SparseDepth(
        np.array(observed_views, np.int64),
        np.array(pixels, np.float64) / np.diag(to_photo)[:2],
        np.array(z, np.float64),
    )
