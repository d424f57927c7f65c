"""3D models on a Pixio encoder: multi-view reconstruction and monocular dense heads."""

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
    PoseHead,
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
