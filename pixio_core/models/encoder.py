"""The Pixio encoder: a plain pre-norm ViT with several class tokens.

Parameter names follow the officially released checkpoints (``cls_token``, ``pos_embed``,
``patch_embed.proj``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``),
which are also timm's names, so official state dicts load strictly without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a Pixio encoder; everything needed to rebuild it from a checkpoint."""

    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: int = 16
    image_size: int = 256
    num_class_tokens: int = 8
    layer_norm_eps: float = 1e-6
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "embed_dim",
            "depth",
            "num_heads",
            "patch_size",
            "image_size",
            "num_class_tokens",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EncoderConfig.{name} must be a positive int, got {value!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"EncoderConfig.embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"EncoderConfig.image_size={self.image_size} is not a multiple of patch_size={self.patch_size}"
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(
                f"EncoderConfig.drop_path_rate must be in [0, 1), got {self.drop_path_rate}"
            )

    @property
    def pretrain_grid_size(self) -> int:
        """Side of the patch grid the position embeddings were learned for (16 at 256 px)."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown encoder config keys {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**values)


def evenly_spaced_blocks(depth: int, count: int) -> list[int]:
    """The paper's ``count`` evenly spaced block indices, e.g. depth 32, count 4 -> [7, 15, 23, 31]."""
    if not 1 <= count <= depth:
        raise ValueError(f"cannot pick {count} evenly spaced blocks out of depth {depth}")
    return [round(depth * (k + 1) / count) - 1 for k in range(count)]


class FrozenEncoderEval:
    """Mixin for a module that holds a Pixio encoder as ``self.encoder``: ``train()`` keeps the
    encoder in eval mode (no dropout or drop path) while it is frozen, as at inference. The
    consumer freezes the encoder; the encoder never freezes itself."""

    def train(self, mode: bool = True):
        super().train(mode)  # type: ignore[misc]
        encoder = self.encoder  # type: ignore[attr-defined]
        if not any(p.requires_grad for p in encoder.parameters()):
            encoder.eval()
        return self


class PixioEncoder(nn.Module):
    """Pre-norm ViT with ``num_class_tokens`` class tokens and learnable absolute position embeddings.

    Input images are ``(B, 3, H, W)`` float tensors normalized with ImageNet mean/std, with ``H``
    and ``W`` multiples of the patch size. The patch part of ``pos_embed`` is resized bicubically
    for other grids; the class-token slots are kept as they are.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.embed_dim = dim
        self.patch_size = config.patch_size
        self.num_class_tokens = config.num_class_tokens
        self.patch_embed = PatchEmbed(
            img_size=config.image_size,
            patch_size=config.patch_size,
            in_chans=3,
            embed_dim=dim,
            strict_img_size=False,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, config.num_class_tokens, dim))
        grid = config.pretrain_grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_class_tokens + grid * grid, dim))
        # linear ramp 0 -> drop_path_rate over depth (plain floats: works under the meta device too)
        drop_path = [
            config.drop_path_rate * i / max(1, config.depth - 1) for i in range(config.depth)
        ]
        norm_layer = partial(nn.LayerNorm, eps=config.layer_norm_eps)
        self.blocks = nn.ModuleList(
            Block(
                dim=dim,
                num_heads=config.num_heads,
                mlp_ratio=config.mlp_ratio,
                qkv_bias=True,
                drop_path=rate,
                norm_layer=norm_layer,
            )
            for rate in drop_path
        )
        self.norm = norm_layer(dim)
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """MAE-style init: xavier-uniform linears and patch projection, N(0, 0.02) tokens."""
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=0.02)
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        self.apply(_init_linear_and_norm)

    # --------------------------------------------------------------- helpers
    def check_input(self, images: torch.Tensor) -> tuple[int, int]:
        """Validate ``images`` and return the patch grid ``(h, w)``."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"expected a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}"
            )
        if images.ndim != 4:
            raise ValueError(
                f"expected images of shape (B, 3, H, W), got a tensor of rank {images.ndim} "
                f"with shape {tuple(images.shape)}"
            )
        if images.shape[1] != 3:
            raise ValueError(
                f"expected 3 (RGB) channels in dim 1, got {images.shape[1]} (shape {tuple(images.shape)})"
            )
        if not images.is_floating_point():
            raise ValueError(
                f"expected a float tensor normalized with ImageNet mean/std, got dtype {images.dtype}"
            )
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size or height == 0 or width == 0:
            raise ValueError(
                f"image height and width must be positive multiples of the patch size {self.patch_size}, "
                f"got {height}x{width}"
            )
        return height // self.patch_size, width // self.patch_size

    def position_embeddings(self, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Class-token and patch position embeddings for a ``grid_h x grid_w`` patch grid."""
        n_cls = self.num_class_tokens
        side = self.config.pretrain_grid_size
        pos = resample_abs_pos_embed(
            self.pos_embed,
            new_size=[grid_h, grid_w],
            old_size=[side, side],
            num_prefix_tokens=n_cls,
            interpolation="bicubic",
            antialias=False,
        )
        return pos[:, :n_cls], pos[:, n_cls:]

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Return class tokens ``(B, n_cls, D)`` and patch tokens ``(B, h*w, D)`` with positions added."""
        grid = self.check_input(images)
        patches = self.patch_embed(images)
        cls_pos, patch_pos = self.position_embeddings(*grid)
        cls_tokens = (self.cls_token + cls_pos).expand(images.shape[0], -1, -1)
        return cls_tokens, patches + patch_pos, grid

    def resolve_blocks(self, layers: int | Sequence[int]) -> list[int]:
        """An int ``n`` -> the ``n`` evenly spaced blocks; a sequence -> those indices (negative ok)."""
        depth = len(self.blocks)
        if isinstance(layers, int):
            return evenly_spaced_blocks(depth, layers)
        indices = []
        for index in layers:
            if not -depth <= index < depth:
                raise ValueError(
                    f"block index {index} out of range for an encoder of depth {depth}"
                )
            indices.append(index % depth)
        return indices

    def _split(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        cls_tokens = tokens[:, : self.num_class_tokens]
        return {
            "cls_tokens": cls_tokens,
            "patch_tokens": tokens[:, self.num_class_tokens :],
            "pooled": cls_tokens.mean(dim=1),
        }

    # --------------------------------------------------------------- forward
    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the blocks and the final norm on an embedded sequence ``(B, n_cls + N, D)``."""
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward_visible(self, images: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Final-normed tokens of class tokens + the patches ``ids_keep`` ``(B, n_keep)`` only.

        Returns ``(B, n_cls + n_keep, D)``; masked patches never enter the blocks (MAE, distillation).
        """
        cls_tokens, patch_tokens, _ = self.embed(images)
        index = ids_keep.unsqueeze(-1).expand(-1, -1, patch_tokens.shape[-1])
        visible = torch.gather(patch_tokens, 1, index)
        return self.forward_tokens(torch.cat([cls_tokens, visible], dim=1))

    def forward_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features after the final LayerNorm.

        Returns ``cls_tokens (B, n_cls, D)``, ``patch_tokens (B, h*w, D)`` and ``pooled (B, D)``
        (the mean of the normalized class tokens, HF ``PixioModel.pooler_output``).
        """
        cls_tokens, patch_tokens, _ = self.embed(images)
        return self._split(self.forward_tokens(torch.cat([cls_tokens, patch_tokens], dim=1)))

    def forward_intermediates(
        self, images: torch.Tensor, layers: int | Sequence[int] = 4, norm: bool = True
    ) -> list[dict[str, torch.Tensor]]:
        """The same dict as :meth:`forward_features` for each requested block.

        ``layers``: an int ``n`` selects the paper's ``n`` evenly spaced blocks, a sequence selects
        block indices. ``norm=True`` applies the final LayerNorm to each block's output.
        """
        wanted = self.resolve_blocks(layers)
        cls_tokens, patch_tokens, _ = self.embed(images)
        tokens = torch.cat([cls_tokens, patch_tokens], dim=1)
        outputs: dict[int, dict[str, torch.Tensor]] = {}
        for index, block in enumerate(self.blocks[: max(wanted) + 1]):
            tokens = block(tokens)
            if index in wanted:
                outputs[index] = self._split(self.norm(tokens) if norm else tokens)
        return [outputs[index] for index in wanted]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_features(images)

    def no_weight_decay(self) -> set[str]:
        """Names excluded from weight decay by timm's optimizer factory (none: as the paper)."""
        return set()


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
