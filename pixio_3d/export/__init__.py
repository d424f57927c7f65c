"""Stage 4 of pixio_3d: reconstructions as files other 3D tools open, one writer per format.

* :mod:`~pixio_3d.export.filtering`: point filtering (confidence, voxel grid, outliers), a step
  of its own before any writer;
* :mod:`~pixio_3d.export.ply` (PLY), :mod:`~pixio_3d.export.glb` (points + camera frusta),
  :mod:`~pixio_3d.export.colmap` (COLMAP sparse model), :mod:`~pixio_3d.export.nerfstudio`
  (``transforms.json``), :mod:`~pixio_3d.export.depth_maps` (depth / confidence maps),
  :mod:`~pixio_3d.export.preview` (a PNG render).

Inputs follow :mod:`pixio_3d.geometry` (see :mod:`~pixio_3d.export.arrays`); arrays may be numpy
or torch. Every writer goes through a temporary sibling that is renamed into place
(:mod:`pixio_core.io`), so an interrupted export never leaves a half-written file; an existing
output is only replaced with ``overwrite=True`` (``FileExistsError`` otherwise).

Names are imported on first use (importing the package is cheap).
"""

from typing import TYPE_CHECKING

from pixio_core.lazy import lazy_exports

_EXPORTS = {
    "colmap_observations": "pixio_3d.export.colmap",
    "write_colmap_model": "pixio_3d.export.colmap",
    "save_confidence_png": "pixio_3d.export.depth_maps",
    "save_depth_map": "pixio_3d.export.depth_maps",
    "write_view_maps": "pixio_3d.export.depth_maps",
    "FilteredPoints": "pixio_3d.export.filtering",
    "auto_voxel_size": "pixio_3d.export.filtering",
    "confidence_threshold": "pixio_3d.export.filtering",
    "filter_point_cloud": "pixio_3d.export.filtering",
    "OPENCV_TO_GLTF": "pixio_3d.export.glb",
    "write_glb_scene": "pixio_3d.export.glb",
    "OPENCV_TO_OPENGL_CAMERA": "pixio_3d.export.nerfstudio",
    "write_nerfstudio_transforms": "pixio_3d.export.nerfstudio",
    "write_ply": "pixio_3d.export.ply",
}
__all__ = [
    "FilteredPoints",
    "OPENCV_TO_GLTF",
    "OPENCV_TO_OPENGL_CAMERA",
    "auto_voxel_size",
    "colmap_observations",
    "confidence_threshold",
    "filter_point_cloud",
    "save_confidence_png",
    "save_depth_map",
    "write_colmap_model",
    "write_glb_scene",
    "write_nerfstudio_transforms",
    "write_ply",
    "write_view_maps",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pixio_3d.export.colmap import (
        colmap_observations,
        write_colmap_model,
    )
    from pixio_3d.export.depth_maps import (
        save_confidence_png,
        save_depth_map,
        write_view_maps,
    )
    from pixio_3d.export.filtering import (
        FilteredPoints,
        auto_voxel_size,
        confidence_threshold,
        filter_point_cloud,
    )
    from pixio_3d.export.glb import (
        OPENCV_TO_GLTF,
        write_glb_scene,
    )
    from pixio_3d.export.nerfstudio import (
        OPENCV_TO_OPENGL_CAMERA,
        write_nerfstudio_transforms,
    )
    from pixio_3d.export.ply import write_ply
