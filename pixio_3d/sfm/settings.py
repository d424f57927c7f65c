"""Settings of the pose solvers, without importing OpenCV or pycolmap (CLIs parse them first).

``POSE_SOLVERS`` names where cameras come from (:func:`pixio_3d.pipeline.predict`): ``head``
(the network's pose head), ``matches`` (a rigid fit at the network's patch matches,
:mod:`~pixio_3d.sfm.matches`) or ``features`` (SIFT two-view geometry, the view graph and a
bundle adjustment, :mod:`~pixio_3d.sfm.refine`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "FUSION_MODES",
    "MATCH_PRECISIONS",
    "POSE_SOLVERS",
    "SIFT_BACKENDS",
    "FeatureSettings",
    "parse_feature_settings",
]

POSE_SOLVERS = ("head", "matches", "features")
FUSION_MODES = ("consistent", "verified", "all")  # pixio_3d.sfm.fusion.Consistency.kept
MIN_INLIERS = 15  # essential-matrix inliers for a view pair to join the view graph
SIFT_BACKENDS = ("opencv", "colmap")  # FeatureSettings.sift
MATCH_PRECISIONS = ("auto", "fp32", "bf16")  # FeatureSettings.match_precision


@dataclass(frozen=True)
class FeatureSettings:
    """Settings of the ``features`` pose solver.

    ``max_features`` SIFT keypoints per view; ``ratio`` Lowe's ratio test on descriptor angles;
    ``match_precision`` of the descriptor similarities of all view pairs (``auto``: bf16 where
    the CPU has native bf16 products, :func:`~pixio_3d.sfm.features.match_descriptors`);
    ``max_error`` RANSAC inlier threshold in pixels of the keypoint images; ``min_inliers`` per
    view pair; ``min_trials``/``max_trials`` bound the RANSAC iterations; ``seed`` makes RANSAC
    reproducible.

    The defaults were chosen on 8 generated scenes at 256x192 (seed 2000, not a benchmark
    scene) with true depth and intrinsics: a 1 px threshold instead of COLMAP's 4 px raised
    AUC@5 from 0.73 / 0.69 / 0.55 to 1.00 / 0.93 / 0.80 at 2 / 4 / 8 neighbouring ring views;
    at most 2,000 RANSAC trials instead of COLMAP's 100,000 gave 0.90 / 0.94 / 0.80 in 40 % of
    the time. Later, on the COLMAP benchmark's pairs (4 scenes, 16 views, 181 verified pairs),
    40..500 trials instead of 100..2,000 left every pair's rotation error where it was (same
    share under 1 and 5 degrees against the true poses) and took 42 % less RANSAC time: the
    pairs that fail (a few dozen matches, no consistent pose) had run all 2,000 trials, and
    most pairs have 75-95 % inliers, which COLMAP's adaptive stopping needs ~30 trials for.

    ``sift``: ``"opencv"`` (default; ``contrast_threshold``) or ``"colmap"`` (pycolmap, as the
    COLMAP baseline extracts; ``first_octave`` -1 runs it on the images doubled, 0 was 3x
    faster but AUC@5 fell from 0.84 to 0.46 at 4 views). On the COLMAP benchmark (256x192, one
    thread) OpenCV's took 31 ms per image against pycolmap's 95 ms, at a small accuracy cost
    (known intrinsics, with the default 5 pairs per view: AUC@5 0.85 / 0.98 / 0.98 / 0.94 at
    2 / 4 / 8 / 16 views, against 1.00 at each with pycolmap's SIFT and all pairs).
    ``max_pairs_per_view`` > 0 fits essential matrices only to each view's best pairs
    (:func:`candidate_pairs`; 0: all pairs): 5 kept every pair up to 6 views and at 16 views
    cut the time by a quarter or more; 4 (the default) left AUC@5 at 8 views where 5 had it
    and at 16 views gave 0.955 / 0.600 against 0.952 / 0.596 (benchmark scenes / 4 scenes of
    seed 2000), with ~10 % fewer pairs to verify and adjust. ``bundle_adjustment`` refines the
    chained poses (``ba_rounds`` rounds of at most ``ba_max_iterations`` Ceres iterations; 25
    gave the accuracy of 100 in half the time), dropping observations that reproject further
    than ``max_reprojection_error`` pixels before each round (before the first, scaled up by
    the longer side over 256 pixels: :func:`~pixio_3d.sfm.bundle_adjust.first_round_error`);
    ``focal_ba_rounds`` rounds where
    it also refines the focal lengths (predicted intrinsics), each re-triangulating with the
    last round's focal lengths; where they moved by more than 2 % (median), the pairs'
    essential matrices are fitted again with them, chained and adjusted again, up to
    ``focal_passes`` times in all. On the COLMAP benchmark's
    16-view scenes (predicted intrinsics, the demo network) AUC@5 was 0.30 / 0.17 with one
    pass of 2 rounds, 0.45 / 0.24 with 3 and 0.54 / 0.24 with 4 rounds, and 0.69 / 0.32 with
    2 passes of 2 rounds (benchmark scenes / 4 scenes of seed 2000).
    """

    def __post_init__(self) -> None:
        if self.sift not in SIFT_BACKENDS:
            raise ValueError(f"sift must be one of {SIFT_BACKENDS}, got {self.sift!r}")
        if self.match_precision not in MATCH_PRECISIONS:
            raise ValueError(
                f"match_precision must be one of {MATCH_PRECISIONS}, got {self.match_precision!r}"
            )

    max_features: int = 4096
    sift: str = "opencv"
    contrast_threshold: float = 0.02
    first_octave: int = -1
    ratio: float = 0.8
    match_precision: str = "auto"
    max_error: float = 1.0
    min_inliers: int = MIN_INLIERS
    min_trials: int = 40
    max_trials: int = 500
    seed: int = 0
    max_pairs_per_view: int = 4
    bundle_adjustment: bool = True
    ba_rounds: int = 2
    focal_ba_rounds: int = 2
    focal_passes: int = 2
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


DEFAULT_FEATURE_SETTINGS = FeatureSettings()
