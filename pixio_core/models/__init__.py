"""Pixio models: the encoder, the MAE pre-training model and their registries."""

from pixio_core.models.encoder import EncoderConfig, PixioEncoder, evenly_spaced_blocks
from pixio_core.models.mae import DecoderConfig, MaskingConfig, PixioMAE
from pixio_core.models.registry import create_encoder, create_mae, encoder_config, list_encoders

__all__ = [
    "DecoderConfig",
    "EncoderConfig",
    "MaskingConfig",
    "PixioEncoder",
    "PixioMAE",
    "create_encoder",
    "create_mae",
    "encoder_config",
    "evenly_spaced_blocks",
    "list_encoders",
]
