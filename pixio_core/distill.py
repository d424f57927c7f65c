"""Distillation of a small encoder from a frozen large one (paper appendix 7.2).

The teacher sees the unmasked image and gives its last block's tokens *before* the final norm.
The student (optionally on 50 % 4x4-block-masked input) applies its final norm, then a projection
head ``Linear(D_s, H) -> LayerNorm -> GELU -> Linear(H, D_t)``; the loss is ``1 - cos`` averaged
over class tokens and, separately, over patch tokens (teacher patches gathered at the student's
visible positions), the two averaged. Only the student encoder is kept.
"""

from __future__ import annotations

import torch
from torch import nn

from pixio_core.masking import BlockMask, sample_block_mask
from pixio_core.models.encoder import PixioEncoder


class ProjectionHead(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim, eps=eps)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(x))))


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - cos`` over all tokens: ``(B, N, D)`` each."""
    return (1 - nn.functional.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()


class DistillStudent(nn.Module):
    """A student encoder plus its projection head to the teacher's width.

    ``forward(images, teacher_tokens, mask=None)`` returns ``{"loss", "loss_cls", "loss_patch"}``;
    ``teacher_tokens`` is ``(B, n_cls + h*w, D_t)`` from the frozen teacher.
    """

    def __init__(
        self,
        student: PixioEncoder,
        teacher_dim: int,
        teacher_class_tokens: int,
        head_hidden_dim: int | None = None,
    ) -> None:
        super().__init__()
        if student.num_class_tokens != teacher_class_tokens:
            raise ValueError(
                f"the student has {student.num_class_tokens} class tokens, the teacher {teacher_class_tokens}: "
                f"build the student with num_class_tokens={teacher_class_tokens}"
            )
        self.encoder = student
        self.head = ProjectionHead(student.embed_dim, head_hidden_dim or teacher_dim, teacher_dim)

    def forward(
        self, images: torch.Tensor, teacher_tokens: torch.Tensor, mask: BlockMask | None = None
    ) -> dict[str, torch.Tensor]:
        n_cls = self.encoder.num_class_tokens
        if mask is None:
            cls_tokens, patch_tokens, _ = self.encoder.embed(images)
            tokens = self.encoder.forward_tokens(torch.cat([cls_tokens, patch_tokens], dim=1))
            target_patches = teacher_tokens[:, n_cls:]
        else:
            tokens = self.encoder.forward_visible(images, mask.ids_keep)
            index = mask.ids_keep.unsqueeze(-1).expand(-1, -1, teacher_tokens.shape[-1])
            target_patches = torch.gather(teacher_tokens[:, n_cls:], 1, index)
        projected = self.head(tokens)
        loss_cls = cosine_loss(projected[:, :n_cls], teacher_tokens[:, :n_cls])
        loss_patch = cosine_loss(projected[:, n_cls:], target_patches)
        return {"loss": (loss_cls + loss_patch) / 2, "loss_cls": loss_cls, "loss_patch": loss_patch}


@torch.no_grad()
def teacher_tokens(teacher: PixioEncoder, images: torch.Tensor) -> torch.Tensor:
    """The frozen teacher's last-block tokens before the final norm, ``(B, n_cls + h*w, D_t)``."""
    out = teacher.forward_intermediates(images, [-1], norm=False)[0]
    return torch.cat([out["cls_tokens"], out["patch_tokens"]], dim=1)


def distill_mask(
    batch: int,
    grid: tuple[int, int],
    mask_ratio: float,
    mask_grid: int,
    generator: torch.Generator | None = None,
) -> BlockMask | None:
    """The student's block mask (``None`` for ``mask_ratio == 0``: unmasked students L and B)."""
    if mask_ratio == 0:
        return None
    return sample_block_mask(batch, grid[0], grid[1], mask_grid, mask_ratio, generator)
