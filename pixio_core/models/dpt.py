"""DPT dense prediction head (Ranftl et al., "Vision Transformers for Dense Prediction", 2021).

Our implementation of the paper's structure, as used by Depth Anything, VGGT and MapAnything:

1. **Reassemble**: four token maps ``(B, C_i, h, w)`` on the patch grid are projected (1x1 conv)
   to ``out_channels[i]`` and resampled to a pyramid at 4x, 2x, 1x and 1/2x the patch grid
   (transposed convs up, a stride-2 3x3 conv down).
2. **Fusion**: each level goes through a 3x3 conv to ``features`` channels, then RefineNet-style
   fusion blocks (residual conv units, bilinear upsampling) merge the pyramid top-down.
3. **Output**: a 3x3 conv halves the channels, bilinear upsampling to the requested output size,
   a 3x3 conv to ``hidden_dim``, ReLU and a 1x1 conv to ``output_dim``. No final activation:
   each consumer applies its own (``exp`` for depth, sigmoid x max depth, softmax, ...).

Odd patch grids (e.g. 64x48 images -> a 4x3 grid) are handled by upsampling every fusion step to
the exact size of the next finer level instead of a fixed factor 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PYRAMID_SCALES = (4.0, 2.0, 1.0, 0.5)


def tokens_to_feature_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Reshape patch tokens ``(B, h*w, C)`` (row-major) to a feature map ``(B, C, h, w)``."""
    height, width = grid
    if tokens.ndim != 3 or tokens.shape[1] != height * width:
        raise ValueError(
            f"expected tokens of shape (B, {height * width}, C) for a {height}x{width} grid, "
            f"got {tuple(tokens.shape)}"
        )
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


class ResidualConvUnit(nn.Module):
    """``x + conv3x3(relu(conv3x3(relu(x))))`` at constant width (optionally with BatchNorm)."""

    def __init__(self, features: int, use_batch_norm: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=not use_batch_norm)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=not use_batch_norm)
        self.norm1 = nn.BatchNorm2d(features) if use_batch_norm else nn.Identity()
        self.norm2 = nn.BatchNorm2d(features) if use_batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm1(self.conv1(F.relu(x)))
        out = self.norm2(self.conv2(F.relu(out)))
        return x + out


class FeatureFusionBlock(nn.Module):
    """RefineNet-style fusion: add a refined skip connection, refine, upsample, project (1x1).

    The coarsest block of a DPT head has no skip connection (``with_skip=False``).
    """

    def __init__(self, features: int, use_batch_norm: bool = False, with_skip: bool = True) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(features, use_batch_norm) if with_skip else None
        self.output_unit = ResidualConvUnit(features, use_batch_norm)
        self.project = nn.Conv2d(features, features, 1)

    def forward(
        self,
        x: torch.Tensor,
        skip: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """``x`` and ``skip`` are ``(B, F, h, w)``; the output is upsampled to ``size`` (or 2x)."""
        if (skip is None) != (self.skip_unit is None):
            raise ValueError("pass a skip connection exactly when the block was built with_skip")
        if self.skip_unit is not None:
            x = x + self.skip_unit(skip)
        x = self.output_unit(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.project(x)


class Reassemble(nn.Module):
    """Project a patch-grid map ``(B, C, h, w)`` to ``out_channels``; resample it by ``scale``."""

    def __init__(self, in_channels: int, out_channels: int, scale: float) -> None:
        super().__init__()
        if scale not in PYRAMID_SCALES:
            raise ValueError(f"Reassemble scale must be one of {PYRAMID_SCALES}, got {scale}")
        self.project = nn.Conv2d(in_channels, out_channels, 1)
        if scale > 1:
            factor = int(scale)
            self.resample: nn.Module = nn.ConvTranspose2d(
                out_channels, out_channels, kernel_size=factor, stride=factor
            )
        elif scale == 1:
            self.resample = nn.Identity()
        else:
            self.resample = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resample(self.project(x))


class DPTHead(nn.Module):
    """Four patch-grid feature maps -> a dense ``(B, output_dim, H, W)`` prediction.

    Args:
        in_channels: channels of the four input maps (shallow to deep), e.g. four times the
            encoder width, or twice that when the mean class token is concatenated.
        output_dim: channels of the prediction.
        features: width of the fusion path (256 in the paper's ViT-L/H heads).
        out_channels: widths of the four reassembled levels ((256, 512, 1024, 1024) for ViT-L/H).
        hidden_dim: width of the last 3x3 conv before the 1x1 output conv (32 in DPT).
        use_batch_norm: BatchNorm in the residual conv units (off in Depth Anything).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        output_dim: int,
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        hidden_dim: int = 32,
        use_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(in_channels) != 4 or len(out_channels) != 4:
            raise ValueError(
                "DPTHead needs 4 input levels and 4 out_channels, got "
                f"in_channels={list(in_channels)} "
                f"and out_channels={list(out_channels)}"
            )
        if output_dim < 1 or features < 2 or hidden_dim < 1 or min(out_channels) < 1:
            raise ValueError(
                "DPTHead needs output_dim >= 1, features >= 2, hidden_dim >= 1 and positive "
                f"out_channels, got {output_dim}, {features}, {hidden_dim}, {list(out_channels)}"
            )
        self.output_dim = output_dim
        self.reassemble = nn.ModuleList(
            Reassemble(c_in, c_out, scale)
            for c_in, c_out, scale in zip(in_channels, out_channels, PYRAMID_SCALES, strict=True)
        )
        self.level_convs = nn.ModuleList(
            nn.Conv2d(c_out, features, 3, padding=1, bias=False) for c_out in out_channels
        )
        self.fusion = nn.ModuleList(
            FeatureFusionBlock(features, use_batch_norm, with_skip=level < 3) for level in range(4)
        )
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, hidden_dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_dim, output_dim, 1),
        )

    def forward(
        self, feature_maps: Sequence[torch.Tensor], output_size: tuple[int, int]
    ) -> torch.Tensor:
        """``feature_maps``: four ``(B, C_i, h, w)`` maps on the same patch grid, shallow first.

        Returns ``(B, output_dim, *output_size)``, raw (no activation).
        """
        if len(feature_maps) != 4:
            raise ValueError(f"DPTHead expects 4 feature maps, got {len(feature_maps)}")
        grids = {tuple(m.shape[-2:]) for m in feature_maps}
        if len(grids) != 1:
            raise ValueError(f"DPTHead feature maps must share one patch grid, got {sorted(grids)}")
        levels = [
            conv(reassemble(m))
            for m, reassemble, conv in zip(
                feature_maps, self.reassemble, self.level_convs, strict=True
            )
        ]
        # top-down: the coarsest level (1/2 grid) is fused into each finer one in turn
        path = self.fusion[3](levels[3], size=levels[2].shape[-2:])
        path = self.fusion[2](path, levels[2], size=levels[1].shape[-2:])
        path = self.fusion[1](path, levels[1], size=levels[0].shape[-2:])
        path = self.fusion[0](path, levels[0])
        out = self.output_conv1(path)
        out = F.interpolate(out, size=tuple(output_size), mode="bilinear", align_corners=True)
        return self.output_conv2(out)
