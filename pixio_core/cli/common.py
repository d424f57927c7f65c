"""Wiring shared by the training entry points (hydra configs -> plain objects): the process
group, the output folder, datasets and step loaders, the lr schedule, DDP, the run summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pixio_core.checkpoint import LAST_POINTER
from pixio_core.cli.console import CONFIG_DIR  # noqa: F401  (re-exported for scripts)
from pixio_core.data import ImageFolderDataset, make_shapes_dataset, pretrain_transform
from pixio_core.data.curation import keep_probabilities
from pixio_core.data.sampler import StepBatchSampler, mix_seed
from pixio_core.data.shards import ShardDataset
from pixio_core.distributed import DistInfo, barrier, cleanup, init_distributed
from pixio_core.engine import checkpoint_hook, cosine_schedule, lr_from_base
from pixio_core.io import atomic_write_text
from pixio_core.runlog import read_log
from pixio_core.runs import claim_run, run_identity
from pixio_core.visualize import save_loss_curve


def run_distributed(cfg: DictConfig, body: Callable[[DictConfig, DistInfo], Path]) -> Path:
    """Join torch.distributed when launched by torchrun (NCCL on GPUs, gloo on CPUs), run
    ``body(cfg, info)`` and always leave the process group."""
    device_type = "cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    info = init_distributed(device_type)
    try:
        return body(cfg, info)
    finally:
        cleanup(info)


def wrap_ddp(
    model: nn.Module,
    device: torch.device,
    info: DistInfo,
    find_unused_parameters: bool = False,
) -> nn.Module:
    """DistributedDataParallel under several processes; the model itself otherwise.
    ``find_unused_parameters``: some steps leave parameters without gradients."""
    if not info.enabled:
        return model
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )


# settings a resumed run may change: the step budget, checkpoint cadence, hardware, evaluation
RUN_IDENTITY_IGNORES = (
    "output_dir",
    "device",
    "precision",
    "hydra",
    "rerun",
    "train.total_steps",
    "train.checkpoint_every",
    "train.keep_last",
    "train.recon_every",
    "train.resume",
    "train.compile",
    "train.strategy",
    "data.num_workers",
    "data.generate",
    "data.num_scenes",
    "eval",
)


def _run_identity(cfg: DictConfig) -> dict[str, Any]:
    return run_identity(OmegaConf.to_container(cfg, resolve=True), RUN_IDENTITY_IGNORES)


def claim_output(cfg: DictConfig, info: DistInfo) -> Path:
    """``output_dir``, after checking that it holds no other run (:func:`pixio_core.runs.claim_run`;
    nothing is written). Call :func:`prepare_output` once the resume has succeeded."""
    out = Path(cfg.output_dir)
    claim_run(out, _run_identity(cfg), resume=bool(cfg.train.resume), write=False)
    return out


def prepare_output(cfg: DictConfig, info: DistInfo) -> Path:
    """Record the run (``run.json``) and write the resolved ``config.yaml`` into ``output_dir``
    (main process), after the same check as :func:`claim_output`."""
    out = Path(cfg.output_dir)
    claim_run(out, _run_identity(cfg), resume=bool(cfg.train.resume), write=info.is_main)
    if info.is_main:
        atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return out


DATA_KINDS = ("shapes", "folder", "webdataset")


def build_dataset(
    data_cfg: DictConfig, image_size: int, seed: int, info: DistInfo, start_step: int = 0
) -> ImageFolderDataset | ShardDataset:
    """The ``data`` config group: procedural ``shapes`` (made on first use), an image ``folder`` or
    ``webdataset`` shards. Missing or empty data is an error here, before any training."""
    if data_cfg.kind not in DATA_KINDS:
        raise ValueError(f"data.kind must be one of {DATA_KINDS}, got {data_cfg.kind!r}")
    transform = pretrain_transform(image_size, scale=tuple(data_cfg.crop_scale))
    if data_cfg.kind == "webdataset":
        return ShardDataset(
            data_cfg.urls,
            transform,
            seed=mix_seed(seed, start_step),  # a resumed stream reshuffles (not exact)
            rank=info.rank,
            world_size=info.world_size,
            shuffle_buffer=data_cfg.shuffle_buffer,
            curation=bool(data_cfg.curation),
            loss_scale=data_cfg.loss_scale,
            min_side=data_cfg.min_side,
            entropy_threshold=data_cfg.entropy_threshold,
        )
    if data_cfg.kind == "shapes":
        if info.is_main:
            make_shapes_dataset(
                data_cfg.root, images_per_class=data_cfg.images_per_class, image_size=image_size
            )
        barrier(info)
    return ImageFolderDataset(data_cfg.root, transform, seed=seed)


def build_loader(
    dataset: Dataset,
    data_cfg: DictConfig,
    train_cfg: DictConfig,
    seed: int,
    start_step: int,
    info: DistInfo,
    device: torch.device,
) -> DataLoader:
    """Micro-batches of this rank, from ``start_step`` on (a :class:`StepBatchSampler` of
    ``(index, epoch)`` keys for map-style datasets), with the curation weights if configured."""
    if train_cfg.global_batch_size % (info.world_size * train_cfg.accumulation_steps):
        raise ValueError(
            f"train.global_batch_size={train_cfg.global_batch_size} is not divisible by "
            f"{info.world_size} processes x {train_cfg.accumulation_steps} accumulation steps"
        )
    if isinstance(dataset, ShardDataset):
        local = train_cfg.global_batch_size // (train_cfg.accumulation_steps * info.world_size)
        return DataLoader(
            dataset,
            batch_size=local,
            num_workers=data_cfg.num_workers,
            drop_last=True,
            pin_memory=device.type == "cuda",
            persistent_workers=data_cfg.num_workers > 0,
        )
    keep = None
    if data_cfg.get("curation"):
        keep = keep_probabilities(
            dataset.files,
            dataset.root,
            data_cfg.curation,
            loss_scale=data_cfg.loss_scale,
            min_side=data_cfg.min_side,
            entropy_threshold=data_cfg.entropy_threshold,
        )
    accumulation = train_cfg.accumulation_steps
    sampler = StepBatchSampler(
        len(dataset),
        train_cfg.global_batch_size // accumulation,
        train_cfg.total_steps * accumulation,
        seed=seed,
        start_step=start_step * accumulation,
        rank=info.rank,
        world_size=info.world_size,
        keep_probability=keep,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=data_cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=data_cfg.num_workers > 0,
    )


def lr_schedule(optim_cfg: DictConfig, train_cfg: DictConfig) -> list[float]:
    """Per-step lr: ``optim.lr`` or ``base_lr * global_batch / 256``, warmup + half-cycle cosine."""
    peak = (
        optim_cfg.lr
        if optim_cfg.lr is not None
        else lr_from_base(optim_cfg.base_lr, train_cfg.global_batch_size)
    )
    warmup = min(optim_cfg.warmup_steps, train_cfg.total_steps)
    return cosine_schedule(peak, train_cfg.total_steps, warmup, final=optim_cfg.min_lr)


def uses_fsdp(train_cfg: DictConfig, info: DistInfo) -> bool:
    """FSDP2 only makes sense with several processes; a single process trains the plain model."""
    if train_cfg.strategy not in ("ddp", "fsdp"):
        raise ValueError(f"train.strategy must be 'ddp' or 'fsdp', got {train_cfg.strategy!r}")
    return info.enabled and train_cfg.strategy == "fsdp"


def config_checkpoints(
    ckpt_dir: Path,
    train_cfg: DictConfig,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    info: DistInfo,
    **options: Any,
) -> Callable[[int, dict[str, float]], None]:
    """:func:`pixio_core.engine.checkpoint_hook` with the ``train`` group's ``checkpoint_every``,
    ``total_steps`` and ``keep_last``; ``options`` are the hook's other keyword arguments
    (``config``, ``write``, ``sharded``, ``save_rng``)."""
    return checkpoint_hook(
        ckpt_dir,
        model=model,
        optimizer=optimizer,
        every=train_cfg.checkpoint_every,
        total_steps=train_cfg.total_steps,
        keep_last=train_cfg.keep_last,
        dist_info=info,
        **options,
    )


def summarize(out: Path, ckpt_dir: Path, title: str) -> dict[str, Any]:
    """Loss curve PNG and ``summary.json`` from the run's ``log.jsonl``; prints a short report."""
    log = read_log(out / "log.jsonl")
    losses = [entry["loss"] for entry in log]
    save_loss_curve(out / "loss_curve.png", losses, title=title)
    window = max(1, len(losses) // 10)
    summary = {
        "steps": len(losses),
        "loss_first": sum(losses[:window]) / window,
        "loss_last": sum(losses[-window:]) / window,
        "skipped_images": sum(entry.get("skipped_images", 0) for entry in log),
        "checkpoint": str(ckpt_dir / (ckpt_dir / LAST_POINTER).read_text().strip()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"loss: first {window} steps {summary['loss_first']:.4f} -> last {window} steps "
        f"{summary['loss_last']:.4f}; unreadable images skipped: {summary['skipped_images']}"
    )
    print(f"wrote {summary['checkpoint']}, {out / 'loss_curve.png'}")
    return summary
