"""Explicit registries of encoder sizes and pre-training presets.

Official sizes follow the released checkpoints exactly (paper Table 9 / ``pixio/pixio.py``);
``pixio_vits16`` and ``pixio_vitt16`` are small sizes for CPUs.
"""

from __future__ import annotations

from typing import Any

from pixio_core.models.encoder import EncoderConfig, PixioEncoder
from pixio_core.models.mae import DecoderConfig, MaskingConfig, PixioMAE

# name -> (embed_dim, depth, num_heads, mlp_ratio)
ENCODER_SIZES: dict[str, tuple[int, int, int, float]] = {
    "pixio_vitt16": (192, 12, 3, 4.0),
    "pixio_vits16": (384, 12, 6, 4.0),
    "pixio_vitb16": (768, 12, 12, 4.0),
    "pixio_vitl16": (1024, 24, 16, 4.0),
    "pixio_vith16": (1280, 32, 16, 4.0),
    "pixio_vit1b16": (1536, 48, 24, 4.0),
    "pixio_vit5b16": (3072, 48, 32, 4.0),
}

# Sizes with weights released by the authors (gated Hugging Face repos facebook/pixio-<variant>).
OFFICIAL_ENCODERS = (
    "pixio_vitb16",
    "pixio_vitl16",
    "pixio_vith16",
    "pixio_vit1b16",
    "pixio_vit5b16",
)
CPU_SIZES = ("pixio_vitt16", "pixio_vits16")

# Weights trained by this project and shipped inside the package (pixio_core/weights/<name>/):
# name -> what it is. They load offline by name: load_encoder("pixio_sim_vitt16").
SHIPPED_ENCODERS: dict[str, str] = {
    "pixio_sim_vitt16": (
        "a 5.5 M-parameter Pixio ViT-T/16 pre-trained on 2 CPU cores (4,000 steps, batch 32; "
        "86 minutes of wall time on shared cores) on 15,000 frames rendered from this project's simulators "
        "(PushBlock, 8 MetaWorld tasks, 3D rooms) at 128 px; a small simulator-domain model, "
        "not the released Pixio weights"
    ),
}

# Decoders of the two recipes. The paper's Pixio decoder is 512 wide, 32 blocks, 16 heads; MAE's
# is 512 wide, 8 blocks. At the CPU sizes both decoders are scaled down (width 128, 4 heads) and
# keep the paper's 4:1 depth ratio (8 vs 2 blocks), so the two recipes stay comparable.
_FULL_DECODERS = {"pixio": DecoderConfig(512, 32, 16), "mae": DecoderConfig(512, 8, 16)}
_CPU_DECODERS = {"pixio": DecoderConfig(128, 8, 4), "mae": DecoderConfig(128, 2, 4)}
RECIPES: dict[str, dict[str, Any]] = {
    # 8 class tokens, 4x4-patch block masking at 75 %.
    "pixio": {"num_class_tokens": 8, "masking": MaskingConfig(mask_ratio=0.75, mask_grid=4)},
    # The original MAE: 1 class token, per-patch masking at 75 %.
    "mae": {"num_class_tokens": 1, "masking": MaskingConfig(mask_ratio=0.75, mask_grid=1)},
}


def _unknown(kind: str, name: str, valid: list[str]) -> ValueError:
    return ValueError(f"unknown {kind} {name!r}; valid names are: {', '.join(sorted(valid))}")


def encoder_config(name: str, **overrides: Any) -> EncoderConfig:
    """The :class:`EncoderConfig` of a registered size, with ``overrides`` applied."""
    if name not in ENCODER_SIZES:
        raise _unknown("encoder", name, list(ENCODER_SIZES))
    dim, depth, heads, mlp_ratio = ENCODER_SIZES[name]
    values: dict[str, Any] = {
        "embed_dim": dim,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": mlp_ratio,
    }
    values.update(overrides)
    return EncoderConfig(**values)


def create_encoder(name: str, **overrides: Any) -> PixioEncoder:
    """Build a randomly initialised encoder of a registered size, e.g. ``create_encoder("pixio_vitb16")``."""
    return PixioEncoder(encoder_config(name, **overrides))


def list_encoders() -> list[str]:
    return list(ENCODER_SIZES)


def create_mae(encoder_name: str, recipe: str = "pixio", **overrides: Any) -> PixioMAE:
    """Build a pre-training model: a registered encoder size trained with a recipe.

    ``recipe="pixio"``: 8 class tokens, 4x4 block masking, deep decoder (512x32 at full sizes);
    ``recipe="mae"``: the original MAE (1 class token, per-patch masking, 8-block decoder).
    ``overrides`` may set encoder fields (``drop_path_rate``, ``image_size``, ...), ``decoder``
    (a :class:`DecoderConfig`), ``masking`` (a :class:`MaskingConfig`) or ``norm_pix_loss``.
    """
    if recipe not in RECIPES:
        raise _unknown("recipe", recipe, list(RECIPES))
    if encoder_name not in ENCODER_SIZES:
        raise _unknown("encoder", encoder_name, list(ENCODER_SIZES))
    overrides = dict(overrides)
    decoder = overrides.pop("decoder", None)
    if decoder is None:
        decoder = (_CPU_DECODERS if encoder_name in CPU_SIZES else _FULL_DECODERS)[recipe]
    masking = overrides.pop("masking", RECIPES[recipe]["masking"])
    norm_pix_loss = overrides.pop("norm_pix_loss", True)
    overrides.setdefault("num_class_tokens", RECIPES[recipe]["num_class_tokens"])
    encoder = create_encoder(encoder_name, **overrides)
    return PixioMAE(encoder, decoder=decoder, masking=masking, norm_pix_loss=norm_pix_loss)
