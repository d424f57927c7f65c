"""What a reconstruction says about itself in ``summary.json``: the cameras, the metric scale
and how reliable it is, the depth fit, what the network is, and the inputs that could not be
placed with confidence (duplicates, no baseline, too few matches)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pixio_3d.data.photos import LoadedPhotos
from pixio_3d.models import ReconstructionModel

__all__ = [
    "build_summary",
    "degenerate_inputs",
    "metric_scale_report",
    "model_note",
    "reprojection_error_entry",
]

SCALE_SPREAD_GOOD, SCALE_SPREAD_FAIR = 1.15, 1.4


def reprojection_error_entry(prediction: dict[str, np.ndarray]) -> dict[str, float]:
    """The features solver's bundle-adjustment error (working pixels), when one ran."""
    error = prediction.get("pose_reprojection_error")
    if error is None or not np.isfinite(error):
        return {}
    return {"bundle_adjustment_reprojection_error_px": float(error)}


MIN_BASELINE = 0.01  # camera distance over the median depth below which a view adds no depth


DUPLICATE_DIFFERENCE = 1.0  # mean absolute difference (0..255) of two views that are one photo


def degenerate_inputs(
    colors: np.ndarray, prediction: dict[str, np.ndarray], names: list[str], pose_solver: str
) -> list[str]:
    """Warnings for inputs that cannot be placed with confidence: duplicate photos, views with
    no baseline to any other, views the geometry could not place (too few matches)."""
    warnings_found = []
    views = len(names)
    flat = colors.reshape(views, -1).astype(np.int16)
    for i in range(views):
        for j in range(i + 1, views):
            if np.abs(flat[i] - flat[j]).mean() < DUPLICATE_DIFFERENCE:
                warnings_found.append(
                    f"{names[j]} duplicates {names[i]}: one photo twice adds no geometry "
                    "(its camera repeats the other's)"
                )
    guessed = _guessed_cameras(prediction, pose_solver)
    if views > 1:
        centres = prediction["camera_poses"][:, :3, 3]
        depth = prediction["depth_z"]
        scale = (
            float(np.median(depth[np.isfinite(depth) & (depth > 0)])) if np.any(depth > 0) else 1.0
        )
        distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        np.fill_diagonal(distances, np.inf)
        distances[guessed] = distances[:, guessed] = np.inf  # their own warning says so
        for view in np.flatnonzero(distances.min(axis=1) < MIN_BASELINE * scale):
            warnings_found.append(
                f"{names[view]} has no baseline to any other photo (camera within "
                f"{MIN_BASELINE:.0%} of the scene depth): taken from the same spot, it adds no "
                "depth"
            )
    if pose_solver == "given" and "pose_support" in prediction:
        unseen = [names[v] for v in range(views) if prediction["pose_support"][v] <= 0]
        if unseen:
            warnings_found.append(
                f"{len(unseen)} photo(s) see no point triangulated from the given cameras "
                f"({', '.join(unseen[:5])}{'...' if len(unseen) > 5 else ''}): their depth keeps "
                "the network's scale, unchecked"
            )
    elif pose_solver != "head" and "pose_support" in prediction:
        root = chain_root(prediction)
        unplaced = [names[v] for v in np.flatnonzero(guessed) if v > 0]  # view 0: the frame
        if root:
            group = int(np.count_nonzero(prediction["pose_main_group"]))
            warnings_found.append(
                f"{names[0]} shares too few matches with the largest group of photos ({group}, "
                f"chained from {names[root]}): that group is posed by geometry among itself, but "
                f"where it sits relative to {names[0]} (the output's frame) is the network's "
                f"guess of {names[root]}'s camera"
            )
        if unplaced:
            warnings_found.append(
                f"{len(unplaced)} photo(s) share too few matches with the others to be placed by "
                f"geometry ({', '.join(unplaced[:5])}{'...' if len(unplaced) > 5 else ''}): "
                "their cameras are the network's guess"
            )
        warnings_found += _weakly_tied(prediction, names)
    return warnings_found


def _guessed_cameras(prediction: dict[str, np.ndarray], pose_solver: str) -> np.ndarray:
    """``(V,)`` True for views whose camera is the network's guess where a geometric solver
    placed the others: a baseline measured to such a camera means nothing."""
    support = prediction.get("pose_support")
    views = len(prediction["camera_poses"])
    if pose_solver in ("head", "given") or support is None:
        return np.zeros(views, dtype=bool)
    root = chain_root(prediction)
    placed = np.asarray(support) > 0
    placed[root] = True  # the chain's root (view 0 unless it was outside the group)
    return ~placed


def chain_root(prediction: dict[str, np.ndarray]) -> int:
    """The view the features solver chained the cameras from (0 unless the first photo was
    outside the largest group of photos that share matches)."""
    return int(prediction.get("pose_chain_root", 0))


MIN_MULTI_VIEW = 10  # observations of points seen by 3+ views that tie a view's distance


def _weakly_tied(prediction: dict[str, np.ndarray], names: list[str]) -> list[str]:
    """Placed views whose points are (almost) all seen by one other view only: two-view points
    leave the view's distance along that baseline free, so the network's depth sets it."""
    multi_view = prediction.get("pose_multi_view")
    if multi_view is None or (multi_view < 0).any():
        return []
    root = chain_root(prediction)
    placed = [v for v in range(len(names)) if v == root or prediction["pose_support"][v] > 0]
    if len(placed) < 3:  # two views: one baseline, its length is the metric scale anyway
        return []
    weak = [names[v] for v in placed if multi_view[v] < MIN_MULTI_VIEW]
    if not weak:
        return []
    return [
        f"{len(weak)} photo(s) share almost no points with two other photos "
        f"({', '.join(weak[:5])}{'...' if len(weak) > 5 else ''}): their distance from the others "
        "comes from the network's depth, not from the geometry (add photos between them)"
    ]


SMALL_ENCODER_WIDTH = 768  # below ViT-B: our CPU sizes, no released weights


def model_note(model: ReconstructionModel) -> dict[str, Any]:
    """What the network is, said plainly: a small CPU-sized model's depth is only a prior."""
    width = int(model.encoder.embed_dim)
    parameters = sum(p.numel() for p in model.parameters())
    note = {"encoder_width": width, "parameters": parameters, "small": width < SMALL_ENCODER_WIDTH}
    if note["small"]:
        note["note"] = (
            f"a small CPU-sized model (encoder width {width}, {parameters / 1e6:.1f} M "
            "parameters): its depth is only a prior; the cameras come from the geometry (SIFT "
            "and bundle adjustment) and the dense depth is fitted to the SfM points"
        )
    return note


def finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def metric_scale_report(prediction: dict[str, np.ndarray], given: bool = False) -> dict[str, Any]:
    """How far the metric scale can be trusted: from the network's depth against the bundle
    adjustment's points over all views and pairs (their median sets the scale; the spread is
    ``exp(IQR of the log ratios)``), or only the network's own guess."""
    if given:
        spread = prediction.get("metric_scale_spread")
        return {
            "source": "the given cameras: depth is in their units",
            "network_spread": None if spread is None or not np.isfinite(spread) else float(spread),
            "reliability": "given",
        }
    spread = prediction.get("metric_scale_spread")
    if spread is None or not np.isfinite(spread):
        return {
            "source": "the network's scale token alone (no bundle adjustment ran)",
            "spread": None,
            "reliability": "unknown",
        }
    spread = float(spread)
    reliability = (
        "good" if spread <= SCALE_SPREAD_GOOD else "fair" if spread <= SCALE_SPREAD_FAIR else "poor"
    )
    return {
        "source": "median of the network's depth over the SfM points' depth, all views",
        "spread": spread,
        "reliability": reliability,
        "meaning": "the middle half of the depth ratios lie within a factor of spread; good "
        f"<= {SCALE_SPREAD_GOOD}, fair <= {SCALE_SPREAD_FAIR}, else poor",
    }


def build_summary(
    photo_dir: Path,
    out_dir: Path,
    photos: LoadedPhotos,
    stems: list[str],
    prediction: dict[str, np.ndarray],
    intrinsics_source: str,
    given_poses: bool = False,
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
        if "pose_multi_view" in prediction and prediction["pose_multi_view"][view] >= 0:
            per_photo[-1]["multi_view_points"] = int(prediction["pose_multi_view"][view])
        if "depth_fit_points" in prediction:
            per_photo[-1]["depth_fit"] = {
                "sfm_points": int(prediction["depth_fit_points"][view]),
                "error_before": finite_or_none(prediction["depth_fit_error_before"][view]),
                "error_after": finite_or_none(prediction["depth_fit_error_after"][view]),
            }
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
        "metric_scale": metric_scale_report(prediction, given=given_poses),
        **reprojection_error_entry(prediction),
        **(
            {"cameras_chained_from": str(photos.paths[root])}
            if (root := chain_root(prediction))
            else {}
        ),
        "skipped": [{"path": str(p), "reason": reason} for p, reason in photos.skipped],
        "photos": per_photo,
    }
