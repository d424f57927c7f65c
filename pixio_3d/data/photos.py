"""A folder of photos in, one batch of same-size views out (with the per-photo resize mapping).

The size rule, so that every view has the same shape and sides that are multiples of the patch
size:

1. Each photo is read with PIL, turned upright with its EXIF orientation
   (``ImageOps.exif_transpose``) and converted to RGB.
2. The target aspect ratio is that of the most common (upright) photo size; ties go to the
   photo that comes first in sorted file-name order.
3. The target's long side is ``long_side`` rounded down to a multiple of ``multiple_of``; its
   short side is ``long_side * aspect`` rounded to the nearest multiple (at least one multiple).
4. Every photo is scaled by one isotropic factor so that it covers the target, then
   center-cropped to it (one bicubic resample of a float crop box, no distortion). Photos may be
   scaled up.

:class:`PhotoTransform` records the mapping ``u_out = scale * (u_orig - left)``,
``v_out = scale * (v_orig - top)`` (continuous pixel coordinates, pixel centres at +0.5, in the
upright original), so intrinsics estimated at the working size map back to the original photo.

Each photo's focal length in pixels is also read from its EXIF ``FocalLengthIn35mmFilm`` when
present (:func:`exif_focal_px`: the 35 mm-equivalent focal length scaled by the ratio of the
photo's diagonal in pixels to the 35 mm frame's, 43.27 mm), for callers that want known
intrinsics without asking the user.

Files that cannot be decoded (not images, truncated, corrupt) and photos whose short side is
below ``min_side`` pixels are skipped and listed with the reason; hidden files and sub-folders
are ignored. No readable photo at all is an error that names the folder.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from pixio_core.imaging import read_image

__all__ = [
    "LoadedPhotos",
    "PhotoTransform",
    "crop_box",
    "exif_focal_px",
    "load_photos",
    "target_size",
]

EXIF_IFD = 0x8769  # the Exif sub-IFD, where cameras put the focal length tags
FOCAL_LENGTH_35MM = 0xA405  # FocalLengthIn35mmFilm, millimetres
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)


@dataclass(frozen=True)
class PhotoTransform:
    """How one photo became a view: ``u_out = scale * (u_orig - left)`` (same for v with ``top``).

    ``original_size`` is ``(width, height)`` of the upright photo (EXIF orientation applied);
    ``exif_focal_px`` its focal length in those pixels from EXIF (:func:`exif_focal_px`).
    """

    original_size: tuple[int, int]
    scale: float
    left: float
    top: float
    exif_focal_px: float | None = None  # focal length in original pixels from EXIF, if any

    def matrix(self) -> np.ndarray:
        """3x3 matrix ``A`` mapping homogeneous original pixel coordinates to working ones."""
        return np.array(
            [
                [self.scale, 0.0, -self.scale * self.left],
                [0.0, self.scale, -self.scale * self.top],
                [0.0, 0.0, 1.0],
            ]
        )

    def intrinsics_to_original(self, intrinsics: np.ndarray | torch.Tensor) -> np.ndarray:
        """Intrinsics ``(3, 3)`` of the working view -> intrinsics of the upright original photo."""
        return np.linalg.inv(self.matrix()) @ np.asarray(intrinsics, dtype=np.float64)

    def intrinsics_from_original(self, intrinsics: np.ndarray | torch.Tensor) -> np.ndarray:
        """Intrinsics ``(3, 3)`` of the upright original photo -> intrinsics of the working view."""
        return self.matrix() @ np.asarray(intrinsics, dtype=np.float64)

    def map_to_original(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """A per-pixel map ``(H, W, ...)`` of the working view resampled onto the upright original
        photo's pixel grid ``(height, width, ...)``: each original pixel centre takes the working
        pixel it falls in (nearest, so no depth is invented across edges); pixels outside the
        working crop get ``fill``."""
        values = np.asarray(values)
        width, height = self.original_size
        cols = np.floor(self.scale * (np.arange(width) + 0.5 - self.left)).astype(np.int64)
        rows = np.floor(self.scale * (np.arange(height) + 0.5 - self.top)).astype(np.int64)
        inside_cols = (cols >= 0) & (cols < values.shape[1])
        inside_rows = (rows >= 0) & (rows < values.shape[0])
        out = np.full((height, width, *values.shape[2:]), fill, dtype=values.dtype)
        picked = values[rows[inside_rows]][:, cols[inside_cols]]
        out[np.ix_(inside_rows, inside_cols)] = picked
        return out


class LoadedPhotos(NamedTuple):
    """``images (V, 3, H, W)`` float32 in [0, 1]; ``paths`` of the V photos used, in order;
    ``skipped`` as ``(path, reason)``; ``transforms`` one :class:`PhotoTransform` per photo."""

    images: torch.Tensor
    paths: list[Path]
    skipped: list[tuple[Path, str]]
    transforms: list[PhotoTransform]


def target_size(
    width: int, height: int, long_side: int = 512, multiple_of: int = 16
) -> tuple[int, int]:
    """Working ``(width, height)`` for photos of aspect ``width / height`` (rule step 3)."""
    if long_side < multiple_of or multiple_of < 1:
        raise ValueError(
            f"long_side ({long_side}) must be at least multiple_of ({multiple_of}) >= 1"
        )
    long_out = long_side // multiple_of * multiple_of
    short_ratio = min(width, height) / max(width, height)
    short_out = max(multiple_of, round(long_out * short_ratio / multiple_of) * multiple_of)
    return (long_out, short_out) if width >= height else (short_out, long_out)


def _list_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[Path], str]:
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"photo folder {folder} does not exist or is not a folder")
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"photo folder {folder} is empty")
        return files, f"folder {folder}"
    files = [Path(p) for p in source]
    if not files:
        raise ValueError("no photo paths given")
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"photo files do not exist: {', '.join(missing)}")
    return files, f"{len(files)} given paths"


def exif_focal_px(exif: Image.Exif, size: tuple[int, int]) -> float | None:
    """Focal length in pixels of a photo of ``size = (width, height)`` from its EXIF
    ``FocalLengthIn35mmFilm`` (scaled by the photo's diagonal over the 35 mm frame's, 43.27 mm;
    exact for the photo's full field of view at any resolution), or None when the tag is
    missing or not a positive number."""
    value = exif.get_ifd(EXIF_IFD).get(FOCAL_LENGTH_35MM, exif.get(FOCAL_LENGTH_35MM))
    try:
        focal_35mm = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(focal_35mm) or focal_35mm <= 0:
        return None
    return focal_35mm * math.hypot(*size) / FULL_FRAME_DIAGONAL_MM


def _read_upright(path: Path) -> tuple[Image.Image, float | None]:
    """The photo as upright 8-bit RGB (:func:`pixio_core.imaging.read_image`: decoded fully, so
    truncated files fail here; 16-bit, palette, alpha and CMYK modes read correctly) and its
    EXIF focal length in pixels of the upright photo (None without one)."""
    upright = read_image(path)
    with Image.open(path) as image:
        return upright, exif_focal_px(image.getexif(), upright.size)


VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
MAX_VIDEO_FRAMES = 200


def is_video(source: str | os.PathLike | Sequence[str | os.PathLike]) -> bool:
    """``source`` is one video file (by its extension)."""
    return isinstance(source, str | os.PathLike) and Path(source).suffix.lower() in VIDEO_EXTENSIONS


def read_video_frames(
    path: str | os.PathLike, fps: float = 2.0, max_frames: int = MAX_VIDEO_FRAMES
) -> list[tuple[Path, Image.Image, float]]:
    """Frames of a video sampled at ``fps`` per second (imageio's ffmpeg): ``(name, frame,
    time in seconds)``, names ``<stem>_<index>.png`` (not files on disk). The first frame is
    always kept, then the first frame of each new ``1 / fps`` interval; a rotation stored in
    the video (phones) is applied. At most ``max_frames`` frames."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist or is not a file")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    try:
        meta = iio.immeta(path)
        source_fps = float(meta.get("fps") or 0)
        if not source_fps > 0:
            raise ValueError("no frame rate in the file")
        rotate = int(meta.get("rotate") or 0) % 360
        frames, last_slot = [], -1
        for index, frame in enumerate(iio.imiter(path)):
            slot = int(index / source_fps * fps + 1e-9)
            if slot == last_slot:
                continue
            last_slot = slot
            image = Image.fromarray(np.asarray(frame)[..., :3])
            if rotate:
                image = image.rotate(-rotate, expand=True)  # the stored clockwise rotation
            name = Path(f"{path.stem}_{len(frames):05d}.png")
            frames.append((name, image, round(index / source_fps, 4)))
            if len(frames) >= max_frames:
                break
    except (OSError, RuntimeError, StopIteration) as error:
        raise ValueError(f"cannot read video {path}: {error}") from None
    if not frames:
        raise ValueError(f"video {path} holds no frame")
    return frames


def load_photos(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    long_side: int = 512,
    multiple_of: int = 16,
    min_side: int = 32,
    fps: float = 2.0,
) -> LoadedPhotos:
    """Load a folder (its files, sorted by name; not recursive), a list of photo paths, or one
    video file (frames sampled at ``fps``, :func:`read_video_frames`).

    Returns :class:`LoadedPhotos` (unpacks as ``images, paths, skipped, transforms``; for a
    video, ``paths`` are the frame names); see the module docstring for the size rule. Raises
    ``FileNotFoundError`` for a missing or empty folder and ``ValueError`` when no file is a
    readable photo of at least ``min_side`` pixels.
    """
    if is_video(source):
        frames = read_video_frames(source, fps)
        files, description = [name for name, _, _ in frames], f"video {source}"
        decoded = {name: (image, None) for name, image, _ in frames}
    else:
        files, description = _list_files(source)
        decoded = {}
    photos: list[tuple[Path, Image.Image, tuple[int, int], int, float | None]] = []
    skipped: list[tuple[Path, str]] = []
    for path in files:
        try:
            image, focal = decoded[path] if path in decoded else _read_upright(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            skipped.append((path, f"unreadable image: {error}"))
            continue
        if min(image.size) < min_side:
            skipped.append((path, f"too small: {image.size[0]}x{image.size[1]} < {min_side} px"))
            continue
        kept, factor = _shrink_for_memory(image, long_side)
        photos.append((path, kept, image.size, factor, focal))
    if not photos:
        reasons = "; ".join(f"{p.name}: {reason}" for p, reason in skipped)
        raise ValueError(
            f"no readable photo of at least {min_side} px in {description} ({reasons})"
        )

    sizes = [original for _, _, original, _, _ in photos]
    counts = Counter(sizes)
    most_common = max(counts.values())
    reference = next(size for size in sizes if counts[size] == most_common)
    out_width, out_height = target_size(*reference, long_side=long_side, multiple_of=multiple_of)

    tensors, transforms = [], []
    for _, image, (orig_width, orig_height), factor, focal in photos:
        scale, left, top, box = crop_box((orig_width, orig_height), (out_width, out_height))
        # the kept image may be a reduced copy: express the crop box in its pixels
        box = _box_in_reduced(box, factor, image.size)
        resized = image.resize((out_width, out_height), Image.Resampling.BICUBIC, box=box)
        array = np.asarray(resized, dtype=np.uint8)
        tensors.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
        transforms.append(PhotoTransform((orig_width, orig_height), scale, left, top, focal))
    images = torch.stack(tensors).to(torch.float32) / 255.0
    return LoadedPhotos(images, [p for p, *_ in photos], skipped, transforms)


def crop_box(
    original_size: tuple[int, int], out_size: tuple[int, int]
) -> tuple[float, float, float, tuple[float, float, float, float]]:
    """``(scale, left, top, box)`` of rule step 4 for a photo of ``original_size = (width,
    height)`` and views of ``out_size``: one isotropic scale that covers the view, a centred
    crop whose box ``(left, top, right, bottom)`` (continuous original pixels) always lies
    inside the photo. Float rounding used to put ``left`` a hair below 0 for ordinary sizes
    (741x500 at 512, 6000x4000 at 256), which PIL refuses; the box is clamped to the photo."""
    (width, height), (out_width, out_height) = original_size, out_size
    scale = max(out_width / width, out_height / height)
    crop_width, crop_height = min(out_width / scale, width), min(out_height / scale, height)
    left = max(0.0, (width - crop_width) / 2)
    top = max(0.0, (height - crop_height) / 2)
    right, bottom = min(float(width), left + crop_width), min(float(height), top + crop_height)
    return scale, left, top, (left, top, right, bottom)


def _box_in_reduced(
    box: tuple[float, float, float, float], factor: int, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """``box`` in the pixels of a copy reduced by ``factor`` (of ``size``), kept inside it."""
    left, top, right, bottom = (value / factor for value in box)
    return (
        min(max(0.0, left), size[0]),
        min(max(0.0, top), size[1]),
        min(max(0.0, right), size[0]),
        min(max(0.0, bottom), size[1]),
    )


def _shrink_for_memory(image: Image.Image, long_side: int) -> tuple[Image.Image, int]:
    """A copy reduced by a whole factor (box average) while its short side stays >= ``long_side``.

    The working views are at most ``long_side`` on any side, so this loses no needed detail and
    keeps a folder of large photos from holding every full-resolution image at once. Returns the
    kept image and the factor (pixel ``u`` of the original is ``u / factor`` in the copy; PIL
    rounds the reduced size up, so only a partial last row/column differs).
    """
    factor = min(image.size) // max(long_side, 1)
    if factor >= 2:
        return image.reduce(factor), factor
    return image, 1
