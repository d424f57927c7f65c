"""``pixio-recon-train``: train 3D heads on a frozen (or low-lr fine-tuned) Pixio encoder.

    pixio-recon-train                                        # the released architecture, CPU size
    pixio-recon-train recon=tiny                             # the earlier ReconstructionModel
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

The wiring is the pre-training one (:mod:`pixio_core.cli.common`: process group, step loader,
schedule, DDP, summary) around the one engine (:mod:`pixio_core.engine`); the task's parts come
from the task table (:mod:`pixio_3d.tasks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def ensure_scenes(
    root: str, generate: bool, num_scenes: int, data_cfg: DictConfig, seed: int, info: Any
) -> Path:
    """``root`` if it holds scene folders; else render ``num_scenes`` there (main process) when
    ``generate``, else a FileNotFoundError."""
    from pixio_3d.data import find_scenes
    from pixio_core.distributed import barrier

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


def settings(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain values (what the task table reads)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def run(cfg: DictConfig) -> Path:
    """Train as configured; returns ``output_dir``. Joins torch.distributed under torchrun."""
    from pixio_core.cli.common import run_distributed

    return run_distributed(cfg, _run)


def _run(cfg: DictConfig, info: Any) -> Path:
    import torch

    from pixio_3d.checkpoint import build_model
    from pixio_3d.data import MultiViewDataset
    from pixio_3d.tasks import get_task
    from pixio_3d.training.train import (
        TrainingSamples,
        build_optimizer,
        checkpoint_writer,
        resume_training,
        train_task_steps,
    )
    from pixio_core.cli.common import (
        build_loader,
        claim_output,
        config_checkpoints,
        lr_schedule,
        prepare_output,
        summarize,
        wrap_ddp,
    )
    from pixio_core.devices import resolve_device
    from pixio_core.loading import load_frozen_encoder
    from pixio_core.precision import resolve_precision
    from pixio_core.runlog import RunLogger

    task, train, data = get_task(cfg.task), cfg.train, cfg.data
    plain = settings(cfg)
    device = resolve_device(cfg.device, info.local_rank)
    dtype = resolve_precision(cfg.precision, device)
    model_config = task.model_config(plain)
    # the encoder first: a wrong source fails before any scene is rendered
    encoder, _ = load_frozen_encoder(cfg.encoder.source, cfg.encoder.seed, device)
    ckpt_dir = claim_output(cfg, info) / "checkpoints"  # another run is refused before any write
    encoder.requires_grad_(bool(cfg.encoder.trainable))
    torch.manual_seed(cfg.seed)  # the heads' initial weights
    model = build_model(task.name, encoder, model_config).to(device)
    optimizer = build_optimizer(
        model, cfg.optim.lr, cfg.optim.weight_decay, tuple(cfg.optim.betas), cfg.encoder.lr_scale
    )
    start_step = 0
    if train.resume:
        start_step = resume_training(ckpt_dir, model, optimizer, task.name, dist_info=info)
    # only now that the run folder holds this run (or none) is anything written into it
    out = prepare_output(cfg, info)
    root = ensure_scenes(data.root, data.generate, data.num_scenes, data, data.seed, info)

    if start_step < train.total_steps:
        dataset = MultiViewDataset(
            root,
            data.num_views,
            view_selection=data.view_selection,
            min_overlap=data.min_overlap,
            max_stride=data.max_stride,
            seed=cfg.seed,
        )
        samples = TrainingSamples(
            dataset, task.label_mode(plain), model_config.get("num_classes", 0)
        )
        loader = build_loader(samples, data, train, cfg.seed, start_step, info, device)
        mixed_inputs = task.name == "reconstruction" and 0 < train.intrinsics_probability < 1
        # the ray embedding sits out the steps without intrinsics
        wrapped = wrap_ddp(model, device, info, find_unused_parameters=mixed_inputs)
        save = config_checkpoints(
            ckpt_dir,
            train,
            model=model,
            optimizer=optimizer,
            info=info,
            write=checkpoint_writer(
                model,
                task.name,
                cfg.encoder.source,
                cfg.encoder.seed,
                {
                    "steps": train.total_steps,
                    "data": str(root),
                    "segmentation_labels": cfg.segmentation.labels,
                    "depth_mode": cfg.depth.mode,
                },
            ),
            save_rng=True,
        )
        logger = RunLogger(out, start_step=start_step, enabled=info.is_main)
        if info.is_main:
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(
                f"training {task.name} ({cfg.recon.name}, {trainable / 1e6:.2f} M trainable) on "
                f"{len(dataset.scenes)} scenes of {root}, encoder {cfg.encoder.source} "
                f"({'fine-tuned' if cfg.encoder.trainable else 'frozen'}): steps "
                f"{start_step}..{train.total_steps}, batch {train.global_batch_size} x "
                f"{data.min_views}-{data.num_views} views on {info.world_size} process(es), "
                f"{device}, {str(dtype).removeprefix('torch.')}"
            )
        try:
            train_task_steps(
                wrapped,
                task=task,
                loss=task.loss(model_config, plain["loss"]),
                batches=iter(loader),
                optimizer=optimizer,
                lr_schedule=lr_schedule(cfg.optim, train),
                start_step=start_step,
                end_step=train.total_steps,
                device=device,
                seed=cfg.seed,
                min_views=min(data.min_views, data.num_views),
                max_views=data.num_views,
                intrinsics_probability=train.intrinsics_probability,
                grad_clip=train.grad_clip,
                accumulation_steps=train.accumulation_steps,
                dtype=dtype,
                dist_info=info,
                log_fn=logger.log,
                on_step=save,
            )
        finally:
            logger.close()
        if info.is_main:
            summarize(out, ckpt_dir, title=f"pixio-recon-train {task.name} ({cfg.recon.name})")
    elif info.is_main:
        print(f"nothing to train: the run in {out} already reached {start_step} steps")

    if cfg.eval.scenes and info.is_main:
        evaluate_run(cfg, ckpt_dir, out / "eval", device)
    return out


def evaluate_run(cfg: DictConfig, ckpt_dir: Path, out_dir: Path, device: Any) -> Path:
    """Evaluate the run's last checkpoint on ``eval.scenes`` (rendered first if asked)."""
    from pixio_3d.checkpoint import load_model
    from pixio_3d.evaluation.evaluate import evaluate_model, markdown_table, write_eval
    from pixio_3d.tasks import EvalOptions
    from pixio_core.distributed import DistInfo

    scenes = ensure_scenes(
        cfg.eval.scenes, cfg.eval.generate, cfg.eval.num_scenes, cfg.data, cfg.eval.seed, DistInfo()
    )
    model, config = load_model(ckpt_dir, device)
    options = EvalOptions(
        samples_per_scene=cfg.eval.samples_per_scene,
        seed=cfg.eval.seed,
        give_intrinsics=cfg.eval.give_intrinsics,
        view_selection=cfg.eval.view_selection,
        device=device,
    )
    rows = evaluate_model(model, config, scenes, tuple(cfg.eval.views), options)
    meta = {"checkpoint": str(ckpt_dir), "task": config["task"], "scenes": str(scenes)}
    _, md_path = write_eval(rows, out_dir, meta, overwrite=True)  # the run's own eval folder
    print(markdown_table(rows))
    print(f"wrote {md_path}")
    return md_path


def main(argv: list[str] | None = None) -> None:
    """``python -m pixio_3d.cli.train`` (torchrun): the ``pixio-recon-train`` console script."""
    from pixio_3d.cli import train_main

    train_main(argv)


if __name__ == "__main__":
    main()
