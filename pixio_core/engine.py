"""Plain training functions: per-step schedules, optimizer groups, the pre-training step loop."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

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


def pretrain_steps(
    model: nn.Module,
    batches: Iterator[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_schedule: list[float],
    start_step: int,
    end_step: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
    log_path: Path | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> list[float]:
    """Run MAE steps ``start_step .. end_step - 1``; return the per-step losses.

    ``batches`` yields normalized image tensors ``(B, 3, H, W)``. Masks come from ``generator`` so
    a run is reproducible from its seed. Each step appends a JSON line to ``log_path`` and calls
    ``on_step(step, scalars)`` (checkpointing, TensorBoard) after the optimizer update.
    """
    model.train()
    losses: list[float] = []
    bar = tqdm(
        range(start_step, end_step), desc="pre-train", disable=not progress, dynamic_ncols=True
    )
    log = log_path.open("a") if log_path is not None else None
    try:
        for step in bar:
            started = time.perf_counter()
            images = next(batches).to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = lr_schedule[step]
            with autocast(device, dtype):
                loss = model(images, generator=generator)["loss"]
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at step {step}; stopping (last checkpoint kept)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            losses.append(value)
            elapsed = time.perf_counter() - started
            scalars = {
                "loss": value,
                "lr": lr_schedule[step],
                "images_per_s": images.shape[0] / elapsed,
            }
            bar.set_postfix(
                loss=f"{value:.4f}",
                lr=f"{lr_schedule[step]:.2e}",
                ips=f"{scalars['images_per_s']:.1f}",
            )
            if log is not None:
                log.write(json.dumps({"step": step, **scalars}) + "\n")
                log.flush()
            if on_step is not None:
                on_step(step, scalars)
    finally:
        if log is not None:
            log.close()
    return losses
