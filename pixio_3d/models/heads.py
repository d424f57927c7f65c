"""Heads of the reconstruction model besides the DPT head: the pose head and the soft matches
to view 0 that feed it (a flow field, see :mod:`pixio_3d.models.reconstruction`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from pixio_core.models.dpt import ResidualConvUnit

__all__ = ["PoseHead", "soft_matches"]


class PoseHead(nn.Module):
    """Per-view map ``(N, C, h, w)`` -> unit quaternion ``(N, 4)`` (w >= 0), translation (N, 3)."""

    def __init__(self, width: int, hidden_dim: int) -> None:
        super().__init__()
        self.refine = nn.Sequential(ResidualConvUnit(width), ResidualConvUnit(width))
        self.mlp = Mlp(width, hidden_dim, 7)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.refine(feature_map).mean(dim=(-2, -1))
        out = self.mlp(pooled)
        # bias toward the identity rotation so an untrained head starts from "no rotation"
        quats = out[:, :4] + out.new_tensor([1.0, 0.0, 0.0, 0.0])
        quats = F.normalize(quats, dim=-1)
        quats = torch.where(quats[:, :1] < 0, -quats, quats)
        return quats, out[:, 4:]


def soft_matches(
    features: torch.Tensor, log_scale: torch.Tensor, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft matches of every view's (projected) patch features ``(B, V, h*w, D)`` in view 0.

    The cosine similarity of centred features, times ``exp(log_scale)`` (at most 100), gives the
    match logits ``(B, V, h*w, h*w)``; their softmax gives each patch's expected match position
    in view 0. Returns per patch that position minus its own (normalized coordinates in
    [-1, 1], as (x, y)) and the match probability's peak, ``(B, V, h*w, 3)``, and the logits.
    """
    # frozen encoder tokens share a large common component (mean cosine 0.87 between
    # patches): centre each view's tokens so that the similarity sees what differs between patches
    features = F.normalize(features - features.mean(dim=-2, keepdim=True), dim=-1)
    scale = log_scale.exp().clamp(max=100.0)
    similarity = scale * features @ features[:, :1].transpose(-1, -2)  # (B, V, P, P)
    probability = similarity.softmax(dim=-1)
    rows, cols = torch.meshgrid(
        torch.linspace(-1, 1, grid[0], device=features.device, dtype=features.dtype),
        torch.linspace(-1, 1, grid[1], device=features.device, dtype=features.dtype),
        indexing="ij",
    )
    coords = torch.stack([cols.flatten(), rows.flatten()], dim=-1)  # (P, 2) as (x, y)
    flow = probability @ coords - coords
    return torch.cat([flow, probability.amax(dim=-1, keepdim=True)], dim=-1), similarity
