"""Dense heads on a frozen encoder: monocular depth and semantic segmentation (the paper's probes).

Features follow the Pixio / DINOv2 protocol: every tapped block is put through the encoder's final
LayerNorm, and the mean of its class tokens is concatenated to each patch token (2D channels).

* **Linear head**: the last block -> ``BatchNorm2d(2D)`` -> 1x1 conv, bilinearly upsampled to the
  image.
* **DPT head**: 4 evenly spaced blocks (7/15/23/31 for a 32-block ViT-H) ->
  :class:`pixio_core.models.dpt.DPTHead`.

Depth: ``mode="relative"`` predicts affine-invariant inverse depth (disparity, ``softplus``), to be
trained with the scale-and-shift-invariant loss; ``mode="metric"`` predicts metres as
``sigmoid * max_depth``, to be trained with SiLog. Segmentation predicts per-class logits.

Images are ``(B, 3, H, W)`` ImageNet-normalized, ``H, W`` multiples of the patch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixio_core.models.dpt import DPTHead, tokens_to_feature_map
from pixio_core.models.encoder import FrozenEncoderEval

HEADS = ("dpt", "linear")
DEPTH_MODES = ("relative", "metric")
DPT_BLOCKS = 4  # evenly spaced blocks tapped by the DPT head


def dense_features(
    encoder: nn.Module,
    images: torch.Tensor,
    layers: int | Sequence[int],
    concat_class_token: bool = True,
) -> list[torch.Tensor]:
    """Patch-grid feature maps ``(B, C, h, w)`` of the requested blocks (final LayerNorm applied).

    ``C`` is ``2 * D`` with the mean class token concatenated, ``D`` without. The encoder runs
    without gradients when all its parameters are frozen.
    """
    frozen = not any(p.requires_grad for p in encoder.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
        outputs = encoder.forward_intermediates(images, layers, norm=True)
    grid = (images.shape[-2] // encoder.patch_size, images.shape[-1] // encoder.patch_size)
    maps = []
    for output in outputs:
        tokens = output["patch_tokens"]
        if concat_class_token:
            pooled = output["cls_tokens"].mean(dim=1, keepdim=True).expand_as(tokens)
            tokens = torch.cat([tokens, pooled], dim=-1)
        maps.append(tokens_to_feature_map(tokens, grid))
    return maps


@dataclass
class DenseHeadConfig:
    """Which head, on which blocks, at which widths (DPT widths of the paper's ViT-L/H probe)."""

    head: str = "dpt"
    concat_class_token: bool = True
    dpt_features: int = 256
    dpt_out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown dense head {self.head!r}; expected one of {HEADS}")
        self.dpt_out_channels = tuple(self.dpt_out_channels)  # type: ignore[assignment]
        if len(self.dpt_out_channels) != 4 or self.dpt_features < 2:
            raise ValueError(
                f"need dpt_features >= 2 and 4 dpt_out_channels, got {self.dpt_features}, "
                f"{self.dpt_out_channels}"
            )


@dataclass(kw_only=True)
class MonoDepthConfig(DenseHeadConfig):
    """Depth head: ``mode`` relative (disparity up to scale and shift) or metric (metres)."""

    mode: str = "relative"
    max_depth: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in DEPTH_MODES:
            raise ValueError(f"unknown depth mode {self.mode!r}; expected one of {DEPTH_MODES}")
        if not self.max_depth > 0:
            raise ValueError(f"max_depth must be positive, got {self.max_depth}")


@dataclass(kw_only=True)
class SegmentationConfig(DenseHeadConfig):
    """Segmentation head with ``num_classes`` outputs (logits)."""

    num_classes: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {self.num_classes!r}")


class LinearDenseHead(nn.Module):
    """``BatchNorm2d(in_channels)`` -> 1x1 conv on the patch grid, upsampled bilinearly."""

    def __init__(self, in_channels: int, output_dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, output_dim, 1)

    def forward(self, feature_map: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, output_dim, *output_size)``."""
        out = self.conv(self.norm(feature_map))
        return F.interpolate(out, size=tuple(output_size), mode="bilinear", align_corners=False)


class DensePredictor(FrozenEncoderEval, nn.Module):
    """A (frozen) encoder + a linear or DPT head: ``(B, 3, H, W)`` -> raw ``(B, K, H, W)``."""

    def __init__(self, encoder: nn.Module, output_dim: int, config: DenseHeadConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config
        channels = encoder.embed_dim * (2 if config.concat_class_token else 1)
        self.layers: int | list[int] = DPT_BLOCKS if config.head == "dpt" else [-1]
        if config.head == "dpt":
            self.head: nn.Module = DPTHead(
                [channels] * 4,
                output_dim,
                features=config.dpt_features,
                out_channels=config.dpt_out_channels,
            )
        else:
            self.head = LinearDenseHead(channels, output_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = dense_features(
            self.encoder, images, self.layers, concat_class_token=self.config.concat_class_token
        )
        size = (images.shape[-2], images.shape[-1])
        return self.head(maps, size) if self.config.head == "dpt" else self.head(maps[-1], size)


class MonoDepthModel(nn.Module):
    """Monocular depth on a frozen encoder: ``forward(images) -> {key: (B, H, W)}``.

    Metric mode returns ``depth`` in metres (``sigmoid * max_depth``); relative mode returns
    ``disparity``, positive (``softplus``) and meaningful only up to scale and shift.
    """

    def __init__(self, encoder: nn.Module, config: MonoDepthConfig) -> None:
        super().__init__()
        self.config = config
        self.predictor = DensePredictor(encoder, 1, config)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raw = self.predictor(images)[:, 0]
        if self.config.mode == "metric":
            return {"depth": torch.sigmoid(raw) * self.config.max_depth}
        return {"disparity": F.softplus(raw)}


class SegmentationModel(nn.Module):
    """Semantic segmentation on a frozen encoder: ``forward(images) -> {"logits": (B, K, H, W)}``"""

    def __init__(self, encoder: nn.Module, config: SegmentationConfig) -> None:
        super().__init__()
        self.config = config
        self.predictor = DensePredictor(encoder, config.num_classes, config)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.predictor(images)}
