"""The multi-view trunk: alternating frame attention (the tokens of one view) and global
attention (the tokens of all views plus a scale token), VGGT / MapAnything style.

The blocks are timm ``Block`` s (PyTorch's fused attention); the model owns them as two
``ModuleList`` s (``frame_blocks``, ``global_blocks``), so checkpoint keys name them directly.
Nothing here distinguishes views 1..V-1, so the outputs are equivariant to their order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models.vision_transformer import Block
from torch import nn

__all__ = ["alternating_attention", "attention_blocks"]


def attention_blocks(width: int, num_heads: int, mlp_ratio: float, count: int) -> nn.ModuleList:
    """``count`` transformer blocks of ``width`` channels (qkv bias, as ViTs)."""
    return nn.ModuleList(Block(width, num_heads, mlp_ratio, qkv_bias=True) for _ in range(count))


def alternating_attention(
    tokens: torch.Tensor,
    scale: torch.Tensor,
    frame_blocks: Sequence[nn.Module],
    global_blocks: Sequence[nn.Module],
    hook_pairs: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Run the (frame, global) block pairs.

    Args:
        tokens: ``(B, V, N, C)`` per-view tokens.
        scale: ``(B, 1, C)`` the scale token, appended to the global sequence.
        hook_pairs: indices of the pairs whose output is also returned.

    Returns the final tokens ``(B, V * N, C)``, the final scale token ``(B, 1, C)`` and the
    tokens ``(B, V * N, C)`` after each pair of ``hook_pairs``, in that order.
    """
    batch, views, n_tokens, channels = tokens.shape
    intermediate: dict[int, torch.Tensor] = {}
    for index, (frame_block, global_block) in enumerate(
        zip(frame_blocks, global_blocks, strict=True)
    ):
        tokens = frame_block(tokens.reshape(batch * views, n_tokens, channels))
        sequence = torch.cat([tokens.reshape(batch, views * n_tokens, channels), scale], dim=1)
        sequence = global_block(sequence)
        tokens, scale = sequence[:, :-1], sequence[:, -1:]
        if index in hook_pairs:
            intermediate[index] = tokens
    return tokens, scale, [intermediate[index] for index in hook_pairs]
