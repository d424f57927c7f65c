"""Plain training functions: per-step schedules, optimizer groups, the pre-training step loop."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from pixio_core.data.sampler import mix_seed
from pixio_core.distributed import DistInfo, all_reduce_mean, all_reduce_sum
from pixio_core.masking import BlockMask
from pixio_core.precision import autocast


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


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


LossFn = Callable[[torch.Tensor, int, int], torch.Tensor]


def train_steps(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterator[dict[str, torch.Tensor]] | Iterator[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_schedule: list[float],
    start_step: int,
    end_step: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    accumulation_steps: int = 1,
    dist_info: DistInfo | None = None,
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> list[float]:
    """Optimizer steps ``start_step .. end_step - 1``; returns the per-step losses (mean over ranks).

    ``batches`` yields this process's micro-batches (dicts with ``image`` and ``skipped``, or plain
    image tensors), ``accumulation_steps`` of them per step. ``loss_fn(images, step, micro)``
    returns the scalar loss of one micro-batch; it runs under autocast and, for all but the last
    micro-batch under DDP, ``no_sync``. A non-finite loss stops the run with
    :class:`NonFiniteLossError` before the optimizer touches the weights. After each step
    ``log_fn`` and ``on_step`` (checkpoints, pictures) get the scalars.
    """
    info = dist_info or DistInfo()
    model.train()
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
        for group in optimizer.param_groups:
            group["lr"] = lr_schedule[step]
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=device)
        images_seen, skipped = 0, 0
        for micro in range(accumulation_steps):
            batch = next(batches)
            images = batch["image"] if isinstance(batch, dict) else batch
            if isinstance(batch, dict) and "skipped" in batch:
                skipped += int(torch.as_tensor(batch["skipped"]).sum())
            images = images.to(device, non_blocking=True)
            images_seen += images.shape[0]
            last_micro = micro == accumulation_steps - 1
            sync = last_micro or not info.enabled or not hasattr(model, "no_sync")
            with contextlib.nullcontext() if sync else model.no_sync():
                with autocast(device, dtype):
                    loss = loss_fn(images, step, micro)
                (loss / accumulation_steps).backward()
            step_loss += loss.detach().float() / accumulation_steps
        mean_loss = all_reduce_mean(step_loss, info)
        if not torch.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"loss is {mean_loss.item()} at step {step}; stopping (the last good checkpoint is kept)"
            )
        optimizer.step()
        value = mean_loss.item()
        losses.append(value)
        elapsed = time.perf_counter() - started
        scalars = {
            "loss": value,
            "lr": lr_schedule[step],
            "images_per_s": images_seen * info.world_size / elapsed,
            "skipped_images": int(all_reduce_sum(torch.tensor(skipped), info)),
        }
        bar.set_postfix(
            loss=f"{value:.4f}", lr=f"{lr_schedule[step]:.2e}", ips=f"{scalars['images_per_s']:.1f}"
        )
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
    batches: Iterator[dict[str, torch.Tensor]] | Iterator[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_schedule: list[float],
    start_step: int,
    end_step: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    accumulation_steps: int = 1,
    dist_info: DistInfo | None = None,
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> list[float]:
    """MAE pre-training steps of a :class:`PixioMAE` (optionally wrapped by DDP / torch.compile).

    Masks come from :func:`step_mask`; drop-path draws from a seed of ``(seed, step, micro, rank)``.
    See :func:`train_steps` for the rest.
    """
    info = dist_info or DistInfo()
    core = unwrap(model)

    def loss_fn(images: torch.Tensor, step: int, micro: int) -> torch.Tensor:
        grid = core.encoder.check_input(images)
        mask = step_mask(core.sample_mask, images, grid, seed, step, micro, info)
        torch.manual_seed(mix_seed(seed, step, micro, info.rank, 1))  # drop path
        return model(images, mask=mask)["loss"]

    return train_steps(
        model,
        loss_fn,
        batches,
        optimizer,
        lr_schedule,
        start_step,
        end_step,
        device,
        dtype,
        accumulation_steps,
        info,
        log_fn,
        on_step,
        progress,
        desc="pre-train",
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
