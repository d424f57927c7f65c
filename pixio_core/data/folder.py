"""Image folders (recursive) with the paper's pre-training augmentation; bad files skipped and counted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from pixio_core.data.sampler import mix_seed
from pixio_core.imaging import IMAGENET_MEAN, IMAGENET_STD, read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def pretrain_transform(image_size: int, scale: tuple[float, float] = (0.2, 1.0)) -> Callable:
    """RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3, bicubic), no flip, ImageNet normalization;
    for PIL images and ``(3, H, W)`` uint8 tensors alike (:func:`decode_rgb`)."""
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


def read_rgb(source: str | Path | bytes | None) -> Image.Image | None:
    """:func:`pixio_core.imaging.read_image` (upright 8-bit RGB from any common mode), or
    ``None`` when it cannot be decoded (missing, truncated, not an image, ``None``), for callers
    that skip and count."""
    if source is None:
        return None
    try:
        return read_image(source)
    except Exception:  # noqa: BLE001 - PIL raises many types on corrupt data; all mean "skip"
        return None


_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"


def decode_rgb(source: str | Path | bytes | None) -> torch.Tensor | Image.Image | None:
    """The image for the pre-training transforms: complete JPEG data decoded by torchvision's
    ``decode_jpeg`` to a ``(3, H, W)`` uint8 tensor (EXIF orientation applied; the same pixels
    as PIL's decoder, and the decode + crop + normalize pipeline ~1.45x faster here), anything
    else by :func:`read_rgb` (a PIL image). ``None`` when it cannot be decoded: truncated JPEGs
    (no end marker) go to PIL, which refuses them, so they are skipped and counted the same way."""
    if source is None:
        return None
    if not isinstance(source, bytes):
        try:
            source = Path(source).read_bytes()
        except OSError:
            return None
    if source[:3] == _JPEG_START and source.rstrip(b"\x00")[-2:] == _JPEG_END:
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            data = torch.frombuffer(bytearray(source), dtype=torch.uint8)
            return decode_jpeg(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        except RuntimeError:  # e.g. CMYK or arithmetic coding: PIL knows more variants
            pass
    return read_rgb(source)


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
    """All images under ``root`` (recursive), for pre-training.

    ``dataset[i]`` or ``dataset[(i, epoch)]`` returns ``{"image", "index", "skipped"}``. With a
    key ``(i, epoch)`` the augmentation is seeded by ``(seed, epoch, i)``, so it does not depend on
    worker processes, ranks or interruptions. An unreadable file is replaced by the next readable
    one; ``skipped`` counts the files passed over (sum it in the training loop) and
    ``self.skipped`` lists those seen in this process.
    """

    def __init__(self, root: str | Path, transform: Callable, seed: int = 0) -> None:
        self.root = Path(root)
        self.files = find_images(self.root)
        self.transform = transform
        self.seed = seed
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | int]:
        index, epoch = key if isinstance(key, tuple) else (key, None)
        failures = 0
        for offset in range(len(self.files)):
            current = (index + offset) % len(self.files)
            path = self.files[current]
            image = decode_rgb(path)
            if image is None:
                self.skipped.add(path)
                failures += 1
                continue
            if epoch is None:
                tensor = self.transform(image)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(mix_seed(self.seed, epoch, index))
                    tensor = self.transform(image)
            return {"image": tensor, "index": current, "skipped": failures}
        raise RuntimeError(
            f"none of the {len(self.files)} files under {self.root} is a readable image"
        )
