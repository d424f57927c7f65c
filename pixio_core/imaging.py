"""The encoder contract's input, once for the whole project: ImageNet mean/std normalization.

Every consumer of a Pixio encoder (pre-training data, 3D models, robot features, robomimic,
probes) feeds it RGB in ``[0, 1]`` normalized per channel with ImageNet's statistics; this
module is the one place that knows them.
"""

from __future__ import annotations

import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "denormalize_images", "normalize_images"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if images.ndim < 3 or images.shape[-3] != 3:
        raise ValueError(f"expected RGB images (..., 3, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"expected float images in [0, 1], got {images.dtype} (divide uint8 by 255 first)"
        )
    mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return mean, std


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` float RGB in ``[0, 1]`` -> ImageNet mean/std normalized."""
    mean, std = _statistics(images)
    return (images - mean) / std


def denormalize_images(images: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalized ``(..., 3, H, W)`` -> RGB in ``[0, 1]`` (clamped)."""
    mean, std = _statistics(images)
    return (images * std + mean).clamp(0, 1)
