"""Camera poses from matches instead of the pose head: ``matches`` and ``features``.

``matches``: camera poses from the model's own patch matches and camera-frame points.

For every view ``v >= 1`` and every patch, the pose-matching logits give its best match in view 0
(mutual nearest neighbours only, when there are enough of them); the model's camera-frame points
at the two patch centres form a 3D-3D correspondence. A weighted rigid Procrustes fit (Kabsch,
:func:`pixio_3d.geometry.umeyama` without scale), re-weighted a few times with a Cauchy weight of
the residuals (iteratively reweighted least squares), gives view ``v``'s camera-to-world pose in
the frame of view 0. This is how DUSt3R/MASt3R-style pipelines read poses from pointmaps; it
uses depth and matches, the two outputs that are supervised per pixel / per patch, instead of a
pose regressed from pooled features.

Views with fewer than ``MIN_MATCHES`` usable matches keep the pose they were given (the head's).

``features`` (a hybrid of classical two-view geometry and the network): SIFT keypoints
(OpenCV's, or pycolmap's) of every view, mutual nearest-neighbour matches with Lowe's ratio test
for every view pair (essential matrices for each view's best pairs), and an essential matrix per pair (pycolmap's LO-RANSAC, with the known or predicted
intrinsics) give relative rotations and translation directions that do not depend on the
predicted depth. The predicted depth fixes each pair's translation length (median ratio of the
predicted z-depth to the triangulated one at the inliers), so all pairs share the network's
metric scale. A maximum spanning tree of the view graph (edge weight: inlier count, edges with
fewer than ``MIN_INLIERS`` dropped), grown from view 0, chains the relative poses; views it does
not reach keep the head's pose. A bundle adjustment (COLMAP's, through pycolmap) then refines
the placed views jointly: the inlier matches of all verified pairs are joined into tracks,
triangulated from the chained cameras and adjusted with a Cauchy loss, twice with
re-triangulation in between; with predicted intrinsics it also refines each view's focal length
(the network's focal lengths are ~10 % off, which bends the two-view geometry). The adjusted
cameras are put back in view 0's frame at the network's metric scale. Keypoints can come from
higher-resolution copies of the views (``photos``), as COLMAP would use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import torch

from pixio_3d.bundle_adjust import ViewPair, bundle_adjust, depth_ratios
from pixio_3d.geometry import patch_centres, umeyama

MIN_MATCHES = 6
POSE_SOLVERS = ("head", "matches", "features")  # ReconstructionModel.infer(pose_solver=...)
MIN_INLIERS = 15  # essential-matrix inliers for a view pair to join the view graph
STRETCH_PERCENTILES = (1.0, 99.0)
SIFT_BACKENDS = ("opencv", "colmap")  # FeatureSettings.sift


def poses_from_matches(
    points_cam: torch.Tensor,
    match_logits: torch.Tensor,
    fallback: torch.Tensor,
    grid: tuple[int, int],
    iterations: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-to-world poses ``(B, V, 4, 4)`` fitted to matches, and the matches used ``(B, V)``.

    Args:
        points_cam: ``(B, V, H, W, 3)`` camera-frame points (any scale shared by the views).
        match_logits: ``(B, V, P, P)`` every view's patches against view 0's (``P = h * w``).
        fallback: ``(B, V, 4, 4)`` poses kept for views with too few matches (view 0's is kept).
        grid: the patch grid ``(h, w)``.
        iterations: IRLS rounds after the first fit.
    """
    batch, views = points_cam.shape[:2]
    patches = grid[0] * grid[1]
    if match_logits.shape != (batch, views, patches, patches):
        raise ValueError(
            f"match_logits must be ({batch}, {views}, {patches}, {patches}), "
            f"got {tuple(match_logits.shape)}"
        )
    centres = patch_centres(points_cam, grid)  # (B, V, P, 3)
    poses = fallback.clone()
    used = torch.zeros(batch, views, dtype=torch.long, device=points_cam.device)
    own = torch.arange(patches, device=points_cam.device)
    for b in range(batch):
        for v in range(1, views):
            logits = match_logits[b, v].float()
            peak, best = logits.softmax(dim=-1).max(dim=-1)  # view v patch -> view 0 patch
            mutual = logits.argmax(dim=0)[best] == own
            weights = peak * mutual if int(mutual.sum()) >= MIN_MATCHES else peak
            source, target = centres[b, v], centres[b, 0, best]
            finite = torch.isfinite(source).all(-1) & torch.isfinite(target).all(-1)
            weights = weights * finite
            count = int((weights > 0).sum())
            if count < MIN_MATCHES:
                continue
            source, target = source.nan_to_num(), target.nan_to_num()
            prior = weights
            for _ in range(iterations + 1):
                _, rotation, translation = umeyama(source, target, False, weights)
                residual = (source @ rotation.T + translation - target).norm(dim=-1)
                sigma = residual[prior > 0].median().clamp_min(1e-6)
                weights = prior / (1.0 + (residual / sigma).square())
            poses[b, v, :3, :3] = rotation
            poses[b, v, :3, 3] = translation
            used[b, v] = count
    return poses, used


# ------------------------------------------------------------------------------ features
@dataclass(frozen=True)
class FeatureSettings:
    """Settings of the ``features`` pose solver.

    ``max_features`` SIFT keypoints per view; ``ratio`` Lowe's ratio test on descriptor angles;
    ``max_error`` RANSAC inlier threshold in pixels of the keypoint images; ``min_inliers`` per
    view pair; ``min_trials``/``max_trials`` bound the RANSAC iterations; ``seed`` makes RANSAC
    reproducible.

    The defaults were chosen on 8 generated scenes at 256x192 (seed 2000, not a benchmark
    scene) with true depth and intrinsics: a 1 px threshold instead of COLMAP's 4 px raised
    AUC@5 from 0.73 / 0.69 / 0.55 to 1.00 / 0.93 / 0.80 at 2 / 4 / 8 neighbouring ring views;
    at most 2,000 RANSAC trials instead of COLMAP's 100,000 gave 0.90 / 0.94 / 0.80 in 40 % of
    the time.

    ``sift``: ``"opencv"`` (default; ``contrast_threshold``) or ``"colmap"`` (pycolmap, as the
    COLMAP baseline extracts; ``first_octave`` -1 runs it on the images doubled, 0 was 3x
    faster but AUC@5 fell from 0.84 to 0.46 at 4 views). On the COLMAP benchmark (256x192, one
    thread) OpenCV's took 31 ms per image against pycolmap's 95 ms, at a small accuracy cost
    (known intrinsics, with the default 5 pairs per view: AUC@5 0.85 / 0.98 / 0.98 / 0.94 at
    2 / 4 / 8 / 16 views, against 1.00 at each with pycolmap's SIFT and all pairs). ``max_pairs_per_view`` > 0 fits essential matrices only to
    each view's best pairs (:func:`candidate_pairs`; 0: all pairs): 5 keeps every pair up to 6
    views, and at 16 views cut the time by a quarter or more. ``bundle_adjustment`` refines the
    chained poses (``ba_rounds`` rounds of at most ``ba_max_iterations`` Ceres iterations; 25
    gave the accuracy of 100 in half the time), dropping observations that reproject further
    than ``max_reprojection_error`` pixels before each round.
    """

    def __post_init__(self) -> None:
        if self.sift not in SIFT_BACKENDS:
            raise ValueError(f"sift must be one of {SIFT_BACKENDS}, got {self.sift!r}")

    max_features: int = 4096
    sift: str = "opencv"
    contrast_threshold: float = 0.02
    first_octave: int = -1
    ratio: float = 0.8
    max_error: float = 1.0
    min_inliers: int = MIN_INLIERS
    min_trials: int = 100
    max_trials: int = 2000
    seed: int = 0
    max_pairs_per_view: int = 5
    bundle_adjustment: bool = True
    ba_rounds: int = 2
    ba_max_iterations: int = 25
    max_reprojection_error: float = 4.0


def parse_feature_settings(text: str) -> FeatureSettings:
    """:class:`FeatureSettings` from ``"name=value,name=value"`` (empty: the defaults); booleans
    as true/false/1/0. Raises ValueError naming an unknown field or a bad value."""
    defaults = FeatureSettings()
    known = {f.name: type(getattr(defaults, f.name)) for f in fields(FeatureSettings)}
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in known:
            raise ValueError(
                f"feature setting {item!r} is not name=value with a name of {sorted(known)}"
            )
        kind = known[name]
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                values[name] = value.lower() in ("true", "1")
            else:
                values[name] = kind(value)
        except ValueError:
            raise ValueError(
                f"feature setting {name} needs a {kind.__name__}, got {value!r}"
            ) from None
    return FeatureSettings(**values)


def stretch_contrast(image: np.ndarray) -> np.ndarray:
    """Map the 1st..99th intensity percentiles of ``image (H, W, 3)`` uint8 to 0..255 (uint8).

    SIFT drops keypoints below a fixed contrast; dark, low-contrast images (the MuJoCo renders
    average ~50/255) keep few. A photographer would fix the exposure; this does the same.
    """
    low, high = np.percentile(image, STRETCH_PERCENTILES)
    if high - low < 1:
        return image.copy()
    scaled = (image.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def quiet_pycolmap_logs(level: int = 1) -> None:
    """Raise pycolmap's glog threshold to ``level`` (1: warnings and worse) unless it is already
    higher; for entry points, where its INFO lines (one per SIFT extractor) would break up the
    progress bars."""
    import pycolmap

    pycolmap.logging.minloglevel = max(int(pycolmap.logging.minloglevel), level)


def sift_extractor(
    max_features: int = 4096,
    first_octave: int = -1,
    backend: str = "opencv",
    contrast_threshold: float = 0.02,
) -> Any:
    """A SIFT extractor for :func:`sift_features`. ``backend="opencv"`` (the default):
    OpenCV's ``SIFT`` (Lowe's, image doubled first) with ``contrast_threshold`` (OpenCV's
    default 0.04 kept about a third as many keypoints here); it uses OpenCV's thread setting
    (``cv2.setNumThreads``). ``"colmap"``: pycolmap's CPU SIFT (COLMAP's default options; its
    ``first_octave`` -1 doubles the image, 0 starts at its own size) with as many threads as
    torch uses."""
    if backend == "opencv":
        import cv2

        return cv2.SIFT_create(
            nfeatures=int(max_features),
            nOctaveLayers=3,  # OpenCV's defaults, all spelled out for the overload below
            contrastThreshold=contrast_threshold,
            edgeThreshold=10,
            sigma=1.6,
            descriptorType=cv2.CV_32F,
            enable_precise_upscale=True,  # else keypoints of the doubled image sit 0.25 px off
        )
    if backend != "colmap":
        raise ValueError(f"SIFT backend must be one of {SIFT_BACKENDS}, got {backend!r}")
    import pycolmap

    options = pycolmap.FeatureExtractionOptions()
    options.sift.max_num_features = int(max_features)
    options.sift.first_octave = int(first_octave)
    options.num_threads = torch.get_num_threads()
    return pycolmap.FeatureExtractor.create(options, device=pycolmap.Device.cpu)


def sift_features(
    photo: np.ndarray, extractor: Any = None, contrast_stretch: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints ``(N, 2)`` float64 (pixels, corner origin, pixel centres at +0.5, COLMAP's
    convention) and L2-normalised descriptors ``(N, 128)`` float32 of an RGB or gray uint8 image
    (``extractor``: from :func:`sift_extractor`, default a new one). ``contrast_stretch`` maps
    the 1st..99th intensity percentiles to 0..255 first, as the COLMAP baseline does (SIFT
    drops low-contrast keypoints)."""
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim not in (2, 3):
        raise ValueError(
            f"photo must be a (H, W) or (H, W, 3) uint8 array, got {photo.dtype} {photo.shape}"
        )
    photo = stretch_contrast(photo) if contrast_stretch else photo
    if photo.ndim == 3:
        if photo.shape[2] != 3:
            raise ValueError(f"photo must have 3 channels, got shape {photo.shape}")
        gray = photo.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        photo = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    extractor = extractor if extractor is not None else sift_extractor()
    photo = np.ascontiguousarray(photo)
    if hasattr(extractor, "detectAndCompute"):  # OpenCV: pixel centres at integers
        keypoints, descriptors = extractor.detectAndCompute(photo, None)
        points = np.array([k.pt for k in keypoints], np.float64).reshape(-1, 2) + 0.5
    else:
        keypoints, descriptors = extractor.extract_from_uint8_array(photo)
        points = np.array([(k.x, k.y) for k in keypoints], np.float64).reshape(-1, 2)
        descriptors = descriptors.data
    if len(points) == 0:  # a featureless image (uniform, black)
        return points, np.zeros((0, 128), np.float32)
    vectors = np.asarray(descriptors, dtype=np.float32).reshape(len(points), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return points, vectors / np.maximum(norms, 1e-12)


def match_descriptors(first: np.ndarray, second: np.ndarray, ratio: float = 0.8) -> np.ndarray:
    """Mutual nearest neighbours passing Lowe's ratio test (on descriptor angles): ``(M, 2)``
    index pairs into ``first`` and ``second`` (unit-norm descriptors)."""
    if len(first) < 2 or len(second) < 2:
        return np.zeros((0, 2), np.int64)
    similarity = np.asarray(first, np.float32) @ np.asarray(second, np.float32).T
    rows = np.arange(len(first))
    best = similarity.argmax(axis=1)
    mutual = similarity.argmax(axis=0)[best] == rows
    nearest = similarity[rows, best]
    similarity[rows, best] = -np.inf
    second_nearest = similarity.max(axis=1)
    angles = np.arccos(np.clip(np.stack([nearest, second_nearest]), -1.0, 1.0))
    keep = np.flatnonzero(mutual & (angles[0] < ratio * angles[1]))
    return np.stack([keep, best[keep]], axis=1).astype(np.int64)


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


def relative_pose(
    points1: np.ndarray,
    points2: np.ndarray,
    intrinsics1: np.ndarray,
    intrinsics2: np.ndarray,
    image_size: tuple[int, int],
    settings: FeatureSettings = FeatureSettings(),
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
    options.max_num_trials = settings.max_trials
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
    settings: FeatureSettings = FeatureSettings(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`relative_pose` of two views' keypoints and descriptors (matched with
    :func:`match_descriptors`): ``cam2_from_cam1`` and the inlier keypoints ``(n, 2)`` of both
    views, or None."""
    found = _verified_pair(features1, features2, intrinsics1, intrinsics2, image_size, settings)
    if found is None:
        return None
    pose, matches = found
    return pose, features1[0][matches[:, 0]], features2[0][matches[:, 1]]


def _verified_pair(
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
    settings: FeatureSettings = FeatureSettings(),
) -> dict[tuple[int, int], np.ndarray]:
    """The view pairs worth an essential-matrix fit, with their descriptor matches: every pair
    of ``usable`` views with at least ``settings.min_inliers`` matches, and with
    ``settings.max_pairs_per_view > 0`` only those among the top that many of either view (by
    match count; RANSAC on pairs that share little costs the most and adds the least)."""
    views = len(features)
    found: dict[tuple[int, int], np.ndarray] = {}
    for i in range(views):
        for j in range(i + 1, views):
            if usable[i] and usable[j]:
                matches = match_descriptors(features[i][1], features[j][1], settings.ratio)
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


class FeaturePoses(NamedTuple):
    """What the ``features`` solver returns for one scene.

    ``poses (V, 4, 4)`` camera-to-world; ``placed (V,)`` the inlier count of the view-graph edge
    that placed each view (0 for view 0, the reference, and for views that kept their fallback
    pose); ``intrinsics (V, 3, 3)`` at the network's size: the given ones, or the bundle
    adjustment's refined focal length where it refined one; ``reprojection_error`` the bundle
    adjustment's final mean reprojection error in pixels of the keypoint images (NaN without
    one); ``num_points`` its 3D points (0 without one).
    """

    poses: torch.Tensor
    placed: torch.Tensor
    intrinsics: torch.Tensor
    reprojection_error: float = float("nan")
    num_points: int = 0


def poses_from_features(
    photos: Sequence[np.ndarray],
    intrinsics: torch.Tensor,
    depth_z: torch.Tensor,
    fallback: torch.Tensor,
    settings: FeatureSettings = FeatureSettings(),
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
    settings: FeatureSettings = FeatureSettings(),
    refine_focal: bool = False,
) -> FeaturePoses:
    """:func:`poses_from_features` on given keypoints and unit descriptors per view, found in
    images of ``image_size = (W', H')`` that frame the views of ``depth_z (V, H, W)``."""
    views, height, width = depth_z.shape
    to_photo = np.diag([image_size[0] / width, image_size[1] / height, 1.0])
    k_photo = to_photo @ intrinsics.detach().double().cpu().numpy()
    usable_k = np.isfinite(k_photo).all(axis=(1, 2)) & (k_photo[:, [0, 1], [0, 1]] > 0).all(1)
    depth = depth_z.detach().double().cpu().numpy()
    edges: list[ViewPair] = []
    # a view without a pinhole camera is in no pair: it keeps its fallback pose
    for (i, j), candidates in candidate_pairs(features, usable_k, settings).items():
        found = _verified_pair(
            features[i], features[j], k_photo[i], k_photo[j], image_size, settings, candidates
        )
        if found is None:
            continue
        pose, matches = found
        points_i, points_j = features[i][0][matches[:, 0]], features[j][0][matches[:, 1]]
        z_i, z_j = triangulated_depth(points_i, points_j, k_photo[i], k_photo[j], pose)
        in_front = np.where(z_j > 0, z_i, np.nan)  # points in front of both cameras
        views_i = np.full(len(z_i), i)
        ratios = depth_ratios(depth, views_i, points_i / np.diag(to_photo)[:2], in_front)
        if len(ratios) < MIN_MATCHES:
            continue
        pose[:3, 3] *= np.median(ratios)
        edges.append(ViewPair(len(matches), i, j, pose, matches))
    cam2world = {0: np.eye(4)}
    placed_by = np.zeros(views, np.int64)
    while True:  # Prim: the strongest edge from the placed views to a new one
        frontier = [e for e in edges if (e.i in cam2world) != (e.j in cam2world)]
        if not frontier:
            break
        edge = max(frontier, key=lambda e: e.inliers)
        if edge.i in cam2world:
            cam2world[edge.j] = cam2world[edge.i] @ np.linalg.inv(edge.j_from_i)
            placed_by[edge.j] = edge.inliers
        else:
            cam2world[edge.i] = cam2world[edge.j] @ edge.j_from_i
            placed_by[edge.i] = edge.inliers
    error, num_points = float("nan"), 0
    if settings.bundle_adjustment and len(cam2world) >= 2:
        adjusted = bundle_adjust(
            features,
            edges,
            cam2world,
            k_photo,
            image_size,
            depth,
            to_photo,
            refine_focal,
            settings.max_reprojection_error,
            settings.ba_rounds,
            settings.ba_max_iterations,
        )
        if adjusted is not None:
            cam2world, k_photo, error, num_points = adjusted
    poses = fallback.detach().clone()
    for view, pose in cam2world.items():
        if view > 0:
            poses[view] = torch.from_numpy(pose).to(poses)
    k_network = torch.from_numpy(np.linalg.inv(to_photo) @ k_photo).to(intrinsics)
    return FeaturePoses(poses, torch.from_numpy(placed_by), k_network, error, num_points)
