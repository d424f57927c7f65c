"""Stage 3 of pixio_3d: classical geometry that refines the network's cameras.

The only stage that uses OpenCV and pycolmap (imported where they are called):

* :mod:`~pixio_3d.sfm.features`: SIFT keypoints and descriptor matching;
* :mod:`~pixio_3d.sfm.two_view`: essential matrices, triangulation, candidate view pairs;
* :mod:`~pixio_3d.sfm.view_graph`: chaining verified pairs into one frame;
* :mod:`~pixio_3d.sfm.bundle_adjust`: tracks and COLMAP's bundle adjustment;
* :mod:`~pixio_3d.sfm.refine`: the ``features`` pose solver that joins them, with the network's
  depth for the metric scale;
* :mod:`~pixio_3d.sfm.matches`: the ``matches`` pose solver (a rigid fit at the network's own
  patch matches; torch only);
* :mod:`~pixio_3d.sfm.colmap_baseline`: COLMAP's incremental SfM, the peer baseline;
* :mod:`~pixio_3d.sfm.settings`: solver names and :class:`FeatureSettings`.
"""

from pixio_3d.sfm.bundle_adjust import bundle_adjust, depth_ratios, feature_tracks
from pixio_3d.sfm.features import (
    match_descriptors,
    quiet_pycolmap_logs,
    sift_extractor,
    sift_features,
    stretch_contrast,
)
from pixio_3d.sfm.matches import poses_from_matches
from pixio_3d.sfm.refine import (
    FeaturePoses,
    poses_from_features,
    poses_from_keypoints,
    refine_with_features,
)
from pixio_3d.sfm.settings import (
    POSE_SOLVERS,
    SIFT_BACKENDS,
    FeatureSettings,
    parse_feature_settings,
)
from pixio_3d.sfm.two_view import (
    candidate_pairs,
    relative_pose,
    relative_pose_from_features,
    triangulated_depth,
)
from pixio_3d.sfm.view_graph import ViewPair, chain_view_graph

__all__ = [
    "POSE_SOLVERS",
    "SIFT_BACKENDS",
    "FeaturePoses",
    "FeatureSettings",
    "ViewPair",
    "bundle_adjust",
    "candidate_pairs",
    "chain_view_graph",
    "depth_ratios",
    "feature_tracks",
    "match_descriptors",
    "parse_feature_settings",
    "poses_from_features",
    "poses_from_keypoints",
    "poses_from_matches",
    "quiet_pycolmap_logs",
    "refine_with_features",
    "relative_pose",
    "relative_pose_from_features",
    "sift_extractor",
    "sift_features",
    "stretch_contrast",
    "triangulated_depth",
]
