"""The heads of :class:`~pixio_3d.models.mapanything.MapAnythingModel`, UniCeption's modules
under MapAnything's parameter names: the DPT (``dpt_feature_head`` fuses four token maps into
one feature map, ``dpt_regressor_head`` regresses the per-pixel channels at the image size),
the ``pose_head`` (1x1 residual convs, pooling, MLP: translation and quaternion per view) and
the ``scale_head`` (MLP on the scale token), and the adaptors that turn their raw channels into
rays, depth, confidence and the metric scale (:func:`dense_adaptor`, :func:`positive`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "POSITIVE_MODES",
    "DPTFeatureHead",
    "DPTRegressor",
    "PoseRegressionHead",
    "ScaleMLPHead",
    "UnsupportedReconstructionConfig",
    "dense_adaptor",
    "positive",
    "released_pose_head_width",
]

POSITIVE_MODES = ("exp", "linear", "square")


class UnsupportedReconstructionConfig(ValueError):
    """A MapAnything configuration this implementation does not build (named in the message)."""


class _ResidualConvUnit(nn.Module):
    """ReLU, 3x3 conv, ReLU, 3x3 conv, plus the input."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place where the input is a fresh conv output (the same values, ~4 % off a 16-view
        # CPU pass of the demo network: no new bf16 buffer per activation)
        return self.conv2(F.relu(self.conv1(F.relu(x)), inplace=True)) + x


class _FusionBlock(nn.Module):
    """``out_conv(up2(unit2(x + unit1(skip))))``; the deepest block has no skip (no ``unit1``)."""

    def __init__(self, features: int, with_skip: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if with_skip:
            self.resConfUnit1 = _ResidualConvUnit(features)
        self.resConfUnit2 = _ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTFeatureHead(nn.Module):
    """Four token maps at 1/p resolution to one ``feature_dim`` map at 8/p resolution.

    Map ``i`` is reassembled (1x1 conv, then x4 / x2 transposed conv, identity or a stride-2
    conv) and projected by ``scratch.layer{i+1}_rn``; fusion runs from the deepest map up.
    ``scratch.layer_rn`` and ``input_process.{i}.1`` are the same convs (the released keys hold
    all three names).
    """

    def __init__(
        self, input_dims: Sequence[int], layer_dims: Sequence[int], feature_dim: int
    ) -> None:
        super().__init__()
        self.scratch = nn.Module()
        convs = [nn.Conv2d(d, feature_dim, 3, padding=1, bias=False) for d in layer_dims]
        for i, conv in enumerate(convs):
            setattr(self.scratch, f"layer{i + 1}_rn", conv)
        self.scratch.layer_rn = nn.ModuleList(convs)
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", _FusionBlock(feature_dim, with_skip=i < 4))
        d0, d1, d2, d3 = layer_dims
        resample = [
            nn.Sequential(nn.Conv2d(input_dims[0], d0, 1), nn.ConvTranspose2d(d0, d0, 4, stride=4)),
            nn.Sequential(nn.Conv2d(input_dims[1], d1, 1), nn.ConvTranspose2d(d1, d1, 2, stride=2)),
            nn.Sequential(nn.Conv2d(input_dims[2], d2, 1)),
            nn.Sequential(
                nn.Conv2d(input_dims[3], d3, 1), nn.Conv2d(d3, d3, 3, stride=2, padding=1)
            ),
        ]
        self.input_process = nn.ModuleList(
            nn.Sequential(r, conv) for r, conv in zip(resample, convs, strict=True)
        )

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        layers = [process(m) for process, m in zip(self.input_process, maps, strict=True)]
        s = self.scratch
        path = s.refinenet4(layers[3])[:, :, : layers[2].shape[2], : layers[2].shape[3]]
        path = s.refinenet3(path, layers[2])
        path = s.refinenet2(path, layers[1])
        return s.refinenet1(path, layers[0])


class DPTRegressor(nn.Module):
    """3x3 conv, bilinear resize to the image size, 3x3 conv, ReLU, 1x1 conv to the outputs."""

    def __init__(
        self, input_dim: int, output_dim: int, hidden: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        h0, h1 = hidden if hidden is not None else (input_dim // 2, input_dim // 2)
        self.conv1 = nn.Conv2d(input_dim, h0, 3, padding=1)
        self.conv2 = nn.Sequential(
            nn.Conv2d(h0, h1, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(h1, output_dim, 1)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(self.conv1(x), size=size, mode="bilinear", align_corners=True)
        return self.conv2(x)


class _ResConv1x1(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.head_skip = nn.Identity()
        self.res_conv1 = nn.Conv2d(channels, channels, 1)
        self.res_conv2 = nn.Conv2d(channels, channels, 1)
        self.res_conv3 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.res_conv1(x), inplace=True)
        y = F.relu(self.res_conv3(F.relu(self.res_conv2(y), inplace=True)), inplace=True)
        return self.head_skip(x) + y


def released_pose_head_width(patch_size: int) -> int:
    """The released pose head's width: ``4 p^2`` channels (1,024 for 16-px patches)."""
    return 4 * patch_size**2


class PoseRegressionHead(nn.Module):
    """Final view features ``(N, C, h, w)`` to ``(N, 7)``: translation (3) and an unnormalized
    quaternion (x, y, z, w): a 1x1 conv to ``width`` channels (default: the released
    :func:`released_pose_head_width`), 1x1 residual blocks, average pooling, a 2-layer MLP and
    two linears."""

    def __init__(
        self, input_dim: int, patch_size: int, blocks: int, width: int | None = None
    ) -> None:
        super().__init__()
        width = width or released_pose_head_width(patch_size)
        self.proj = nn.Conv2d(input_dim, width, 1)
        self.res_conv = nn.ModuleList(_ResConv1x1(width) for _ in range(blocks))
        self.more_mlps = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU()
        )
        self.fc_t = nn.Linear(width, 3)
        self.fc_rot = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        for block in self.res_conv:
            x = block(x)
        x = self.more_mlps(x.mean(dim=(2, 3)))
        return torch.cat([self.fc_t(x), self.fc_rot(x)], dim=-1)


class ScaleMLPHead(nn.Module):
    """Tokens ``(B, T, C)`` to ``(B, T, out)``: a linear, ``layers`` x (linear, ReLU), a linear."""

    def __init__(self, input_dim: int, hidden: int, layers: int, output_dim: int = 1) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden)
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU()) for _ in range(layers)
        )
        self.output_proj = nn.Linear(hidden, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        for layer in self.mlp:
            x = layer(x)
        return self.output_proj(x)


def positive(x: torch.Tensor, mode: str, vmin: float = 0.0) -> torch.Tensor:
    """MapAnything's depth / scale activation: ``exp``, ``linear`` or ``square``, then clipped
    below at ``vmin``."""
    if mode == "exp":
        x = torch.exp(x)
    elif mode == "square":
        x = x.square()
    elif mode != "linear":
        raise UnsupportedReconstructionConfig(f"unknown mode {mode!r}; known: {POSITIVE_MODES}")
    return x.clamp(min=vmin)


def dense_adaptor(
    channels: torch.Tensor, depth_mode: str, confidence_vmin: float
) -> dict[str, torch.Tensor]:
    """The 6 regressed channels ``(N, 6, H, W)`` to unit ray directions ``(N, H, W, 3)``, depth
    along the ray, confidence ``vmin + exp`` and the non-ambiguity mask logits ``(N, H, W)``."""
    rays, depth, conf, mask = torch.split(channels, [3, 1, 1, 1], dim=1)
    rays = rays / rays.norm(dim=1, keepdim=True).clamp(min=1e-8)
    return {
        "ray_directions": rays.permute(0, 2, 3, 1),
        "depth_along_ray": positive(depth, depth_mode)[:, 0],
        "conf": confidence_vmin + conf.exp()[:, 0],
        "non_ambiguous_mask_logits": mask[:, 0],
    }
