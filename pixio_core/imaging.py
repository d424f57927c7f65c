"""Images in, once for the whole project: the one image reader and the encoder's normalization.

:func:`read_image` decodes any common file to upright 8-bit RGB (pre-training folders and
shards, curation, probes, photos for 3D, scene folders): 16-bit and 32-bit grayscale (scaled,
not clipped), palette, grayscale with alpha, RGBA (composited over white), CMYK, and the EXIF
orientation. Every consumer of a Pixio encoder then feeds it RGB in ``[0, 1]`` normalized per
channel with ImageNet's statistics (:func:`normalize_images`); this module is the one place that
knows them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "denormalize_images",
    "normalize_images",
    "read_image",
    "to_rgb",
]

# integer modes wider than 8 bits: PIL's convert("RGB") clips them at 255 (white images)
_WIDE_GRAY = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}
ALPHA_BACKGROUND = (255, 255, 255)

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


def to_rgb(image: Image.Image) -> Image.Image:
    """An image of any PIL mode as 8-bit RGB: 16/32-bit grayscale scaled to 0..255 (``I``
    images are read as 16-bit values, as PNG and TIFF store them), float grayscale scaled by
    its own range, palette and alpha images composited over white, CMYK converted."""
    mode = image.mode
    if mode in _WIDE_GRAY:
        values = np.asarray(image, dtype=np.float64)
        scaled = np.clip(np.rint(values * 255.0 / _WIDE_GRAY[mode]), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        low, high = float(values.min()), float(values.max())
        if low >= 0.0 and high <= 1.0:  # already in [0, 1]
            low, high = 0.0, 1.0
        scaled = (values - low) / max(high - low, 1e-12) * 255.0
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8)).convert("RGB")
    if (mode == "P" and "transparency" in image.info) or mode in ("PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = Image.new("RGBA", image.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def read_image(source: str | os.PathLike | bytes) -> Image.Image:
    """Decode an image file (a path) or encoded bytes completely, turn it upright with its EXIF
    orientation and return it as 8-bit RGB (:func:`to_rgb`). Truncated or non-image data raises
    ``ValueError`` naming the file."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise FileNotFoundError(f"image {name} does not exist or is not a file")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            return to_rgb(upright)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {name}: {error}") from error
