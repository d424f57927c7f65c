"""The masked-autoencoder pre-training model: Pixio encoder on visible patches + deep pixel decoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from pixio_core.masking import BlockMask, sample_block_mask
from pixio_core.models.encoder import PixioEncoder, _init_linear_and_norm


@dataclass(frozen=True)
class DecoderConfig:
    """Pixel decoder: ``depth`` transformer blocks of width ``embed_dim``."""

    embed_dim: int = 512
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.embed_dim < 1 or self.depth < 1 or self.num_heads < 1:
            raise ValueError(f"decoder sizes must be positive, got {self}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"decoder embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )


@dataclass(frozen=True)
class MaskingConfig:
    """``mask_ratio`` of the aligned ``mask_grid x mask_grid`` patch blocks are masked (1 = MAE)."""

    mask_ratio: float = 0.75
    mask_grid: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.mask_grid < 1:
            raise ValueError(f"mask_grid must be >= 1, got {self.mask_grid}")


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, h*w, p*p*C)``, each row a patch in (row, col, channel) order."""
    batch, channels, height, width = images.shape
    h, w = height // patch_size, width // patch_size
    x = images.reshape(batch, channels, h, patch_size, w, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, h * w, patch_size * patch_size * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, h*w, p*p*C)`` -> ``(B, C, H, W)``."""
    batch = patches.shape[0]
    channels = patches.shape[-1] // (patch_size * patch_size)
    x = patches.reshape(batch, grid_h, grid_w, patch_size, patch_size, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(
        batch, channels, grid_h * patch_size, grid_w * patch_size
    )


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch normalization of the reconstruction target over all its values (MAE norm_pix_loss)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


class PixioMAE(nn.Module):
    """Encoder on the visible patches (+ class tokens), decoder on all tokens, pixel MSE on masked ones.

    ``forward(images)`` returns a dict with ``loss`` (scalar), ``loss_per_sample`` ``(B,)``,
    ``pred`` ``(B, h*w, p*p*3)``
    (predicted, per-patch normalized when ``norm_pix_loss``), ``target`` (same shape) and
    ``mask`` ``(B, h*w)`` bool (True = masked).

    ``forward(images, predict="masked")`` (what training uses) runs the decoder's final norm and
    prediction head on the masked tokens only and normalizes only their targets: the same loss and
    gradients up to float rounding, with ``pred`` / ``target`` then ``(B, n_masked, p*p*3)`` in the
    order of ``ids_masked`` ``(B, n_masked)``.
    """

    def __init__(
        self,
        encoder: PixioEncoder,
        decoder: DecoderConfig | None = None,
        masking: MaskingConfig | None = None,
        norm_pix_loss: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder_config = decoder = decoder or DecoderConfig()
        self.masking = masking or MaskingConfig()
        self.norm_pix_loss = norm_pix_loss
        config = encoder.config
        n_cls, grid = config.num_class_tokens, config.pretrain_grid_size
        patch_dim = config.patch_size * config.patch_size * 3
        self.decoder_embed = nn.Linear(config.embed_dim, decoder.embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder.embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, n_cls + grid * grid, decoder.embed_dim)
        )
        norm_layer = partial(nn.LayerNorm, eps=config.layer_norm_eps)
        self.decoder_blocks = nn.ModuleList(
            Block(
                decoder.embed_dim,
                decoder.num_heads,
                decoder.mlp_ratio,
                qkv_bias=True,
                norm_layer=norm_layer,
            )
            for _ in range(decoder.depth)
        )
        self.decoder_norm = norm_layer(decoder.embed_dim)
        self.decoder_pred = nn.Linear(decoder.embed_dim, patch_dim)
        self._reset_decoder()

    def _reset_decoder(self) -> None:
        trunc_normal_(self.decoder_pos_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for name, module in self.named_children():
            if name != "encoder":
                module.apply(_init_linear_and_norm)

    def config_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this model (saved as ``config.json`` in checkpoints)."""
        return {
            "encoder": self.encoder.config.to_dict(),
            "decoder": asdict(self.decoder_config),
            "masking": asdict(self.masking),
            "norm_pix_loss": self.norm_pix_loss,
        }

    @classmethod
    def from_config_dict(cls, values: dict[str, Any]) -> PixioMAE:
        from pixio_core.models.encoder import EncoderConfig

        return cls(
            PixioEncoder(EncoderConfig.from_dict(values["encoder"])),
            decoder=DecoderConfig(**values["decoder"]),
            masking=MaskingConfig(**values["masking"]),
            norm_pix_loss=bool(values.get("norm_pix_loss", True)),
        )

    def sample_mask(
        self, batch_size: int, grid_h: int, grid_w: int, generator: torch.Generator | None = None
    ) -> BlockMask:
        return sample_block_mask(
            batch_size, grid_h, grid_w, self.masking.mask_grid, self.masking.mask_ratio, generator
        )

    def encode_visible(self, images: torch.Tensor, mask: BlockMask) -> torch.Tensor:
        """Encoder output (final norm applied) for class tokens + visible patches, ``(B, n_cls + n_keep, D)``."""
        return self.encoder.forward_visible(images, mask.ids_keep)

    def decode(
        self,
        latent: torch.Tensor,
        mask: BlockMask,
        grid_h: int,
        grid_w: int,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict every patch, ``(B, h*w, p*p*3)``, from the visible tokens' latent; with
        ``rows`` ``(B, n)`` (patch indices) only those patches, ``(B, n, p*p*3)``."""
        n_cls = self.encoder.num_class_tokens
        tokens = self.decoder_embed(latent)
        batch, _, width = tokens.shape
        full = self.mask_token.to(tokens.dtype).expand(batch, grid_h * grid_w, width).clone()
        index = mask.ids_keep.unsqueeze(-1).expand(-1, -1, width)
        full = full.scatter(1, index, tokens[:, n_cls:])
        side = self.encoder.config.pretrain_grid_size
        pos = resample_abs_pos_embed(
            self.decoder_pos_embed,
            [grid_h, grid_w],
            [side, side],
            num_prefix_tokens=n_cls,
            antialias=False,
        )
        x = torch.cat([tokens[:, :n_cls], full], dim=1) + pos
        for block in self.decoder_blocks:
            x = block(x)
        x = x[:, n_cls:]
        if rows is not None:  # the head is per token: run it on the rows asked for only
            x = torch.gather(x, 1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return self.decoder_pred(self.decoder_norm(x))

    def forward(
        self,
        images: torch.Tensor,
        mask: BlockMask | None = None,
        generator: torch.Generator | None = None,
        predict: str = "all",
    ) -> dict[str, torch.Tensor]:
        if predict not in ("all", "masked"):
            raise ValueError(f"predict must be 'all' or 'masked', got {predict!r}")
        grid_h, grid_w = self.encoder.check_input(images)
        if mask is None:
            mask = self.sample_mask(images.shape[0], grid_h, grid_w, generator)
        mask = mask.to(images.device)
        rows = masked_rows(mask) if predict == "masked" else None
        pred = self.decode(self.encode_visible(images, mask), mask, grid_h, grid_w, rows)
        target = patchify(images, self.encoder.patch_size)
        if rows is not None:
            target = torch.gather(target, 1, rows.unsqueeze(-1).expand(-1, -1, target.shape[-1]))
        if self.norm_pix_loss:
            target = normalize_patches(target)
        per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
        out = {"pred": pred, "target": target, "mask": mask.mask}
        if rows is not None:  # every row is a masked patch
            out["ids_masked"] = rows
            return {"loss": per_patch.mean(), "loss_per_sample": per_patch.mean(dim=1), **out}
        masked = mask.mask.to(per_patch.dtype)
        loss = (per_patch * masked).sum() / masked.sum()
        loss_per_sample = (per_patch * masked).sum(dim=1) / masked.sum(dim=1)
        return {"loss": loss, "loss_per_sample": loss_per_sample, **out}


def masked_rows(mask: BlockMask) -> torch.Tensor:
    """``(B, n_masked)`` ascending patch indices of the masked patches (every sample masks
    ``h*w - n_keep`` of them). A stable sort, so no host synchronisation on a GPU."""
    n_masked = mask.mask.shape[1] - mask.ids_keep.shape[1]
    order = mask.mask.to(torch.int8).argsort(dim=1, descending=True, stable=True)
    return order[:, :n_masked]
