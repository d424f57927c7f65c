"""Image folders (recursive) with the paper's pre-training augmentation; bad files skipped and counted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import v2

from pixio_core.models.encoder import IMAGENET_MEAN, IMAGENET_STD

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def pretrain_transform(image_size: int, scale: tuple[float, float] = (0.2, 1.0)) -> Callable:
    """RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3, bicubic), no flip, ImageNet normalization."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(
                image_size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True
            ),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(image_size: int) -> Callable:
    """Resize the short side then center-crop ``image_size`` (bicubic), ImageNet normalization."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(image_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def find_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (recursive), sorted; a clear error when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    return files


class ImageFolderDataset(Dataset):
    """All images under ``root``; unreadable ones are replaced by the next readable one and counted.

    ``__getitem__`` returns ``(image_tensor, index)``; ``self.skipped`` lists the bad files seen.
    """

    def __init__(self, root: str | Path, transform: Callable) -> None:
        self.root = Path(root)
        self.files = find_images(self.root)
        self.transform = transform
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files)

    def load(self, path: Path) -> Image.Image:
        with Image.open(path) as image:
            return image.convert("RGB")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for offset in range(len(self.files)):
            current = (index + offset) % len(self.files)
            path = self.files[current]
            try:
                return self.transform(self.load(path)), current
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
                self.skipped.add(path)
        raise RuntimeError(
            f"none of the {len(self.files)} files under {self.root} is a readable image"
        )
