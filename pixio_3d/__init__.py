"""pixio_3d: photos in; cameras, depth and dense coloured points out, in formats 3D tools open.

The package is laid out by stage, joined in one place (:mod:`pixio_3d.pipeline`)::

    data/      scenes on disk, photos, synthetic MuJoCo rooms, labels
      -> models/     the networks on a Pixio encoder (tensors only)
      -> sfm/        classical geometry that refines the cameras (SIFT, bundle adjustment)
      -> export/     point filtering, PLY / GLB / COLMAP / nerfstudio / depth maps / preview
    pipeline.py  predict (model + pose solver) and reconstruct_photos (a folder -> files)
    tasks.py     the task table (reconstruction, depth, segmentation)
    training/    losses and training on the shared engine; evaluation/: metrics, scoring
    cli/         pixio-recon, pixio-depth, pixio-scenes, pixio-recon-train/-eval/-demo

Where to start: ``model, _ = load_model(checkpoint)`` then ``reconstruct_photos(photo_dir,
out_dir, model)`` (what ``pixio-recon`` runs), or ``predict(model, images)`` for tensors.
Names are imported on first use.
"""

from typing import TYPE_CHECKING

from pixio_core.lazy import lazy_exports

_EXPORTS = {
    "build_model": "pixio_3d.checkpoint",
    "load_reconstruction_model": "pixio_3d.models.released",
    "MapAnythingModel": "pixio_3d.models.mapanything",
    "load_model": "pixio_3d.checkpoint",
    "save_model": "pixio_3d.checkpoint",
    "MultiViewDataset": "pixio_3d.data",
    "load_photos": "pixio_3d.data",
    "evaluate_model": "pixio_3d.evaluation.evaluate",
    "MonoDepthModel": "pixio_3d.models",
    "ReconstructionConfig": "pixio_3d.models",
    "ReconstructionModel": "pixio_3d.models",
    "SegmentationModel": "pixio_3d.models",
    "predict": "pixio_3d.pipeline",
    "predict_views": "pixio_3d.pipeline",
    "reconstruct_photos": "pixio_3d.pipeline",
    "FeatureSettings": "pixio_3d.sfm.settings",
    "POSE_SOLVERS": "pixio_3d.sfm.settings",
    "EvalOptions": "pixio_3d.tasks",
    "TASKS": "pixio_3d.tasks",
    "get_task": "pixio_3d.tasks",
}
__all__ = [
    "EvalOptions",
    "FeatureSettings",
    "MapAnythingModel",
    "MonoDepthModel",
    "MultiViewDataset",
    "POSE_SOLVERS",
    "ReconstructionConfig",
    "ReconstructionModel",
    "SegmentationModel",
    "TASKS",
    "build_model",
    "evaluate_model",
    "get_task",
    "load_model",
    "load_photos",
    "load_reconstruction_model",
    "predict",
    "predict_views",
    "reconstruct_photos",
    "save_model",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pixio_3d.checkpoint import (
        build_model,
        load_model,
        save_model,
    )
    from pixio_3d.data import (
        MultiViewDataset,
        load_photos,
    )
    from pixio_3d.evaluation.evaluate import evaluate_model
    from pixio_3d.models import (
        MonoDepthModel,
        ReconstructionConfig,
        ReconstructionModel,
        SegmentationModel,
    )
    from pixio_3d.models.mapanything import MapAnythingModel
    from pixio_3d.models.released import load_reconstruction_model
    from pixio_3d.pipeline import (
        predict,
        predict_views,
        reconstruct_photos,
    )
    from pixio_3d.sfm.settings import (
        POSE_SOLVERS,
        FeatureSettings,
    )
    from pixio_3d.tasks import (
        TASKS,
        EvalOptions,
        get_task,
    )
