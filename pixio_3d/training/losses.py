"""Training losses: MapAnything-style factored geometry, monocular depth and segmentation.

Multi-view (:class:`ReconstructionLoss`), following MapAnything's recipe:

* Ground truth comes from the dataset batch (``depth`` z-depth in metres, ``valid``,
  ``intrinsics``, ``cam2world``) and is re-expressed in the frame of view 0.
* Prediction and ground truth are each normalized by their own average norm of the world points
  over the valid ground-truth pixels (the "avg-dis" factor), so geometry terms are invariant to
  the prediction's scale; the metric scale is learned by a separate term.
* Geometry is compared in log space: a vector ``x`` becomes ``x / |x| * log(1 + |x|)``, which for
  scalars is ``sign(x) log(1 + |x|)``.
* Per-pixel / per-view errors go through Barron's general robust loss
  ``rho(e) = |a-2|/a * ((e^2/c^2 / |a-2| + 1)^(a/2) - 1)`` with ``a = 0.5``, ``c = 0.05``.
* The world-pointmap term is confidence weighted, DUSt3R-style: ``C * rho - alpha * log C``.
* The metric-scale term compares ``log(m * sg(z_pred))`` with ``log(z_gt)``: gradients reach the
  scale head only, never the geometry.
* For models with ``pose_matching``, a cross-entropy term supervises the soft patch matches to
  view 0 with the true correspondences (:class:`MatchLoss`, :func:`match_targets`).

Each term is a small module returning a scalar; :class:`ReconstructionLoss` weights and sums them.
Monocular depth: :class:`ScaleShiftInvariantLoss` (relative) and :class:`SiLogLoss` (metric);
segmentation: :class:`SegmentationLoss`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixio_3d.geometry import (
    average_point_norm,
    depth_along_ray_from_z,
    patch_centres,
    points_from_z_depth,
    pose_from_quaternion_translation,
    quaternion_translation_from_pose,
    ray_directions,
    relative_poses,
    transform_points,
)

EPS = 1e-6
BATCH_KEYS = ("depth", "valid", "intrinsics", "cam2world")


# ------------------------------------------------------------------ elementary functions
def log_norm(x: torch.Tensor) -> torch.Tensor:
    """Log-compress the length of vectors ``(..., 3)``: ``x / |x| * log(1 + |x|)``."""
    norm = x.norm(dim=-1, keepdim=True)
    return x * (torch.log1p(norm) / norm.clamp_min(EPS))


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log(1 + |x|)``, elementwise."""
    return torch.sign(x) * torch.log1p(x.abs())


def robust_regression(squared_error: torch.Tensor, alpha: float, scale: float) -> torch.Tensor:
    """Barron's general robust loss of the squared error ``e^2`` (``alpha`` not 0 or 2).

    Near zero it behaves like ``e^2 / (2 c^2)``; for large errors like ``|e|^alpha``.
    """
    offset = abs(alpha - 2.0)
    return offset / alpha * ((squared_error / scale**2 / offset + 1.0) ** (alpha / 2.0) - 1.0)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the samples (dim 0) of each sample's mean of ``values`` where ``mask`` is true;
    samples without a valid pixel are left out (0 if no sample has one).

    Every scene weighs the same whatever its count of valid pixels, so the loss of a batch is the
    mean of its samples' losses, and DDP's average over equal per-rank batches gives exactly the
    one-process loss and gradient.
    """
    mask = mask.to(values.dtype)
    total = (values * mask).flatten(1).sum(1)
    count = mask.flatten(1).sum(1)
    has_pixels = count > 0
    per_sample = total / count.clamp_min(1.0)
    return (per_sample * has_pixels).sum() / has_pixels.sum().clamp_min(1)


# ------------------------------------------------------------------ targets and normalization
def reconstruction_targets(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ground truth in the frame of view 0, normalized by the average norm of valid world points.

    ``batch``: ``depth (B, V, H, W)`` z-depth in metres, ``valid (B, V, H, W)`` bool,
    ``intrinsics (B, V, 3, 3)``, ``cam2world (B, V, 4, 4)``.
    Returns ``pts3d``, ``pts3d_cam (B, V, H, W, 3)``, ``depth_along_ray (B, V, H, W)`` and
    ``cam_trans (B, V, 3)`` divided by ``norm_factor (B,)`` (metres), plus unnormalized
    ``ray_directions``, ``cam_quats (B, V, 4)``, ``intrinsics`` and ``valid``.
    """
    missing = [key for key in BATCH_KEYS if key not in batch]
    if missing:
        raise ValueError(f"the batch lacks {missing}; expected keys {list(BATCH_KEYS)}")
    depth, intrinsics = batch["depth"], batch["intrinsics"]
    valid = batch["valid"].bool() & (depth > 0)
    height, width = depth.shape[-2:]
    poses = relative_poses(batch["cam2world"])
    points_cam = points_from_z_depth(depth, intrinsics)
    points = transform_points(poses, points_cam)
    quats, trans = quaternion_translation_from_pose(poses)
    return {
        **_normalized_geometry(
            points, points_cam, depth_along_ray_from_z(depth, intrinsics), trans, valid
        ),
        "cam_quats": quats,
        "ray_directions": ray_directions(intrinsics, height, width),
        "intrinsics": intrinsics,
        "valid": valid,
    }


def _normalized_geometry(
    points: torch.Tensor,
    points_cam: torch.Tensor,
    depth_along_ray: torch.Tensor,
    cam_trans: torch.Tensor,
    valid: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Points, depth and translations divided by the average norm of each scene's valid world
    points (``norm_factor (B,)``), the normalization both targets and predictions use."""
    batch_size = points.shape[0]
    norm = average_point_norm(points.reshape(batch_size, -1, 3), valid.reshape(batch_size, -1))
    norm = norm.clamp_min(EPS)
    return {
        "pts3d": points / norm[:, None, None, None, None],
        "pts3d_cam": points_cam / norm[:, None, None, None, None],
        "depth_along_ray": depth_along_ray / norm[:, None, None, None],
        "cam_trans": cam_trans / norm[:, None, None],
        "norm_factor": norm,
    }


def normalized_prediction(
    prediction: dict[str, torch.Tensor], valid: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The model's factored output as points, normalized by their average norm over ``valid``.

    ``prediction`` holds ``ray_directions``, ``depth_along_ray``, ``cam_quats``, ``cam_trans``
    (up to scale, see :class:`pixio_3d.models.ReconstructionModel`), ``conf`` and
    ``metric_scaling_factor``.
    """
    rays, depth = prediction["ray_directions"], prediction["depth_along_ray"]
    points_cam = rays * depth.unsqueeze(-1)
    poses = pose_from_quaternion_translation(prediction["cam_quats"], prediction["cam_trans"])
    points = transform_points(poses, points_cam)
    extra = {key: prediction[key] for key in ("match_logits",) if key in prediction}
    return {
        **extra,
        **_normalized_geometry(points, points_cam, depth, prediction["cam_trans"], valid),
        "cam_quats": prediction["cam_quats"],
        "ray_directions": rays,
        "conf": prediction["conf"],
        "metric_scaling_factor": prediction["metric_scaling_factor"],
    }


def match_targets(
    points: torch.Tensor,
    valid: torch.Tensor,
    intrinsics: torch.Tensor,
    grid: tuple[int, int],
    occlusion_tolerance: float = 0.05,
) -> torch.Tensor:
    """The true match in view 0 of every patch: ``(B, V, h*w)`` patch indices, -1 where none.

    ``points (B, V, H, W, 3)`` are world points in the camera frame of view 0 (any scale),
    ``valid (B, V, H, W)``, ``intrinsics (B, V, 3, 3)`` and ``grid = (h, w)`` the patch grid. The
    point seen at a patch's centre pixel is projected into view 0; its match is the patch it lands
    in, if it lands inside the image, in front of the camera, and is not hidden there (its z is at
    most ``1 + occlusion_tolerance`` times view 0's z-depth at that pixel).
    """
    height, width = points.shape[2:4]
    patch_h, patch_w = height // grid[0], width // grid[1]
    centres = patch_centres(points, grid)  # (B, V, P, 3)
    source_valid = patch_centres(valid.unsqueeze(-1), grid)[..., 0]
    projected = (intrinsics[:, :1, None] @ centres.unsqueeze(-1)).squeeze(-1)
    z = centres[..., 2]
    in_front = z > EPS
    u = projected[..., 0] / z.clamp_min(EPS)
    v = projected[..., 1] / z.clamp_min(EPS)
    inside = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    pixel_col = u.clamp(0, width - 1).long()
    pixel_row = v.clamp(0, height - 1).long()
    reference_z = points[:, 0, ..., 2].flatten(1)  # view 0's camera frame is the world frame
    reference_valid = valid[:, 0].flatten(1)
    pixel = (pixel_row * width + pixel_col).flatten(1)
    seen_z = reference_z.gather(1, pixel).reshape(z.shape)
    seen_valid = reference_valid.gather(1, pixel).reshape(z.shape)
    visible = seen_valid & (z <= seen_z * (1.0 + occlusion_tolerance))
    index = (pixel_row // patch_h) * grid[1] + pixel_col // patch_w
    return torch.where(source_valid & inside & visible, index, torch.full_like(index, -1))


# ------------------------------------------------------------------ loss terms
class _RobustTerm(nn.Module):
    def __init__(self, alpha: float = 0.5, scale: float = 0.05, log_space: bool = True) -> None:
        super().__init__()
        if alpha in (0.0, 2.0) or scale <= 0:
            raise ValueError(
                f"robust loss needs alpha not in (0, 2) and scale > 0, got {alpha}, {scale}"
            )
        self.alpha, self.scale, self.log_space = alpha, scale, log_space

    def rho(self, squared_error: torch.Tensor) -> torch.Tensor:
        return robust_regression(squared_error, self.alpha, self.scale)

    def vector(self, x: torch.Tensor) -> torch.Tensor:
        return log_norm(x) if self.log_space else x

    def scalar(self, x: torch.Tensor) -> torch.Tensor:
        return signed_log(x) if self.log_space else x


class PointmapLoss(_RobustTerm):
    """Robust log-space error of normalized points ``key`` (``pts3d`` world or ``pts3d_cam``).

    With ``confidence_alpha`` set, the per-pixel loss is ``C * rho - confidence_alpha * log C``.
    """

    def __init__(
        self, key: str = "pts3d", confidence_alpha: float | None = None, **robust: float
    ) -> None:
        super().__init__(**robust)
        if key not in ("pts3d", "pts3d_cam"):
            raise ValueError(f"PointmapLoss key must be 'pts3d' or 'pts3d_cam', got {key!r}")
        self.key, self.confidence_alpha = key, confidence_alpha

    def forward(
        self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        error = (self.vector(pred[self.key]) - self.vector(target[self.key])).square().sum(-1)
        loss = self.rho(error)
        if self.confidence_alpha is not None:
            conf = pred["conf"]
            loss = conf * loss - self.confidence_alpha * torch.log(conf)
        return masked_mean(loss, target["valid"])


class RayDirectionLoss(_RobustTerm):
    """Robust error of unit ray directions, over every pixel (rays exist without depth)."""

    def forward(
        self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        error = (pred["ray_directions"] - target["ray_directions"]).square().sum(-1)
        return self.rho(error).mean()


class DepthAlongRayLoss(_RobustTerm):
    """Robust log-space error of normalized depth along the ray, over valid pixels."""

    def forward(
        self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        key = "depth_along_ray"
        error = (self.scalar(pred[key]) - self.scalar(target[key])).square()
        return masked_mean(self.rho(error), target["valid"])


class QuaternionLoss(_RobustTerm):
    """Robust error of camera-to-world quaternions, sign-agnostic (``q`` and ``-q`` agree)."""

    def forward(
        self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        q_pred, q_true = pred["cam_quats"], target["cam_quats"]
        error = torch.minimum(
            (q_pred - q_true).square().sum(-1), (q_pred + q_true).square().sum(-1)
        )
        return self.rho(error).mean()


class TranslationLoss(_RobustTerm):
    """Robust log-space error of normalized camera-to-world translations."""

    def forward(
        self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        error = (self.vector(pred["cam_trans"]) - self.vector(target["cam_trans"])).square()
        return self.rho(error.sum(-1)).mean()


class MetricScaleLoss(_RobustTerm):
    """Robust error of ``log(m * sg(z_pred))`` against ``log(z_gt)`` (metres)."""

    def forward(
        self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        metric_norm = pred["metric_scaling_factor"] * pred["norm_factor"].detach()
        error = (torch.log(metric_norm) - torch.log(target["norm_factor"])).square()
        return self.rho(error).mean()


class MatchLoss(nn.Module):
    """Cross-entropy of the model's match logits (every patch of views 1..V-1 against view 0's
    patches) with the true matches of :func:`match_targets`; patches without one are left out.

    MASt3R trains its matching features with a contrastive loss on true correspondences; here the
    supervision sharpens the soft matches whose flow field the pose head reads.
    """

    def forward(
        self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = pred["match_logits"][:, 1:]  # (B, V-1, P, P)
        if logits.shape[1] == 0:  # a single view has nothing to match
            return logits.sum() * 0.0
        height, width = target["valid"].shape[-2:]
        patch = math.isqrt(height * width // logits.shape[-1])
        if patch * patch * logits.shape[-1] != height * width:
            raise ValueError(
                f"match logits over {logits.shape[-1]} patches do not tile a {height}x{width} image"
            )
        grid = (height // patch, width // patch)
        index = match_targets(target["pts3d"], target["valid"], target["intrinsics"], grid)[:, 1:]
        per_patch = F.cross_entropy(
            logits.flatten(0, 2).float(), index.flatten().clamp_min(0), reduction="none"
        ).reshape(index.shape)
        return masked_mean(per_patch, index >= 0)


@dataclass
class ReconstructionLossConfig:
    """Weights of the factored-geometry terms (MapAnything V1.1) and the robust-loss shape."""

    pointmap_weight: float = 1.0
    camera_points_weight: float = 0.1
    depth_weight: float = 0.1
    ray_weight: float = 0.1
    quaternion_weight: float = 0.1
    translation_weight: float = 0.1
    scale_weight: float = 0.1
    match_weight: float = 1.0  # only for models with pose_matching
    robust_alpha: float = 0.5
    robust_scale: float = 0.05
    confidence_alpha: float = 0.2
    log_space: bool = True

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name.endswith("_weight") and value < 0:
                raise ValueError(f"ReconstructionLossConfig.{name} must be >= 0, got {value}")
        if self.robust_alpha in (0.0, 2.0) or self.robust_scale <= 0 or self.confidence_alpha < 0:
            raise ValueError(
                "need robust_alpha not in (0, 2), robust_scale > 0 and confidence_alpha >= 0, got "
                f"{self.robust_alpha}, {self.robust_scale}, {self.confidence_alpha}"
            )


class ReconstructionLoss(nn.Module):
    """Weighted sum of the factored terms. ``forward(prediction, batch) -> (total, terms)``."""

    def __init__(self, config: ReconstructionLossConfig | None = None) -> None:
        super().__init__()
        config = config or ReconstructionLossConfig()
        self.config = config
        robust = {
            "alpha": config.robust_alpha,
            "scale": config.robust_scale,
            "log_space": config.log_space,
        }
        self.terms = nn.ModuleDict(
            {
                "pointmap": PointmapLoss("pts3d", config.confidence_alpha, **robust),
                "camera_points": PointmapLoss("pts3d_cam", None, **robust),
                "depth": DepthAlongRayLoss(**robust),
                "ray": RayDirectionLoss(**robust),
                "quaternion": QuaternionLoss(**robust),
                "translation": TranslationLoss(**robust),
                "scale": MetricScaleLoss(**robust),
                "match": MatchLoss(),
            }
        )
        self.weights = {name: getattr(config, f"{name}_weight") for name in self.terms}

    def forward(
        self, prediction: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``prediction``: :meth:`ReconstructionModel.forward`'s dict; ``batch``: the dataset's.

        Returns the weighted total and each unweighted term (detached). The ``match`` term is
        computed only for predictions with ``match_logits`` (models with ``pose_matching``).
        """
        target = reconstruction_targets(batch)
        pred = normalized_prediction(prediction, target["valid"])
        values = {
            name: term(pred, target)
            for name, term in self.terms.items()
            if name != "match" or "match_logits" in pred
        }
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, {name: value.detach() for name, value in values.items()}


# ------------------------------------------------------------------ monocular depth, segmentation
class ScaleShiftInvariantLoss(nn.Module):
    """MiDaS's scale-and-shift-invariant loss for relative depth (or disparity) maps.

    Per image, prediction and target are each aligned to zero median and unit mean absolute
    deviation over the valid pixels; the loss is the mean absolute difference of the aligned maps.
    Inputs ``(B, H, W)``; invariant to ``a * prediction + b`` for any ``a > 0`` and ``b``.
    """

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        valid = valid.bool().flatten(1)
        aligned_pred = _median_mad_normalize(prediction.flatten(1), valid)
        aligned_target = _median_mad_normalize(target.flatten(1), valid)
        per_pixel = (aligned_pred - aligned_target).abs()
        counts = valid.sum(1)
        per_image = (per_pixel * valid).sum(1) / counts.clamp_min(1)
        return per_image[counts > 0].mean() if bool((counts > 0).any()) else per_image.sum() * 0


def _median_mad_normalize(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` -> ``(x - median) / mean|x - median|`` with statistics over the valid entries."""
    median = torch.where(valid, values, torch.nan).nanmedian(dim=1, keepdim=True).values
    median = torch.nan_to_num(median)
    deviation = ((values - median).abs() * valid).sum(1, keepdim=True)
    deviation = deviation / valid.sum(1, keepdim=True).clamp_min(1)
    return (values - median) / deviation.clamp_min(EPS)


class SiLogLoss(nn.Module):
    """Scale-invariant log loss for metric depth: ``sqrt(mean(g^2) - lam * mean(g)^2)``.

    ``g = log(prediction) - log(target)`` over the valid pixels of the whole batch; ``lam = 0.5``
    as in the Pixio / Depth Anything metric-depth protocol (``lam = 1`` is fully scale-invariant).
    """

    def __init__(self, variance_focus: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= variance_focus <= 1.0:
            raise ValueError(f"variance_focus must lie in [0, 1], got {variance_focus}")
        self.variance_focus = variance_focus

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        valid = valid.bool() & (target > 0)
        log_diff = torch.log(prediction[valid].clamp_min(EPS)) - torch.log(target[valid])
        if log_diff.numel() == 0:
            return prediction.sum() * 0
        variance = log_diff.square().mean() - self.variance_focus * log_diff.mean().square()
        return torch.sqrt(variance.clamp_min(EPS**2))


class SegmentationLoss(nn.Module):
    """Per-pixel cross-entropy of logits ``(B, K, H, W)`` against ids ``(B, H, W)``."""

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels.long(), ignore_index=self.ignore_index)
