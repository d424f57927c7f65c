"""Stage 1 of pixio_3d: the data that goes into the models.

* :mod:`~pixio_3d.data.dataset`: multi-view scenes with exact ground truth on disk (the
  ``pixio-multiview-v1`` layout) and :class:`MultiViewDataset` of N-view samples;
* :mod:`~pixio_3d.data.photos`: a folder of photos -> one batch of same-size views;
* :mod:`~pixio_3d.data.scenes` (+ :mod:`~pixio_3d.data.textures`): procedural rooms rendered
  with MuJoCo (imported on its own: it needs ``MUJOCO_GL`` set first);
* :mod:`~pixio_3d.data.labels`: segmentation labels from the scenes' object ids.

Names are imported on first use (importing the package is cheap).
"""

from typing import TYPE_CHECKING

from pixio_core.lazy import lazy_exports

_EXPORTS = {
    "MultiViewDataset": "pixio_3d.data.dataset",
    "SceneCameras": "pixio_3d.data.dataset",
    "covisibility": "pixio_3d.data.dataset",
    "find_scenes": "pixio_3d.data.dataset",
    "read_cameras": "pixio_3d.data.dataset",
    "read_scene": "pixio_3d.data.dataset",
    "read_view": "pixio_3d.data.dataset",
    "write_scene": "pixio_3d.data.dataset",
    "CONVENTIONS": "pixio_3d.data.layout",
    "FORMAT": "pixio_3d.data.layout",
    "VIEW_SELECTIONS": "pixio_3d.data.layout",
    "LoadedPhotos": "pixio_3d.data.photos",
    "PhotoTransform": "pixio_3d.data.photos",
    "load_photos": "pixio_3d.data.photos",
}
__all__ = [
    "CONVENTIONS",
    "FORMAT",
    "LoadedPhotos",
    "MultiViewDataset",
    "PhotoTransform",
    "SceneCameras",
    "VIEW_SELECTIONS",
    "covisibility",
    "find_scenes",
    "load_photos",
    "read_cameras",
    "read_scene",
    "read_view",
    "write_scene",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pixio_3d.data.dataset import (
        MultiViewDataset,
        SceneCameras,
        covisibility,
        find_scenes,
        read_cameras,
        read_scene,
        read_view,
        write_scene,
    )
    from pixio_3d.data.layout import (
        CONVENTIONS,
        FORMAT,
        VIEW_SELECTIONS,
    )
    from pixio_3d.data.photos import (
        LoadedPhotos,
        PhotoTransform,
        load_photos,
    )
