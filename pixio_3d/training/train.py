"""Plain training functions for the 3D heads: reconstruction, monocular depth, segmentation.

The entry script (:mod:`pixio_3d.cli.train`) only wires these together:

* :class:`TrainingSamples` turns the ``(index, epoch)`` keys of
  :class:`pixio_core.data.sampler.StepBatchSampler` into :class:`pixio_3d.data.MultiViewDataset`
  items of that epoch (so every epoch draws new view sets, and a resumed run sees the same
  batches), adding segmentation ``labels`` from the generator's object ids.
* :func:`step_plan` draws the per-step choices (number of views, whether known intrinsics are
  given) from ``(seed, step)`` only: the same on every rank and after a resume.
* :class:`Objective` maps a batch to ``(loss, terms)`` for a task; :func:`train_one_step` and
  :func:`train_steps` run AdamW steps with gradient clipping under a precomputed lr schedule.
* :func:`save_training_checkpoint` / :func:`resume_training` write and read checkpoints that are
  :func:`pixio_3d.checkpoint.load_model`-able and carry ``train_state.pt`` (optimizer, step, RNG).

Images arrive in [0, 1] from the dataset and are ImageNet-normalized here (the encoder contract).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from pixio_3d.checkpoint import TASKS, save_model, saved_model_config
from pixio_3d.data import MultiViewDataset
from pixio_3d.data.labels import IGNORE_INDEX, apply_labels, label_table
from pixio_3d.training.losses import (
    ReconstructionLoss,
    ReconstructionLossConfig,
    ScaleShiftInvariantLoss,
    SegmentationLoss,
    SiLogLoss,
)
from pixio_core.checkpoint import (
    load_checkpoint,
    prune_checkpoints,
    resolve_checkpoint_dir,
    write_last_pointer,
)
from pixio_core.data.sampler import mix_seed
from pixio_core.distributed import DistInfo, all_reduce_mean
from pixio_core.engine import NonFiniteLossError, param_groups, unwrap
from pixio_core.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from pixio_core.precision import autocast


class CheckpointMismatchError(ValueError):
    """The run folder holds a checkpoint of another model configuration."""


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


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB in [0, 1] -> ImageNet mean/std normalized."""
    mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (images - mean) / std


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


# ------------------------------------------------------------------------------ objective
class Objective:
    """``objective(model, batch, give_intrinsics) -> (loss, terms)`` for one task.

    reconstruction: :class:`ReconstructionLoss` on ``model(images, intrinsics)``; depth: the
    scale-and-shift-invariant loss on disparity (relative) or SiLog on metres (metric); views are
    flattened into the batch for the monocular tasks. segmentation: cross-entropy on ``labels``.
    """

    def __init__(
        self,
        task: str,
        depth_mode: str = "relative",
        reconstruction_loss: ReconstructionLossConfig | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
        self.task, self.depth_mode = task, depth_mode
        if task == "reconstruction":
            self.loss: nn.Module = ReconstructionLoss(reconstruction_loss)
        elif task == "depth":
            self.loss = ScaleShiftInvariantLoss() if depth_mode == "relative" else SiLogLoss()
        else:
            self.loss = SegmentationLoss(IGNORE_INDEX)

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], give_intrinsics: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.task == "reconstruction":
            uses_rays = unwrap(model).config.use_intrinsics_input
            intrinsics = batch["intrinsics"] if give_intrinsics and uses_rays else None
            return self.loss(model(batch["images"], intrinsics), batch)
        images = batch["images"].flatten(0, 1)
        output = model(images)
        if self.task == "segmentation":
            return self.loss(output["logits"], batch["labels"].flatten(0, 1)), {}
        depth, valid = batch["depth"].flatten(0, 1), batch["valid"].flatten(0, 1)
        if self.depth_mode == "metric":
            return self.loss(output["depth"], depth, valid), {}
        disparity = torch.where(valid, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
        return self.loss(output["disparity"], disparity, valid), {}


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


def train_one_step(
    model: nn.Module,
    objective: Objective,
    batch: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    lr: float,
    grad_clip: float = 1.0,
    give_intrinsics: bool = False,
    dtype: torch.dtype = torch.float32,
    dist_info: DistInfo | None = None,
) -> dict[str, float]:
    """One AdamW step on a prepared batch; returns ``loss`` (mean over ranks), ``grad_norm``
    (before clipping; ``grad_clip <= 0`` disables clipping) and the loss terms of this rank.
    A non-finite loss raises :class:`NonFiniteLossError` before the weights change."""
    info = dist_info or DistInfo()
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    optimizer.zero_grad(set_to_none=True)
    device = batch["images"].device
    with autocast(device, dtype):
        loss, terms = objective(model, batch, give_intrinsics)
    loss.backward()
    mean_loss = all_reduce_mean(loss.detach().float(), info)
    if not torch.isfinite(mean_loss):
        raise NonFiniteLossError(f"loss is {mean_loss.item()}; stopping (last checkpoint kept)")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    scalars = {"loss": mean_loss.item(), "grad_norm": float(grad_norm)}
    scalars.update({f"loss_{name}": float(value) for name, value in terms.items()})
    return scalars


def train_steps(
    model: nn.Module,
    objective: Objective,
    batches: Iterator[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    lr_schedule: list[float],
    start_step: int,
    end_step: int,
    device: torch.device | str,
    *,
    seed: int = 0,
    min_views: int = 2,
    max_views: int = 2,
    intrinsics_probability: float = 0.0,
    grad_clip: float = 1.0,
    dtype: torch.dtype = torch.float32,
    dist_info: DistInfo | None = None,
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> list[float]:
    """Steps ``start_step .. end_step - 1`` (one batch of ``batches`` each); returns the losses.

    The number of views and whether intrinsics are given come from :func:`step_plan`. The encoder
    stays in eval mode while it is frozen. ``log_fn`` and ``on_step`` (checkpoints) get the
    scalars after every step.
    """
    info = dist_info or DistInfo()
    core = unwrap(model)
    model.train()
    encoder = getattr(core, "encoder", None) or core.predictor.encoder
    if not any(p.requires_grad for p in encoder.parameters()):
        encoder.eval()
    losses: list[float] = []
    bar = tqdm(
        range(start_step, end_step),
        desc=f"train {objective.task}",
        initial=start_step,
        total=end_step,
        disable=not (progress and info.is_main),
        dynamic_ncols=True,
    )
    for step in bar:
        started = time.perf_counter()
        views, give = step_plan(seed, step, min_views, max_views, intrinsics_probability)
        batch = prepare_batch(next(batches), device, views)
        scalars = train_one_step(
            model, objective, batch, optimizer, lr_schedule[step], grad_clip, give, dtype, info
        )
        seconds = time.perf_counter() - started
        scalars.update(lr=lr_schedule[step], views=views, intrinsics=int(give), step_s=seconds)
        losses.append(scalars["loss"])
        bar.set_postfix(loss=f"{scalars['loss']:.4f}", lr=f"{lr_schedule[step]:.2e}", views=views)
        if log_fn is not None:
            log_fn(step, scalars)
        if on_step is not None:
            on_step(step, scalars)
    return losses


# ------------------------------------------------------------------------------ checkpoints
def save_training_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    task: str,
    encoder_source: str,
    encoder_seed: int = 0,
    train: dict[str, Any] | None = None,
    keep_last: int = 2,
) -> Path:
    """``run_dir/step_XXXXXXXX``: :func:`save_model`'s folder plus ``train_state.pt`` (step,
    optimizer, torch RNG), written atomically; then the ``last`` pointer and
    keep-last-``keep_last``."""
    run_dir = Path(run_dir)
    train_state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "rng_torch": torch.get_rng_state(),
    }
    final = save_model(
        run_dir / f"step_{step:08d}", unwrap(model), task, encoder_source, encoder_seed, train,
        train_state=train_state,
    )  # fmt: skip
    write_last_pointer(run_dir, final)
    prune_checkpoints(run_dir, keep_last)
    return final


def resume_training(
    run_dir: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, task: str
) -> int:
    """Load the newest checkpoint of ``run_dir`` into ``model`` and ``optimizer`` and restore the
    torch RNG; returns its step (0 when ``run_dir`` has no checkpoint yet)."""
    try:
        path = resolve_checkpoint_dir(run_dir)
    except FileNotFoundError:
        return 0
    state, config, train_state = load_checkpoint(path, with_train_state=True)
    if config.get("task") != task:
        raise ValueError(f"{path} is a {config.get('task')!r} checkpoint, this run trains {task!r}")
    core = unwrap(model)

    def plain(model_config: Any) -> dict[str, Any]:  # tuples and lists compare equal
        return json.loads(json.dumps(dataclasses.asdict(model_config)))

    current = plain(core.config)
    saved = plain(type(core.config)(**saved_model_config(config)))
    if saved != current:
        differ = sorted(key for key in current if saved.get(key) != current[key])
        raise CheckpointMismatchError(
            f"{path} was trained with another model config (differs in {differ}: "
            f"{ {key: saved.get(key) for key in differ} }); continue it with those settings, or "
            "train into a new output_dir"
        )
    result = core.load_state_dict(state, strict=False)
    trainable = {name for name, p in core.named_parameters() if p.requires_grad}
    missing = [key for key in result.missing_keys if key in trainable]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path} does not fit this model (missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]})"
        )
    try:
        optimizer.load_state_dict(train_state["optimizer"])
    except ValueError as error:  # parameter groups of another version of the optimizer set-up
        raise CheckpointMismatchError(
            f"{path} holds an optimizer state that does not fit this version's parameter groups "
            f"({error}); train into a new output_dir"
        ) from None
    torch.set_rng_state(train_state["rng_torch"])
    return int(train_state["step"])
