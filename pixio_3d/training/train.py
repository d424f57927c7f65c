"""Training the 3D models on the shared engine (:func:`pixio_core.engine.train_steps`).

The entry script (:mod:`pixio_3d.cli.train`) only wires these together:

* :class:`TrainingSamples` turns the ``(index, epoch)`` keys of
  :class:`pixio_core.data.sampler.StepBatchSampler` into :class:`pixio_3d.data.MultiViewDataset`
  items of that epoch (so every epoch draws new view sets, and a resumed run sees the same
  batches), adding segmentation ``labels`` from the generator's object ids.
* :func:`step_plan` draws the per-step choices (number of views, whether known intrinsics are
  given) from ``(seed, step)`` only: the same on every rank and after a resume.
* :func:`task_loss_fn` turns a task of :data:`pixio_3d.tasks.TASKS` and its loss into the
  engine's ``loss_fn``; :func:`train_task_steps` runs the engine with it.
* :func:`build_optimizer` sets up AdamW with per-group learning-rate scales;
  :func:`checkpoint_writer` / :func:`resume_training` write and read checkpoints that are
  :func:`pixio_3d.checkpoint.load_model`-able and carry ``train_state.pt`` (optimizer, step, RNG).

Images arrive in [0, 1] from the dataset and are ImageNet-normalized here (the encoder contract).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pixio_3d.checkpoint import save_model, saved_model_config
from pixio_3d.data import MultiViewDataset
from pixio_3d.data.labels import apply_labels, label_table
from pixio_3d.tasks import Task, get_task
from pixio_core.checkpoint import CheckpointMismatchError
from pixio_core.data.sampler import mix_seed
from pixio_core.distributed import DistInfo
from pixio_core.engine import LossFn, StepHook, param_groups, resume, train_steps, unwrap
from pixio_core.imaging import normalize_images

__all__ = [
    "CheckpointMismatchError",
    "TrainingSamples",
    "build_optimizer",
    "checkpoint_writer",
    "prepare_batch",
    "resume_training",
    "step_plan",
    "task_loss_fn",
    "train_task_steps",
]


# ------------------------------------------------------------------------------ data
class TrainingSamples(torch.utils.data.Dataset):
    """A :class:`MultiViewDataset` addressed by ``(index, epoch)`` keys (or plain indices).

    Adds ``labels (V, H, W)`` int64 when ``labels`` (a label mode) is given.
    """

    def __init__(
        self, dataset: MultiViewDataset, labels: str | None = None, num_classes: int = 0
    ) -> None:
        self.dataset = dataset
        self.labels = labels
        self.num_classes = num_classes
        self._tables: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple | list) else (key, 0)
        self.dataset.set_epoch(int(epoch))  # each loader worker holds its own copy
        item = self.dataset[int(index)]
        if self.labels is not None:
            scene_index = int(index) // self.dataset.samples_per_scene
            if scene_index not in self._tables:
                scene_dir = self.dataset.scenes[scene_index].path
                self._tables[scene_index] = label_table(scene_dir, self.labels, self.num_classes)
            item["labels"] = apply_labels(item["object_ids"], self._tables[scene_index])
        return item


def prepare_batch(
    batch: dict[str, Any], device: torch.device | str, num_views: int | None = None
) -> dict[str, Any]:
    """A collated dataset batch on ``device``: the first ``num_views`` views (all if None),
    ``images (B, V, 3, H, W)`` ImageNet-normalized, ``valid`` = ``valid_mask``."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 2:
            value = value[:, :num_views] if num_views else value
            out[key] = value.to(device, non_blocking=True)
        else:
            out[key] = value
    out["images"] = normalize_images(out["images"].float())
    out["valid"] = out["valid_mask"]
    return out


def step_plan(
    seed: int, step: int, min_views: int, max_views: int, intrinsics_probability: float
) -> tuple[int, bool]:
    """``(views, give_intrinsics)`` of a step, a pure function of ``(seed, step)``."""
    if not 1 <= min_views <= max_views:
        raise ValueError(f"need 1 <= min_views ({min_views}) <= max_views ({max_views})")
    generator = torch.Generator().manual_seed(mix_seed(seed, step, 7))
    views = int(torch.randint(min_views, max_views + 1, (1,), generator=generator))
    give = bool(torch.rand((), generator=generator) < intrinsics_probability)
    return views, give


# ------------------------------------------------------------------------------ steps
def task_loss_fn(
    task: Task | str,
    model: nn.Module,
    loss: nn.Module,
    *,
    seed: int = 0,
    min_views: int = 2,
    max_views: int = 2,
    intrinsics_probability: float = 0.0,
) -> LossFn:
    """The engine's ``loss_fn`` for ``task``: each step's view count and whether intrinsics
    are given come from :func:`step_plan`; the batch is cut to that many views and normalized
    (:func:`prepare_batch`), then ``task.compute_loss`` gives the loss and its terms (logged as
    ``loss_<term>``, with ``views`` and ``intrinsics``)."""
    task = get_task(task) if isinstance(task, str) else task

    def loss_fn(batch: dict[str, Any], step: int, micro: int) -> tuple[torch.Tensor, dict]:
        views, give = step_plan(seed, step, min_views, max_views, intrinsics_probability)
        prepared = prepare_batch(batch, batch["images"].device, views)
        value, terms = task.compute_loss(model, loss, prepared, give)
        scalars = {f"loss_{name}": float(term) for name, term in terms.items()}
        return value, {**scalars, "views": views, "intrinsics": int(give)}

    return loss_fn


def train_task_steps(
    model: nn.Module,
    *,
    task: Task | str,
    loss: nn.Module,
    batches: Iterator[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    lr_schedule: Sequence[float],
    start_step: int,
    end_step: int,
    device: torch.device | str,
    seed: int = 0,
    min_views: int = 2,
    max_views: int = 2,
    intrinsics_probability: float = 0.0,
    grad_clip: float = 1.0,
    accumulation_steps: int = 1,
    dtype: torch.dtype = torch.float32,
    dist_info: DistInfo | None = None,
    log_fn: StepHook | None = None,
    on_step: StepHook | None = None,
    progress: bool = True,
) -> list[float]:
    """Steps ``start_step .. end_step - 1`` of a 3D model on the engine
    (:func:`pixio_core.engine.train_steps`, gradients clipped to ``grad_clip``; ``<= 0``
    measures the norm only); returns the losses. The model's frozen encoder stays in eval
    mode (the 3D models keep it there)."""
    task = get_task(task) if isinstance(task, str) else task
    return train_steps(
        model,
        loss_fn=task_loss_fn(
            task,
            model,
            loss,
            seed=seed,
            min_views=min_views,
            max_views=max_views,
            intrinsics_probability=intrinsics_probability,
        ),
        batches=batches,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        start_step=start_step,
        end_step=end_step,
        device=device,
        dtype=dtype,
        accumulation_steps=accumulation_steps,
        grad_clip=grad_clip,
        dist_info=dist_info,
        log_fn=log_fn,
        on_step=on_step,
        progress=progress,
        desc=f"train {task.name}",
        throughput_key="scenes_per_s",
    )


# ------------------------------------------------------------------------------ optimization
def build_optimizer(
    model: nn.Module,
    lr: float = 1e-4,
    weight_decay: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.95),
    encoder_lr_scale: float = 0.1,
) -> torch.optim.AdamW:
    """AdamW on the trainable parameters (no decay on norms/biases, see
    :func:`pixio_core.engine.param_groups`). Every group carries an ``lr_scale``: encoder
    parameters ``encoder_lr_scale``, parameters the model names in its ``lr_scales`` dict (name
    -> scale) that scale, the rest 1."""
    core = unwrap(model)
    encoder = getattr(core, "encoder", None) or core.predictor.encoder
    named_scales: dict[str, float] = getattr(core, "lr_scales", {})
    scale_of = {id(p): named_scales.get(name, 1.0) for name, p in core.named_parameters()}
    scale_of.update({id(p): encoder_lr_scale for p in encoder.parameters()})
    groups = []
    for group in param_groups(core, weight_decay):
        by_scale: dict[float, list[nn.Parameter]] = {}
        for param in group["params"]:
            by_scale.setdefault(scale_of[id(param)], []).append(param)
        groups += [{**group, "params": ps, "lr_scale": sc} for sc, ps in by_scale.items()]
    if not groups:
        raise ValueError("the model has no trainable parameter")
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


# ------------------------------------------------------------------------------ checkpoints
def checkpoint_writer(
    model: nn.Module,
    task: str,
    encoder_source: str,
    encoder_seed: int = 0,
    train: dict[str, Any] | None = None,
):
    """The engine's checkpoint ``write(path, train_state)`` for a 3D model: a
    :func:`pixio_3d.checkpoint.save_model` folder (the frozen encoder by reference) plus
    ``train_state.pt``; ``train`` goes to the config with the step."""

    def write(path: Path, train_state: dict[str, Any]) -> Path:
        info = {**(train or {}), "step": train_state["step"]}
        return save_model(
            path, unwrap(model), task, encoder_source, encoder_seed, info, train_state=train_state
        )

    return write


def _weights_loader(model: nn.Module, task: str):
    """The engine's ``load_weights`` for a 3D model: the checkpoint must be of ``task`` with the
    same model config (:class:`CheckpointMismatchError` naming the settings that differ);
    every trainable parameter must be in it (a frozen encoder is not)."""
    core = unwrap(model)

    def plain(model_config: Any) -> dict[str, Any]:  # tuples and lists compare equal
        return json.loads(json.dumps(dataclasses.asdict(model_config)))

    def load(state: dict[str, torch.Tensor], config: dict[str, Any], path: Path) -> None:
        if config.get("task") != task:
            raise ValueError(
                f"{path} is a {config.get('task')!r} checkpoint, this run trains {task!r}"
            )
        current = plain(core.config)
        saved = plain(type(core.config)(**saved_model_config(config)))
        if saved != current:
            differ = sorted(key for key in current if saved.get(key) != current[key])
            raise CheckpointMismatchError(
                f"{path} was trained with another model config (differs in {differ}: "
                f"{ {key: saved.get(key) for key in differ} }); continue it with those "
                "settings, or train into a new output_dir"
            )
        result = core.load_state_dict(state, strict=False)
        trainable = {name for name, p in core.named_parameters() if p.requires_grad}
        missing = [key for key in result.missing_keys if key in trainable]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"{path} does not fit this model (missing {missing[:5]}, "
                f"unexpected {result.unexpected_keys[:5]})"
            )

    return load


def resume_training(
    run_dir: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    task: str,
    dist_info: DistInfo | None = None,
) -> int:
    """Load the newest checkpoint of ``run_dir`` into ``model`` and ``optimizer`` and restore the
    torch RNG (:func:`pixio_core.engine.resume`); returns its step (0 when ``run_dir`` has no
    checkpoint yet). A checkpoint of another task or model config, or with an optimizer state
    of other parameter groups, raises :class:`CheckpointMismatchError`."""
    return resume(
        run_dir,
        model=model,
        optimizer=optimizer,
        dist_info=dist_info,
        load_weights=_weights_loader(model, task),
        restore_rng=True,
    )
