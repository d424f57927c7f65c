"""pixio_core: the Pixio encoder, MAE pre-training, checkpoints and loading of released weights."""

from pixio_core.loading import (
    export_hf,
    export_official,
    load_encoder,
    load_frozen_encoder,
    save_encoder,
)
from pixio_core.models import (
    DecoderConfig,
    EncoderConfig,
    MaskingConfig,
    PixioEncoder,
    PixioMAE,
    create_encoder,
    create_mae,
    list_encoders,
)

__all__ = [
    "load_frozen_encoder",
    "DecoderConfig",
    "EncoderConfig",
    "MaskingConfig",
    "PixioEncoder",
    "PixioMAE",
    "create_encoder",
    "create_mae",
    "export_hf",
    "export_official",
    "list_encoders",
    "load_encoder",
    "save_encoder",
]
