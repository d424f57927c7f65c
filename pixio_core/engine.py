"""The one training engine: per-step schedules, optimizer groups, the step loop, checkpoints.

Pre-training, distillation, 3D training and behaviour cloning all train through
:func:`train_steps` (keyword arguments only): a plain function that runs optimizer steps
``start_step .. end_step - 1`` with

* gradient accumulation (``accumulation_steps`` micro-batches per step; DDP syncs the last),
* autocast in the run's precision,
* a per-step learning rate from a precomputed schedule (times each group's ``lr_scale``),
* optional gradient clipping (``grad_norm`` is logged),
* a stop before the weights change when the loss is not finite (:class:`NonFiniteLossError`),
* scalars to ``log_fn`` and a hook ``on_step`` after every step, and a tqdm progress bar.

Checkpoints go through :func:`checkpoint_hook` (an ``on_step`` hook: every ``every`` steps and
at the end, atomic, ``last`` pointer, keep-last-K, FSDP shards) and :func:`resume` (newest
checkpoint into model and optimizer, exactly where the run stopped). What a run saves as its
weights and config, and how it checks that a checkpoint fits, is the caller's: ``write`` and
``load_weights`` callbacks.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from pixio_core.checkpoint import (
    LAST_POINTER,
    CheckpointMismatchError,
    is_sharded_checkpoint,
    list_step_checkpoints,
    load_checkpoint,
    load_sharded_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
    resolve_checkpoint_dir,
    save_checkpoint,
    save_sharded_checkpoint,
    write_last_pointer,
)
from pixio_core.data.sampler import mix_seed
from pixio_core.distributed import DistInfo, all_reduce_mean, all_reduce_sum, barrier
from pixio_core.masking import BlockMask
from pixio_core.precision import autocast

__all__ = [
    "NonFiniteLossError",
    "checkpoint_hook",
    "cosine_schedule",
    "lr_from_base",
    "param_groups",
    "pretrain_steps",
    "resume",
    "step_mask",
    "train_steps",
    "unwrap",
]


def cosine_schedule(
    peak: float, total_steps: int, warmup_steps: int, final: float = 0.0
) -> list[float]:
    """Per-step values: linear warmup from 0 to ``peak``, then half-cycle cosine down to ``final``."""
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps}), total >= 1"
        )
    values = []
    for step in range(total_steps):
        if step < warmup_steps:
            values.append(peak * step / warmup_steps)
        else:
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            values.append(final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    return values


def lr_from_base(base_lr: float, batch_size: int) -> float:
    """MAE's linear scaling rule: ``lr = blr * batch / 256``."""
    return base_lr * batch_size / 256


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as the paper: no weight decay on 1-D parameters (norms) and biases."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


OPTIMIZER_IMPLEMENTATIONS = ("auto", "fused", "foreach", "for-loop")


def make_optimizer(
    model: nn.Module,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    lr: float = 0.0,
    implementation: str = "auto",
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`. ``implementation``: ``fused`` (one kernel over all
    parameters; CPU and CUDA), ``foreach`` (multi-tensor ops), ``for-loop`` (torch's per-parameter
    loop, its default on a CPU) or ``auto``: fused, except for sharded (DTensor) parameters,
    where it is torch's own choice. The three compute the same update up to float rounding."""
    if implementation not in OPTIMIZER_IMPLEMENTATIONS:
        raise ValueError(
            f"optimizer implementation must be one of {OPTIMIZER_IMPLEMENTATIONS}, got {implementation!r}"
        )
    groups = param_groups(model, weight_decay)
    params = [p for group in groups for p in group["params"]]
    sharded = any(type(p.data).__name__ == "DTensor" for p in params)
    if implementation == "auto":
        implementation = "default" if sharded else "fused"
    kwargs = {
        "fused": {"fused": True},
        "foreach": {"foreach": True},
        "for-loop": {"foreach": False},
        "default": {},
    }[implementation]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), **kwargs)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


Scalars = dict[str, float]
# (batch on the device, step, micro-batch index) -> loss, or (loss, extra scalars of this rank)
LossFn = Callable[[Any, int, int], "torch.Tensor | tuple[torch.Tensor, dict[str, Any]]"]
StepHook = Callable[[int, Scalars], None]


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (in dicts, lists and tuples too) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def _batch_size(batch: Any) -> int:
    """Samples in a micro-batch: the leading size of its (first) tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    values = batch.values() if isinstance(batch, dict) else batch
    for value in values if isinstance(batch, dict | list | tuple) else ():
        if isinstance(value, torch.Tensor) and value.ndim:
            return int(value.shape[0])
    return 0


def train_steps(
    model: nn.Module,
    *,
    loss_fn: LossFn,
    batches: Iterator[Any],
    optimizer: torch.optim.Optimizer,
    lr_schedule: Sequence[float],
    start_step: int,
    end_step: int,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    accumulation_steps: int = 1,
    grad_clip: float | None = None,
    dist_info: DistInfo | None = None,
    log_fn: StepHook | None = None,
    on_step: StepHook | None = None,
    progress: bool = True,
    desc: str = "train",
    throughput_key: str = "samples_per_s",
) -> list[float]:
    """Optimizer steps ``start_step .. end_step - 1``; returns the per-step losses (mean over ranks).

    ``batches`` yields this process's micro-batches (tensors, or dicts / lists of them),
    ``accumulation_steps`` of them per step; each is moved to ``device`` and passed to
    ``loss_fn(batch, step, micro)``, which returns the scalar loss of that micro-batch, or the
    loss and extra scalars to log (averaged over the micro-batches). ``loss_fn`` runs under
    autocast and, for all but the last micro-batch under DDP, ``no_sync``.

    Every parameter group's lr is ``lr_schedule[step]`` times its ``lr_scale`` (1 without).
    ``grad_clip``: ``None`` leaves the gradients alone; a value > 0 clips their global norm to
    it and ``<= 0`` only measures it (``grad_norm``, before clipping, is logged either way).
    A non-finite loss raises :class:`NonFiniteLossError` before the optimizer touches the
    weights. After each step ``log_fn`` and ``on_step`` (checkpoints, pictures) get the scalars:
    ``loss``, ``lr``, ``step_s``, ``throughput_key`` (samples per second over all processes),
    ``skipped_images`` when the batches are dicts with a ``skipped`` count, ``grad_norm`` and
    whatever ``loss_fn`` returned.
    """
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
    if len(lr_schedule) < end_step:
        raise ValueError(f"lr_schedule has {len(lr_schedule)} steps, the run needs {end_step}")
    info = dist_info or DistInfo()
    device = torch.device(device)
    model.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    losses: list[float] = []
    bar = tqdm(
        range(start_step, end_step),
        desc=desc,
        initial=start_step,
        total=end_step,
        disable=not (progress and info.is_main),
        dynamic_ncols=True,
    )
    for step in bar:
        started = time.perf_counter()
        lr = lr_schedule[step]
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=device)
        extra: dict[str, float] = {}
        samples, skipped, counts_skipped = 0, 0, False
        for micro in range(accumulation_steps):
            batch = to_device(next(batches), device)
            if isinstance(batch, dict) and "skipped" in batch:
                counts_skipped = True
                skipped += int(torch.as_tensor(batch["skipped"]).sum())
            samples += _batch_size(batch)
            last_micro = micro == accumulation_steps - 1
            sync = last_micro or not info.enabled or not hasattr(model, "no_sync")
            with contextlib.nullcontext() if sync else model.no_sync():
                with autocast(device, dtype):
                    output = loss_fn(batch, step, micro)
                loss, terms = output if isinstance(output, tuple) else (output, {})
                (loss / accumulation_steps).backward()
            step_loss += loss.detach().float() / accumulation_steps
            for key, value in terms.items():
                extra[key] = extra.get(key, 0.0) + float(value) / accumulation_steps
        mean_loss = all_reduce_mean(step_loss, info)
        if not torch.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"loss is {mean_loss.item()} at step {step}; stopping (the last good checkpoint is kept)"
            )
        scalars: Scalars = {"loss": mean_loss.item()}
        if grad_clip is not None:
            max_norm = grad_clip if grad_clip > 0 else float("inf")
            scalars["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        optimizer.step()
        losses.append(scalars["loss"])
        elapsed = time.perf_counter() - started
        scalars.update(extra)
        scalars.update(lr=lr, step_s=elapsed)
        scalars[throughput_key] = samples * info.world_size / elapsed
        if counts_skipped:
            scalars["skipped_images"] = int(all_reduce_sum(torch.tensor(skipped), info))
        bar.set_postfix(loss=f"{scalars['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
        if log_fn is not None:
            log_fn(step, scalars)
        if on_step is not None:
            on_step(step, scalars)
    return losses


def step_mask(
    sample_mask: Callable[..., BlockMask],
    images: torch.Tensor,
    grid: tuple[int, int],
    seed: int,
    step: int,
    micro: int,
    info: DistInfo,
) -> BlockMask:
    """This rank's slice of the mask of the *global* micro-batch, a pure function of (seed, step, micro).

    So a resumed run, and a run on another number of processes, see the same masks.
    """
    local = images.shape[0]
    generator = torch.Generator().manual_seed(mix_seed(seed, step, micro))
    full = sample_mask(local * info.world_size, grid[0], grid[1], generator=generator)
    rows = slice(info.rank * local, (info.rank + 1) * local)
    return BlockMask(full.ids_keep[rows], full.mask[rows])


def pretrain_steps(
    model: nn.Module,
    *,
    batches: Iterator[dict[str, torch.Tensor]] | Iterator[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_schedule: Sequence[float],
    start_step: int,
    end_step: int,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    accumulation_steps: int = 1,
    dist_info: DistInfo | None = None,
    log_fn: StepHook | None = None,
    on_step: StepHook | None = None,
    progress: bool = True,
) -> list[float]:
    """MAE pre-training steps of a :class:`PixioMAE` (optionally wrapped by DDP / torch.compile).

    Batches are image tensors or dicts with ``image`` (and ``skipped``). Masks come from
    :func:`step_mask`; drop-path draws from a seed of ``(seed, step, micro, rank)``. See
    :func:`train_steps` for the rest.
    """
    info = dist_info or DistInfo()
    core = unwrap(model)

    def loss_fn(batch: Any, step: int, micro: int) -> torch.Tensor:
        images = batch["image"] if isinstance(batch, dict) else batch
        grid = core.encoder.check_input(images)
        mask = step_mask(core.sample_mask, images, grid, seed, step, micro, info)
        torch.manual_seed(mix_seed(seed, step, micro, info.rank, 1))  # drop path
        return model(images, mask=mask, predict="masked")["loss"]

    return train_steps(
        model,
        loss_fn=loss_fn,
        batches=batches,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        start_step=start_step,
        end_step=end_step,
        device=device,
        dtype=dtype,
        accumulation_steps=accumulation_steps,
        dist_info=info,
        log_fn=log_fn,
        on_step=on_step,
        progress=progress,
        desc="pre-train",
        throughput_key="images_per_s",
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        else:
            return model


# ------------------------------------------------------------------------------ checkpoints
# write(path, train_state) -> the written folder; train_state holds step, optimizer, loss (+ rng)
CheckpointWriter = Callable[[Path, dict[str, Any]], Path]
# load_weights(state_dict, config, path): put a checkpoint's weights into the model (or raise)
WeightLoader = Callable[[dict[str, torch.Tensor], dict[str, Any], Path], None]


def checkpoint_hook(
    ckpt_dir: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    every: int,
    total_steps: int,
    keep_last: int,
    dist_info: DistInfo | None = None,
    config: dict[str, Any] | None = None,
    write: CheckpointWriter | None = None,
    sharded: bool = False,
    save_rng: bool = False,
) -> StepHook:
    """An ``on_step`` hook: every ``every`` steps and at the last one, an atomic checkpoint
    ``ckpt_dir/step_XXXXXXXX``, the ``last`` pointer, and all but the newest ``keep_last``
    step checkpoints pruned.

    The folder holds ``train_state.pt`` (``step``, ``optimizer``, ``loss`` and with ``save_rng``
    the torch RNG state) and the weights: by default ``model.state_dict()`` with ``config``
    (:func:`pixio_core.checkpoint.save_checkpoint`), or whatever ``write(path, train_state)``
    writes. ``sharded`` (FSDP): every rank writes its shards with torch.distributed.checkpoint.
    Weights and optimizer state are checked finite first: a non-finite value raises
    :class:`pixio_core.checkpoint.NonFiniteCheckpointError` and the last good checkpoint stays.
    """
    info = dist_info or DistInfo()
    ckpt_dir = Path(ckpt_dir)
    if every < 1 or keep_last < 1:
        raise ValueError(f"checkpoint every and keep_last must be >= 1, got {every}, {keep_last}")

    def save(step: int, scalars: Scalars) -> None:
        done = step + 1
        if done % every and done != total_steps:
            return
        path = ckpt_dir / f"step_{done:08d}"
        if sharded:
            train_state = {"step": done, "loss": scalars["loss"]}
            save_sharded_checkpoint(path, model, optimizer, config or {}, train_state, info.is_main)
        elif info.is_main:
            train_state: dict[str, Any] = {
                "step": done,
                "optimizer": optimizer.state_dict(),
                "loss": scalars["loss"],
            }
            if save_rng:
                train_state["rng_torch"] = torch.get_rng_state()
            if write is None:
                save_checkpoint(path, unwrap(model).state_dict(), config or {}, train_state)
            else:
                write(path, train_state)
        if info.is_main:
            write_last_pointer(ckpt_dir, path)
            prune_checkpoints(ckpt_dir, keep_last)
        barrier(info)

    return save


def resume(
    ckpt_dir: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    dist_info: DistInfo | None = None,
    load_weights: WeightLoader | None = None,
    restore_rng: bool = False,
) -> int:
    """Load the newest checkpoint of ``ckpt_dir`` (if any) into model and optimizer; return its
    step (0 when there is none yet).

    Sharded (FSDP) checkpoints load on any number of processes, sharded or not; a full
    checkpoint loads into a plain or DDP model: strictly by default, or by
    ``load_weights(state_dict, config, path)``, which raises when the checkpoint does not fit.
    An optimizer state of other parameter groups raises :class:`CheckpointMismatchError`.
    ``restore_rng`` puts back the torch RNG state the checkpoint saved. A missing or broken
    ``last`` pointer falls back to the newest complete checkpoint (with a warning), never to
    step 0; temporary folders of killed checkpoint writes are removed first.
    """
    info = dist_info or DistInfo()
    ckpt_dir = Path(ckpt_dir)
    if info.is_main:
        for stale in remove_stale_temporaries(ckpt_dir):
            print(f"removed {stale}, left by a checkpoint write that was killed")
    if not (ckpt_dir / LAST_POINTER).is_file() and not list_step_checkpoints(ckpt_dir):
        return 0
    target = resolve_checkpoint_dir(ckpt_dir)  # a missing or broken last: the newest complete
    if is_sharded_checkpoint(target):
        train_state = load_sharded_checkpoint(target, model, optimizer)
    else:
        if any(type(p).__name__ == "DTensor" for p in model.parameters()):
            raise ValueError(
                f"{target} is a full (non-sharded) checkpoint; resume it with train.strategy=ddp "
                f"(FSDP runs resume from their own sharded checkpoints)"
            )
        state, config, train_state = load_checkpoint(target, with_train_state=True)
        if load_weights is None:
            unwrap(model).load_state_dict(state)
        else:
            load_weights(state, config, target)
        try:
            optimizer.load_state_dict(train_state["optimizer"])
        except ValueError as error:  # parameter groups of another optimizer set-up
            raise CheckpointMismatchError(
                f"{target} holds an optimizer state that does not fit this run's parameter "
                f"groups ({error}); train into a new output_dir"
            ) from None
        if restore_rng and "rng_torch" in train_state:
            torch.set_rng_state(train_state["rng_torch"])
    step = int(train_state["step"])
    if info.is_main:
        print(f"resuming from {target} at step {step}")
    return step
