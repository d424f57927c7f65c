"""Block masking of the patch grid (Pixio) with per-patch masking (MAE) as the case ``mask_grid=1``."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BlockMask:
    """Which patches are visible.

    ``ids_keep``: ``(B, n_keep)`` indices (row-major in the patch grid, ascending) of visible patches.
    ``mask``: ``(B, h*w)`` bool, True where the patch is masked (to be reconstructed).
    """

    ids_keep: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> BlockMask:
        return BlockMask(self.ids_keep.to(device), self.mask.to(device))


def block_mask_grid(grid_h: int, grid_w: int, mask_grid: int) -> torch.Tensor:
    """``(n_blocks, mask_grid**2)`` patch indices of each aligned ``mask_grid x mask_grid`` block."""
    if mask_grid < 1:
        raise ValueError(f"mask_grid must be >= 1, got {mask_grid}")
    if grid_h % mask_grid or grid_w % mask_grid:
        raise ValueError(
            f"the {grid_h}x{grid_w} patch grid cannot be cut into aligned {mask_grid}x{mask_grid} blocks; "
            f"use an image side that is a multiple of patch_size * mask_grid"
        )
    patch_ids = torch.arange(grid_h * grid_w).reshape(grid_h, grid_w)
    blocks = patch_ids.reshape(grid_h // mask_grid, mask_grid, grid_w // mask_grid, mask_grid)
    return blocks.permute(0, 2, 1, 3).reshape(-1, mask_grid * mask_grid)


def sample_block_mask(
    batch_size: int,
    grid_h: int,
    grid_w: int,
    mask_grid: int = 4,
    mask_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> BlockMask:
    """Mask ``mask_ratio`` of the aligned ``mask_grid x mask_grid`` patch blocks of each sample.

    As in the paper, ``int(n_blocks * (1 - mask_ratio))`` blocks are kept per sample and every
    patch in a kept block is visible. Deterministic given ``generator``. Returns CPU tensors.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    blocks = block_mask_grid(grid_h, grid_w, mask_grid)
    n_blocks = blocks.shape[0]
    n_keep_blocks = int(n_blocks * (1.0 - mask_ratio))
    if n_keep_blocks < 1:
        raise ValueError(
            f"mask_ratio={mask_ratio} keeps no block of the {n_blocks} {mask_grid}x{mask_grid} blocks "
            f"of a {grid_h}x{grid_w} patch grid; lower the ratio, the mask grid, or use larger images"
        )
    noise = torch.rand(batch_size, n_blocks, generator=generator)
    kept_blocks = noise.argsort(dim=1)[:, :n_keep_blocks]
    ids_keep = blocks[kept_blocks].reshape(batch_size, -1).sort(dim=1).values
    mask = torch.ones(batch_size, grid_h * grid_w, dtype=torch.bool)
    mask.scatter_(1, ids_keep, False)
    return BlockMask(ids_keep=ids_keep, mask=mask)
