"""``matches``: camera poses from the model's own patch matches and camera-frame points.

For every view ``v >= 1`` and every patch, the pose-matching logits give its best match in view 0
(mutual nearest neighbours only, when there are enough of them); the model's camera-frame points
at the two patch centres form a 3D-3D correspondence. A weighted rigid Procrustes fit (Kabsch,
:func:`pixio_3d.geometry.umeyama` without scale), re-weighted a few times with a Cauchy weight of
the residuals (iteratively reweighted least squares), gives view ``v``'s camera-to-world pose in
the frame of view 0. This is how DUSt3R/MASt3R-style pipelines read poses from pointmaps; it
uses depth and matches, the two outputs that are supervised per pixel / per patch, instead of a
pose regressed from pooled features.

Views with fewer than ``MIN_MATCHES`` usable matches keep the pose they were given (the head's).
"""

from __future__ import annotations

import torch

from pixio_3d.geometry import patch_centres, umeyama

__all__ = ["MIN_MATCHES", "poses_from_matches"]

MIN_MATCHES = 6


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
