"""pixio_core: the Pixio encoder, MAE pre-training, checkpoints and loading of released weights.

Where to start: :func:`load_encoder` (released weights, our checkpoints, Hugging Face folders,
the hub), :func:`create_encoder` / :func:`create_mae` (registered sizes and recipes), the one
training engine :func:`train_steps`, and the ``pixio-pretrain`` / ``pixio-distill`` /
``pixio-probe`` / ``pixio-curate`` commands (:mod:`pixio_core.cli`). Names are imported on
first use, so importing the package is cheap.
"""

from typing import TYPE_CHECKING

from pixio_core.lazy import lazy_exports

_EXPORTS = {
    "train_steps": "pixio_core.engine",
    "normalize_images": "pixio_core.imaging",
    "export_hf": "pixio_core.loading",
    "export_official": "pixio_core.loading",
    "load_encoder": "pixio_core.loading",
    "load_frozen_encoder": "pixio_core.loading",
    "save_encoder": "pixio_core.loading",
    "DecoderConfig": "pixio_core.models",
    "EncoderConfig": "pixio_core.models",
    "MaskingConfig": "pixio_core.models",
    "PixioEncoder": "pixio_core.models",
    "PixioMAE": "pixio_core.models",
    "create_encoder": "pixio_core.models",
    "create_mae": "pixio_core.models",
    "list_encoders": "pixio_core.models",
}
__all__ = [
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
    "load_frozen_encoder",
    "normalize_images",
    "save_encoder",
    "train_steps",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pixio_core.engine import train_steps
    from pixio_core.imaging import normalize_images
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
