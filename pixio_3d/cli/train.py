"""``pixio-recon-train``: train 3D heads on a frozen (or low-lr fine-tuned) Pixio encoder.

    pixio-recon-train                                        # tiny reconstruction model on CPU
    pixio-recon-train task=depth depth.mode=metric           # monocular metric depth (SiLog)
    pixio-recon-train task=segmentation segmentation.head=dpt
    pixio-recon-train encoder.source=random:pixio_vitt16     # the random-encoder baseline
    torchrun --nproc-per-node 8 -m pixio_3d.cli.train recon=base data.root=/scenes

Config: ``configs/recon_train.yaml`` with the size group ``configs/recon/``. Scenes come from
``data.root``; when it holds none and ``data.generate`` is true they are rendered first
(:func:`pixio_3d.data.scenes.generate_dataset`). Writes to ``output_dir``: ``checkpoints/step_*``
(+ ``last``; each loads with :func:`pixio_3d.checkpoint.load_model`), ``log.jsonl``,
``tensorboard/``, ``loss_curve.png``, ``summary.json``, the resolved ``config.yaml`` and, with
``eval.scenes`` set, ``eval/results.{json,md}``. A run with checkpoints resumes exactly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from pixio_core.cli.common import (
    CONFIG_DIR,
    prepare_output,
    resolve_device,
    run_distributed,
    summarize,
)
from pixio_core.distributed import DistInfo, barrier


def ensure_scenes(
    root: str, generate: bool, num_scenes: int, data_cfg: DictConfig, seed: int, info: DistInfo
) -> Path:
    """``root`` if it holds scene folders; else render ``num_scenes`` there (main process) when
    ``generate``, else a FileNotFoundError."""
    from pixio_3d.data import find_scenes

    root_path = Path(root)
    try:
        find_scenes(root_path)
        return root_path
    except FileNotFoundError:
        if not generate:
            raise
    if info.is_main:
        from pixio_3d.data.scenes import SceneConfig, generate_dataset

        print(f"rendering {num_scenes} scenes into {root_path} (seed {seed})")
        generate_dataset(
            root_path,
            num_scenes=num_scenes,
            views_per_scene=data_cfg.views_per_scene,
            height=data_cfg.height,
            width=data_cfg.width,
            seed=seed,
            config=SceneConfig(texture_mode=data_cfg.texture),
        )
    barrier(info)
    return root_path


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """The plain config of ``cfg.task``'s model (see :func:`pixio_3d.checkpoint.build_model`)."""
    from pixio_3d.data.labels import num_label_classes

    if cfg.task == "reconstruction":
        return OmegaConf.to_container(cfg.recon.model, resolve=True)
    dense = OmegaConf.to_container(cfg.recon.dense, resolve=True)
    if cfg.task == "depth":
        return {
            **dense,
            "head": cfg.depth.head,
            "mode": cfg.depth.mode,
            "max_depth": cfg.depth.max_depth,
        }
    if cfg.task == "segmentation":
        classes = num_label_classes(cfg.segmentation.labels, cfg.segmentation.num_object_ids)
        return {**dense, "head": cfg.segmentation.head, "num_classes": classes}
    raise ValueError(f"task must be reconstruction, depth or segmentation, got {cfg.task!r}")


def run(cfg: DictConfig) -> Path:
    """Train as configured; returns ``output_dir``. Joins torch.distributed under torchrun."""
    return run_distributed(cfg, _run)


def _run(cfg: DictConfig, info: DistInfo) -> Path:
    from pixio_3d.checkpoint import build_model
    from pixio_3d.data import MultiViewDataset
    from pixio_3d.training.losses import ReconstructionLossConfig
    from pixio_3d.training.train import (
        Objective,
        TrainingSamples,
        build_optimizer,
        resume_training,
        save_training_checkpoint,
        train_steps,
    )
    from pixio_core.data.sampler import StepBatchSampler
    from pixio_core.engine import cosine_schedule
    from pixio_core.loading import load_frozen_encoder
    from pixio_core.precision import resolve_precision
    from pixio_core.runlog import RunLogger

    task, train, data = cfg.task, cfg.train, cfg.data
    device = resolve_device(cfg.device, info.local_rank)
    dtype = resolve_precision(cfg.precision, device)
    out = prepare_output(cfg, info)
    ckpt_dir = out / "checkpoints"
    root = ensure_scenes(data.root, data.generate, data.num_scenes, data, data.seed, info)
    config = model_config(cfg)

    encoder, _ = load_frozen_encoder(cfg.encoder.source, cfg.encoder.seed, device)
    encoder.requires_grad_(bool(cfg.encoder.trainable))
    torch.manual_seed(cfg.seed)  # the heads' initial weights
    model = build_model(task, encoder, config).to(device)
    optimizer = build_optimizer(
        model, cfg.optim.lr, cfg.optim.weight_decay, tuple(cfg.optim.betas), cfg.encoder.lr_scale
    )
    start_step = resume_training(ckpt_dir, model, optimizer, task) if train.resume else 0
    if start_step and info.is_main:
        print(f"resuming from {ckpt_dir} at step {start_step}")

    if start_step < train.total_steps:
        dataset = MultiViewDataset(
            root,
            data.num_views,
            view_selection=data.view_selection,
            min_overlap=data.min_overlap,
            max_stride=data.max_stride,
            seed=cfg.seed,
        )
        labels = cfg.segmentation.labels if task == "segmentation" else None
        samples = TrainingSamples(dataset, labels, config.get("num_classes", 0))
        sampler = StepBatchSampler(
            len(samples),
            train.global_batch_size,
            train.total_steps,
            seed=cfg.seed,
            start_step=start_step,
            rank=info.rank,
            world_size=info.world_size,
        )
        loader = DataLoader(
            samples,
            batch_sampler=sampler,
            num_workers=data.num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=data.num_workers > 0,
        )
        mixed_inputs = task == "reconstruction" and 0 < train.intrinsics_probability < 1
        wrapped = model
        if info.enabled:
            wrapped = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=mixed_inputs,  # the ray embedding sits out some steps
            )
        loss_config = ReconstructionLossConfig(**OmegaConf.to_container(cfg.loss, resolve=True))
        objective = Objective(task, cfg.depth.mode, loss_config)
        schedule = cosine_schedule(
            cfg.optim.lr,
            train.total_steps,
            min(cfg.optim.warmup_steps, train.total_steps),
            final=cfg.optim.min_lr,
        )
        checkpoint_info = {
            "steps": train.total_steps,
            "data": str(root),
            "segmentation_labels": cfg.segmentation.labels,
            "depth_mode": cfg.depth.mode,
        }

        def on_step(step: int, scalars: dict[str, float]) -> None:
            done = step + 1
            if done % train.checkpoint_every and done != train.total_steps:
                return
            if info.is_main:
                save_training_checkpoint(
                    ckpt_dir,
                    done,
                    model,
                    optimizer,
                    task,
                    cfg.encoder.source,
                    cfg.encoder.seed,
                    {**checkpoint_info, "step": done},
                    train.keep_last,
                )
            barrier(info)

        logger = RunLogger(out, start_step=start_step, enabled=info.is_main)
        if info.is_main:
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(
                f"training {task} ({cfg.recon.name}, {trainable / 1e6:.2f} M trainable) on "
                f"{len(dataset.scenes)} scenes of {root}, encoder {cfg.encoder.source} "
                f"({'fine-tuned' if cfg.encoder.trainable else 'frozen'}): steps "
                f"{start_step}..{train.total_steps}, batch {train.global_batch_size} x "
                f"{data.min_views}-{data.num_views} views on {info.world_size} process(es), "
                f"{device}, {str(dtype).removeprefix('torch.')}"
            )
        try:
            train_steps(
                wrapped,
                objective,
                iter(loader),
                optimizer,
                schedule,
                start_step,
                train.total_steps,
                device,
                seed=cfg.seed,
                min_views=min(data.min_views, data.num_views),
                max_views=data.num_views,
                intrinsics_probability=train.intrinsics_probability,
                grad_clip=train.grad_clip,
                dtype=dtype,
                dist_info=info,
                log_fn=logger.log,
                on_step=on_step,
            )
        finally:
            logger.close()
        if info.is_main:
            summarize(out, ckpt_dir, title=f"pixio-recon-train {task} ({cfg.recon.name})")
    elif info.is_main:
        print(f"nothing to train: the run in {out} already reached {start_step} steps")

    if cfg.eval.scenes and info.is_main:
        evaluate_run(cfg, ckpt_dir, out / "eval", device)
    return out


def evaluate_run(cfg: DictConfig, ckpt_dir: Path, out_dir: Path, device: torch.device) -> Path:
    """Evaluate the run's last checkpoint on ``eval.scenes`` (rendered first if asked)."""
    from pixio_3d.checkpoint import load_model
    from pixio_3d.evaluation.evaluate import evaluate_model, markdown_table, write_eval

    scenes = ensure_scenes(
        cfg.eval.scenes, cfg.eval.generate, cfg.eval.num_scenes, cfg.data, cfg.eval.seed, DistInfo()
    )
    model, config = load_model(ckpt_dir, device)
    rows = evaluate_model(
        model,
        config,
        scenes,
        tuple(cfg.eval.views),
        device=device,
        samples_per_scene=cfg.eval.samples_per_scene,
        seed=cfg.eval.seed,
        give_intrinsics=cfg.eval.give_intrinsics,
        view_selection=cfg.eval.view_selection,
    )
    meta = {"checkpoint": str(ckpt_dir), "task": config["task"], "scenes": str(scenes)}
    _, md_path = write_eval(rows, out_dir, meta)
    print(markdown_table(rows))
    print(f"wrote {md_path}")
    return md_path


def load_config(overrides: list[str]) -> DictConfig:
    """``configs/recon_train.yaml`` composed with hydra overrides (``key=value``)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("recon_train", overrides=overrides)


def main(argv: list[str] | None = None) -> None:
    """Entry point: hydra overrides from ``argv`` (default: the command line)."""
    os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is first imported
    run(load_config(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
