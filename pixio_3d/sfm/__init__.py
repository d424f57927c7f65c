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

Names are imported on first use (importing the package is cheap).
"""

from typing import TYPE_CHECKING

from pixio_core.lazy import lazy_exports

_EXPORTS = {
    "depth_ratios": "pixio_3d.sfm.bundle_adjust",
    "feature_tracks": "pixio_3d.sfm.bundle_adjust",
    "match_descriptors": "pixio_3d.sfm.features",
    "quiet_pycolmap_logs": "pixio_3d.sfm.features",
    "sift_extractor": "pixio_3d.sfm.features",
    "sift_features": "pixio_3d.sfm.features",
    "stretch_contrast": "pixio_3d.sfm.features",
    "poses_from_matches": "pixio_3d.sfm.matches",
    "FeaturePoses": "pixio_3d.sfm.refine",
    "poses_from_features": "pixio_3d.sfm.refine",
    "poses_from_keypoints": "pixio_3d.sfm.refine",
    "refine_with_features": "pixio_3d.sfm.refine",
    "DEFAULT_FEATURE_SETTINGS": "pixio_3d.sfm.settings",
    "FeatureSettings": "pixio_3d.sfm.settings",
    "POSE_SOLVERS": "pixio_3d.sfm.settings",
    "SIFT_BACKENDS": "pixio_3d.sfm.settings",
    "parse_feature_settings": "pixio_3d.sfm.settings",
    "candidate_pairs": "pixio_3d.sfm.two_view",
    "relative_pose": "pixio_3d.sfm.two_view",
    "relative_pose_from_features": "pixio_3d.sfm.two_view",
    "triangulated_depth": "pixio_3d.sfm.two_view",
    "ViewPair": "pixio_3d.sfm.view_graph",
    "chain_view_graph": "pixio_3d.sfm.view_graph",
    "largest_component_root": "pixio_3d.sfm.view_graph",
}
__all__ = [
    "DEFAULT_FEATURE_SETTINGS",
    "FeaturePoses",
    "FeatureSettings",
    "POSE_SOLVERS",
    "SIFT_BACKENDS",
    "ViewPair",
    "candidate_pairs",
    "chain_view_graph",
    "depth_ratios",
    "feature_tracks",
    "largest_component_root",
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
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pixio_3d.sfm.bundle_adjust import (
        depth_ratios,
        feature_tracks,
    )
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
        DEFAULT_FEATURE_SETTINGS,
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
    from pixio_3d.sfm.view_graph import (
        ViewPair,
        chain_view_graph,
        largest_component_root,
    )
