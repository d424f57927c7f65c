"""Pictures people look at: loss curves and original / masked / reconstruction grids.

Figures are drawn with matplotlib's object API (``Figure`` + ``savefig``, Agg for PNG), so this
module chooses no global backend and leaves pyplot alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from pixio_core.imaging import denormalize_images as denormalize
from pixio_core.models.mae import patchify, unpatchify


def reconstruction_panels(
    images: torch.Tensor,
    pred: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    norm_pix_loss: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(original, masked, reconstruction)`` images in ``[0, 1]``, each ``(B, 3, H, W)``.

    A per-patch normalized prediction is mapped back with the true patch's mean and std (as MAE's
    visualisation); visible patches of the reconstruction show the input.
    """
    grid_h, grid_w = images.shape[-2] // patch_size, images.shape[-1] // patch_size
    patches = patchify(images, patch_size)
    pred = pred.float()
    if norm_pix_loss:
        mean = patches.mean(-1, keepdim=True)
        std = (patches.var(-1, keepdim=True) + 1e-6).sqrt()
        pred = pred * std + mean
    keep = mask.unsqueeze(-1).float()
    masked = unpatchify(patches * (1 - keep), patch_size, grid_h, grid_w)
    recon = unpatchify(pred * keep + patches * (1 - keep), patch_size, grid_h, grid_w)
    dark = unpatchify(keep.expand_as(patches), patch_size, grid_h, grid_w).bool()
    masked_img = denormalize(masked).masked_fill(dark, 0.25)
    return denormalize(images), masked_img, denormalize(recon)


def save_reconstruction_grid(
    path: str | Path,
    original: torch.Tensor,
    masked: torch.Tensor,
    recon: torch.Tensor,
    max_rows: int = 6,
) -> Path:
    """A PNG with one row per image: original | masked input | reconstruction."""
    rows = min(max_rows, original.shape[0])
    fig = Figure(figsize=(6, 2 * rows))
    axes = fig.subplots(rows, 3, squeeze=False)
    for row in range(rows):
        for col, (title, batch) in enumerate(
            (("original", original), ("masked", masked), ("reconstruction", recon))
        ):
            axis = axes[row][col]
            axis.imshow(batch[row].permute(1, 2, 0).detach().cpu().numpy())
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def save_loss_curve(
    path: str | Path, losses: Sequence[float], title: str = "pre-training loss"
) -> Path:
    """Per-step loss and a moving average, as a PNG."""
    steps = np.arange(len(losses))
    fig = Figure(figsize=(6, 3.5))
    axis = fig.subplots()
    axis.plot(steps, losses, alpha=0.35, label="per step")
    window = max(1, len(losses) // 20)
    if len(losses) >= window:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axis.plot(steps[window - 1 :], smooth, label=f"mean of {window}")
    axis.set_xlabel("step")
    axis.set_ylabel("masked-patch MSE (normalized pixels)")
    axis.set_title(title)
    axis.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
