"""Stage 1 of pixio_3d: the data that goes into the models.

* :mod:`~pixio_3d.data.dataset`: multi-view scenes with exact ground truth on disk (the
  ``pixio-multiview-v1`` layout) and :class:`MultiViewDataset` of N-view samples;
* :mod:`~pixio_3d.data.photos`: a folder of photos -> one batch of same-size views;
* :mod:`~pixio_3d.data.scenes` (+ :mod:`~pixio_3d.data.textures`): procedural rooms rendered
  with MuJoCo (imported on its own: it needs ``MUJOCO_GL`` set first);
* :mod:`~pixio_3d.data.labels`: segmentation labels from the scenes' object ids.
"""

from pixio_3d.data.dataset import (
    CONVENTIONS,
    FORMAT,
    VIEW_SELECTIONS,
    MultiViewDataset,
    SceneCameras,
    covisibility,
    find_scenes,
    read_cameras,
    read_scene,
    read_view,
    write_scene,
)
from pixio_3d.data.photos import LoadedPhotos, PhotoTransform, load_photos

__all__ = [
    "CONVENTIONS",
    "FORMAT",
    "VIEW_SELECTIONS",
    "LoadedPhotos",
    "MultiViewDataset",
    "PhotoTransform",
    "SceneCameras",
    "covisibility",
    "find_scenes",
    "load_photos",
    "read_cameras",
    "read_scene",
    "read_view",
    "write_scene",
]
