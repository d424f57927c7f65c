"""The one table of 3D tasks that training, evaluation, checkpoints and the CLIs all read.

Each task says which model it builds (config class + model class), how its model config comes
from the training settings, which loss trains it and how a batch turns into that loss, how its
checkpoints are scored, and what ``pixio-depth`` reads from it:

=================  ========================  =====================================  ============
task               model                     loss                                   pixio-depth
=================  ========================  =====================================  ============
``reconstruction`` :class:`ReconstructionModel` MapAnything-style factored geometry  metric depth
``depth``          :class:`MonoDepthModel`   SSI (relative) or SiLog (metric)       its mode
``segmentation``   :class:`SegmentationModel` cross-entropy                          --
=================  ========================  =====================================  ============

``TASKS[name]`` or :func:`get_task` (which lists the valid names when one is unknown).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pixio_3d.data.labels import IGNORE_INDEX, num_label_classes
from pixio_3d.models import (
    MonoDepthConfig,
    MonoDepthModel,
    ReconstructionConfig,
    ReconstructionModel,
    SegmentationConfig,
    SegmentationModel,
)
from pixio_3d.sfm.settings import POSE_SOLVERS, FeatureSettings
from pixio_3d.training.losses import (
    ReconstructionLoss,
    ReconstructionLossConfig,
    ScaleShiftInvariantLoss,
    SegmentationLoss,
    SiLogLoss,
)
from pixio_core.engine import unwrap

__all__ = ["TASKS", "EvalOptions", "Task", "get_task"]

DEFAULT_VIEW_COUNTS = (2, 4, 8, 16)


@dataclass(frozen=True)
class EvalOptions:
    """How held-out scenes are scored (see :mod:`pixio_3d.evaluation.evaluate`).

    Reconstruction: ``samples_per_scene`` view sets per scene drawn by ``view_selection`` with
    ``seed``; the model sees images only unless ``give_intrinsics``; cameras from
    ``pose_solver`` (with ``feature_settings``). Depth and segmentation: the first
    ``max_views_per_scene`` views of each scene (all if None). ``device`` runs the model;
    ``progress`` shows bars.
    """

    samples_per_scene: int = 1
    seed: int = 0
    give_intrinsics: bool = False
    view_selection: str = "overlap"
    pose_solver: str = "head"
    feature_settings: FeatureSettings | None = None
    max_views_per_scene: int | None = None
    device: str | torch.device = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        from pixio_3d.data.dataset import VIEW_SELECTIONS

        if self.samples_per_scene < 1:
            raise ValueError(f"samples_per_scene must be >= 1, got {self.samples_per_scene}")
        if self.view_selection not in VIEW_SELECTIONS:
            raise ValueError(
                f"view_selection must be one of {VIEW_SELECTIONS}, got {self.view_selection!r}"
            )
        if self.pose_solver not in POSE_SOLVERS:
            raise ValueError(f"pose_solver must be one of {POSE_SOLVERS}, got {self.pose_solver!r}")
        if self.max_views_per_scene is not None and self.max_views_per_scene < 1:
            raise ValueError(f"max_views_per_scene must be >= 1, got {self.max_views_per_scene}")


class Task:
    """One row of the table. Subclasses fill in the task's parts."""

    name: str
    config_type: type
    model_type: type
    summary: str

    # ------------------------------------------------------------------ models
    def model_config(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The plain model config from the training settings (``configs/recon_train.yaml`` as
        a plain dict: ``recon.model``, ``recon.dense``, ``depth``, ``segmentation``)."""
        raise NotImplementedError

    def build_model(self, encoder: nn.Module, model_config: Mapping[str, Any]) -> nn.Module:
        """The task's model on ``encoder`` (its config validates the values)."""
        return self.model_type(encoder, self.config_type(**model_config))

    def label_mode(self, settings: Mapping[str, Any]) -> str | None:
        """The segmentation label mode the training samples need (None: no labels)."""
        return None

    # ------------------------------------------------------------------ training
    def loss(
        self, model_config: Mapping[str, Any], loss_settings: Mapping[str, Any] | None = None
    ) -> nn.Module:
        """The loss module for a model of ``model_config`` (``loss_settings``: overrides of
        :class:`~pixio_3d.training.losses.ReconstructionLossConfig`, reconstruction only)."""
        raise NotImplementedError

    def compute_loss(
        self, model: nn.Module, loss: nn.Module, batch: dict[str, Any], give_intrinsics: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, terms)`` of a prepared batch (``images (B, V, 3, H, W)`` normalized)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        model: nn.Module,
        checkpoint_config: Mapping[str, Any],
        scenes: str | os.PathLike,
        view_counts: tuple[int, ...],
        options: EvalOptions,
    ) -> list[dict[str, Any]]:
        """Rows of averaged metrics on the held-out ``scenes``."""
        raise NotImplementedError

    def depth_map(
        self, model: nn.Module, images: torch.Tensor
    ) -> tuple[str, np.ndarray, np.ndarray | None]:
        """``pixio-depth``: ``(kind, values (H, W), confidence (H, W) or None)`` of one photo
        ``images (1, 3, H, W)`` in [0, 1]; ``kind`` is ``depth`` (metric z-depth) or
        ``disparity`` (relative, up to scale and shift)."""
        raise ValueError(
            f"pixio-depth needs a depth or reconstruction checkpoint, got a {self.name!r} one"
        )


class ReconstructionTask(Task):
    name = "reconstruction"
    config_type = ReconstructionConfig
    model_type = ReconstructionModel
    summary = "multi-view cameras, depth and points (MapAnything-style)"

    def model_config(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        return dict(settings["recon"]["model"])

    def build_model(self, encoder: nn.Module, model_config: Mapping[str, Any]) -> nn.Module:
        """:class:`ReconstructionModel`, or with ``architecture: mapanything`` (``recon=mapanything_tiny``)
        a :class:`~pixio_3d.models.mapanything.MapAnythingModel` of those sizes on ``encoder``:
        the released model's architecture, trained with the same losses."""
        if model_config.get("architecture") == "mapanything":
            from pixio_3d.models.mapanything import MapAnythingConfig, MapAnythingModel

            values = {**model_config, "encoder": encoder.config}
            return MapAnythingModel(MapAnythingConfig(**values), encoder=encoder)
        return super().build_model(encoder, model_config)

    def loss(
        self, model_config: Mapping[str, Any], loss_settings: Mapping[str, Any] | None = None
    ) -> nn.Module:
        return ReconstructionLoss(ReconstructionLossConfig(**dict(loss_settings or {})))

    def compute_loss(
        self, model: nn.Module, loss: nn.Module, batch: dict[str, Any], give_intrinsics: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        uses_rays = unwrap(model).config.use_intrinsics_input
        intrinsics = batch["intrinsics"] if give_intrinsics and uses_rays else None
        return loss(model(batch["images"], intrinsics), batch)

    def evaluate(self, model, checkpoint_config, scenes, view_counts, options):
        from pixio_3d.evaluation.evaluate import evaluate_reconstruction

        return evaluate_reconstruction(model, scenes, view_counts, options=options)

    def depth_map(self, model, images):
        from pixio_3d.pipeline import predict_views

        prediction = predict_views(model, images)
        return "depth", prediction["depth_z"][0], prediction["conf"][0]


class _DenseTask(Task):
    """Monocular tasks: the views of a sample are flattened into the batch."""

    @staticmethod
    def _dense(settings: Mapping[str, Any]) -> dict[str, Any]:
        return dict(settings["recon"]["dense"])


class DepthTask(_DenseTask):
    name = "depth"
    config_type = MonoDepthConfig
    model_type = MonoDepthModel
    summary = "monocular depth: relative (disparity) or metric (metres)"

    def model_config(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        depth = settings["depth"]
        return {
            **self._dense(settings),
            "head": depth["head"],
            "mode": depth["mode"],
            "max_depth": depth["max_depth"],
        }

    def loss(self, model_config, loss_settings=None) -> nn.Module:
        relative = model_config.get("mode", "relative") == "relative"
        return ScaleShiftInvariantLoss() if relative else SiLogLoss()

    def compute_loss(self, model, loss, batch, give_intrinsics):
        output = model(batch["images"].flatten(0, 1))
        depth, valid = batch["depth"].flatten(0, 1), batch["valid"].flatten(0, 1)
        if unwrap(model).config.mode == "metric":
            return loss(output["depth"], depth, valid), {}
        disparity = torch.where(valid, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
        return loss(output["disparity"], disparity, valid), {}

    def evaluate(self, model, checkpoint_config, scenes, view_counts, options):
        from pixio_3d.evaluation.evaluate import evaluate_depth

        return evaluate_depth(
            model, scenes, max_views_per_scene=options.max_views_per_scene, device=options.device
        )

    def depth_map(self, model, images):
        from pixio_core.imaging import normalize_images

        device = next(model.parameters()).device
        with torch.no_grad():
            output = model(normalize_images(images.to(device)))
        kind = "depth" if model.config.mode == "metric" else "disparity"
        return kind, output[kind][0].double().cpu().numpy(), None


class SegmentationTask(_DenseTask):
    name = "segmentation"
    config_type = SegmentationConfig
    model_type = SegmentationModel
    summary = "semantic segmentation (object ids or shape classes)"

    def model_config(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        segmentation = settings["segmentation"]
        classes = num_label_classes(segmentation["labels"], segmentation["num_object_ids"])
        return {**self._dense(settings), "head": segmentation["head"], "num_classes": classes}

    def label_mode(self, settings: Mapping[str, Any]) -> str | None:
        return settings["segmentation"]["labels"]

    def loss(self, model_config, loss_settings=None) -> nn.Module:
        return SegmentationLoss(IGNORE_INDEX)

    def compute_loss(self, model, loss, batch, give_intrinsics):
        output = model(batch["images"].flatten(0, 1))
        return loss(output["logits"], batch["labels"].flatten(0, 1)), {}

    def evaluate(self, model, checkpoint_config, scenes, view_counts, options):
        from pixio_3d.evaluation.evaluate import evaluate_segmentation

        labels = checkpoint_config.get("train", {}).get("segmentation_labels", "shape")
        return evaluate_segmentation(
            model,
            scenes,
            labels,
            max_views_per_scene=options.max_views_per_scene,
            device=options.device,
        )


TASKS: dict[str, Task] = {
    task.name: task for task in (ReconstructionTask(), DepthTask(), SegmentationTask())
}


def get_task(name: str) -> Task:
    """The task called ``name``; a ``ValueError`` lists the valid names."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name]
