"""Stage 2 of pixio_3d: the networks on a Pixio encoder (tensors in, tensors out; no classical
solver, no file writer, no OpenCV or pycolmap).

* :mod:`~pixio_3d.models.reconstruction`: the multi-view reconstruction model, built from the
  :mod:`~pixio_3d.models.trunk` (alternating frame / global attention) and the
  :mod:`~pixio_3d.models.heads` (pose head, soft matches) plus a DPT head;
* :mod:`~pixio_3d.models.mapanything`: the architecture of the released MapAnything-with-Pixio
  model (parameter names as the released files; its DPT, pose and scale heads in
  :mod:`~pixio_3d.models.mapanything_heads`), loaded by
  :func:`~pixio_3d.models.released.load_reconstruction_model` (hub id, either released folder
  layout, or this project's checkpoints);
* :mod:`~pixio_3d.models.mono`: monocular dense heads (depth, segmentation).

Names are imported on first use (importing the package is cheap).
"""

from typing import TYPE_CHECKING

from pixio_core.lazy import lazy_exports

_EXPORTS = {
    "PoseHead": "pixio_3d.models.heads",
    "DenseHeadConfig": "pixio_3d.models.mono",
    "DensePredictor": "pixio_3d.models.mono",
    "LinearDenseHead": "pixio_3d.models.mono",
    "MonoDepthConfig": "pixio_3d.models.mono",
    "MonoDepthModel": "pixio_3d.models.mono",
    "SegmentationConfig": "pixio_3d.models.mono",
    "SegmentationModel": "pixio_3d.models.mono",
    "dense_features": "pixio_3d.models.mono",
    "ReconstructionConfig": "pixio_3d.models.reconstruction",
    "ReconstructionModel": "pixio_3d.models.reconstruction",
    "MapAnythingConfig": "pixio_3d.models.mapanything",
    "MapAnythingModel": "pixio_3d.models.mapanything",
    "load_reconstruction_model": "pixio_3d.models.released",
    "compose_geometry": "pixio_3d.models.reconstruction",
}
__all__ = [
    "DenseHeadConfig",
    "DensePredictor",
    "LinearDenseHead",
    "MapAnythingConfig",
    "MapAnythingModel",
    "MonoDepthConfig",
    "MonoDepthModel",
    "PoseHead",
    "ReconstructionConfig",
    "ReconstructionModel",
    "SegmentationConfig",
    "SegmentationModel",
    "compose_geometry",
    "dense_features",
    "load_reconstruction_model",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pixio_3d.models.heads import PoseHead
    from pixio_3d.models.mapanything import MapAnythingConfig, MapAnythingModel
    from pixio_3d.models.mono import (
        DenseHeadConfig,
        DensePredictor,
        LinearDenseHead,
        MonoDepthConfig,
        MonoDepthModel,
        SegmentationConfig,
        SegmentationModel,
        dense_features,
    )
    from pixio_3d.models.reconstruction import (
        ReconstructionConfig,
        ReconstructionModel,
        compose_geometry,
    )
    from pixio_3d.models.released import load_reconstruction_model
