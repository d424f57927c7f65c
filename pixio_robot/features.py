"""Frozen-encoder features of every demo frame, computed once and cached.

The paper's robot protocol embeds each frame with the mean of the encoder's class tokens
(``pooled``); ``patch`` keeps the patch tokens instead; ``grid`` averages the patch tokens over
each cell of a 2 x 2 grid of the image and concatenates the cells (``4 x width``), which keeps
where things are (small objects move the class tokens little) at a fixed, MLP-sized width.
Features are keyed by the demo file (path, size, modification time), the encoder's identity, the
feature kind and the input size, and stored as safetensors (one tensor per demo) under
``cache_dir``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from tqdm.auto import tqdm

from pixio_core.imaging import normalize_images
from pixio_core.io import atomic_file
from pixio_core.models.encoder import PixioEncoder
from pixio_core.precision import autocast

FEATURES = ("pooled", "patch", "grid")
GRID = 2  # cells per side of the ``grid`` feature


def preprocess_frames(frames: np.ndarray | torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` frames -> ImageNet-normalized ``(N, 3, S, S)`` (bilinear resize)."""
    frames = torch.as_tensor(np.asarray(frames))
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(
            f"expected uint8 frames of shape (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    images = frames.permute(0, 3, 1, 2).float() / 255.0
    if images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(
            images,
            size=(image_size, image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
    return normalize_images(images)


def grid_feature(patch_tokens: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """``(B, h*w, D)`` patch tokens of a ``image_hw`` image -> ``(B, GRID*GRID*D)``: the mean
    token of each grid cell, cells in row-major order."""
    batch, count, width = patch_tokens.shape
    height = round((count * image_hw[0] / image_hw[1]) ** 0.5)
    if height == 0 or count % height:
        raise ValueError(f"{count} patch tokens do not tile a {image_hw[0]}x{image_hw[1]} image")
    grid = patch_tokens.transpose(1, 2).reshape(batch, width, height, count // height)
    cells = F.adaptive_avg_pool2d(grid, GRID)  # (B, D, GRID, GRID)
    return cells.flatten(2).transpose(1, 2).flatten(1)


@torch.no_grad()
def embed_frames(
    encoder: PixioEncoder,
    frames: np.ndarray,
    image_size: int,
    feature: str = "pooled",
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``pooled``: ``(N, D)``; ``patch``: ``(N, h*w, D)``; ``grid``: ``(N, 4 D)``; float32 on
    the CPU."""
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
    device = next(encoder.parameters()).device
    outputs = []
    for start in range(0, len(frames), batch_size):
        images = preprocess_frames(frames[start : start + batch_size], image_size).to(device)
        with autocast(device, dtype):
            out = encoder.forward_features(images)
        if feature == "grid":
            outputs.append(grid_feature(out["patch_tokens"], images.shape[-2:]).float().cpu())
        else:
            outputs.append(out["pooled" if feature == "pooled" else "patch_tokens"].float().cpu())
    return torch.cat(outputs)


def cache_key(demo_path: Path, encoder_id: str, feature: str, image_size: int) -> str:
    stat = demo_path.stat()
    identity = [
        str(demo_path.resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        encoder_id,
        feature,
        image_size,
    ]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]


def cached_demo_features(
    demo_path: str | Path,
    encoder: PixioEncoder,
    encoder_id: str,
    cache_dir: str | Path,
    feature: str = "pooled",
    image_size: int = 224,
    obs_key: str = "pixels",
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """``({demo_name: features}, stats)``; computed once per (demo file, encoder, settings).

    ``stats`` has ``cached`` (1.0 when read from the cache), ``frames`` and ``images_per_s``.
    """
    demo_path = Path(demo_path)
    encoder.eval()
    path = (
        Path(cache_dir)
        / f"features_{cache_key(demo_path, encoder_id, feature, image_size)}.safetensors"
    )
    if path.is_file():
        features = load_file(str(path))
        return features, {
            "cached": 1.0,
            "frames": float(sum(len(v) for v in features.values())),
            "images_per_s": 0.0,
        }
    features: dict[str, torch.Tensor] = {}
    started, frames = time.perf_counter(), 0
    with h5py.File(demo_path, "r") as handle:
        names = sorted(handle["data"], key=lambda name: int(name.split("_")[-1]))
        for name in tqdm(names, desc=f"features ({feature})", disable=not progress):
            key = f"data/{name}/obs/{obs_key}"
            if key not in handle:
                raise KeyError(
                    f"{demo_path} has no {key}; observation keys are {sorted(handle[f'data/{name}/obs'])}"
                )
            pixels = handle[key][:]
            features[name] = embed_frames(
                encoder, pixels, image_size, feature, batch_size, dtype
            ).contiguous()
            frames += len(pixels)
    seconds = time.perf_counter() - started
    with atomic_file(path) as tmp:
        save_file(
            features,
            str(tmp),
            metadata={"demo_file": str(demo_path), "encoder": encoder_id, "feature": feature},
        )
    return features, {
        "cached": 0.0,
        "frames": float(frames),
        "images_per_s": frames / max(seconds, 1e-9),
    }
