"""Datasets: image folders, the procedural shapes set, transforms."""

from pixio_core.data.folder import (
    ImageFolderDataset,
    eval_transform,
    find_images,
    pretrain_transform,
    read_rgb,
)
from pixio_core.data.synthetic import SHAPE_CLASSES, make_shapes_dataset

__all__ = [
    "SHAPE_CLASSES",
    "ImageFolderDataset",
    "eval_transform",
    "find_images",
    "make_shapes_dataset",
    "pretrain_transform",
    "read_rgb",
]
