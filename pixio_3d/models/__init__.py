"""Stage 2 of pixio_3d: the networks on a Pixio encoder (tensors in, tensors out; no classical
solver, no file writer, no OpenCV or pycolmap).

* :mod:`~pixio_3d.models.reconstruction`: the multi-view reconstruction model, built from the
  :mod:`~pixio_3d.models.trunk` (alternating frame / global attention) and the
  :mod:`~pixio_3d.models.heads` (pose head, soft matches) plus a DPT head;
* :mod:`~pixio_3d.models.mono`: monocular dense heads (depth, segmentation).
"""

from pixio_3d.models.heads import PoseHead
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

__all__ = [
    "DenseHeadConfig",
    "DensePredictor",
    "LinearDenseHead",
    "MonoDepthConfig",
    "MonoDepthModel",
    "PoseHead",
    "ReconstructionConfig",
    "ReconstructionModel",
    "SegmentationConfig",
    "SegmentationModel",
    "compose_geometry",
    "dense_features",
]
