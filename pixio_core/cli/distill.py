"""``pixio-distill``: distil a frozen teacher encoder into a smaller student (paper appendix 7.2).

    pixio-distill teacher=outputs/demo/checkpoints                    # CPU: tiny student
    pixio-distill teacher=/ckpt/pixio_vit5b16.pth student.encoder=pixio_vith16 \\
        student.mask_ratio=0.5 student.mask_grid=4 student.drop_path_rate=0.4 ...

The saved student (``output_dir/student``) is a plain encoder that ``load_encoder`` reads; the
training checkpoints (student + projection head + optimizer) resume exactly like pre-training.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from pixio_core.cli.common import (
    build_dataset,
    build_loader,
    claim_output,
    config_checkpoints,
    lr_schedule,
    prepare_output,
    run_distributed,
    summarize,
    wrap_ddp,
)
from pixio_core.cli.pretrain import describe
from pixio_core.data.sampler import mix_seed
from pixio_core.devices import resolve_device
from pixio_core.distill import DistillStudent, teacher_tokens
from pixio_core.distributed import DistInfo
from pixio_core.engine import make_optimizer, resume, step_mask, train_steps
from pixio_core.loading import load_encoder, save_encoder
from pixio_core.masking import sample_block_mask
from pixio_core.models import create_encoder
from pixio_core.precision import resolve_precision
from pixio_core.runlog import RunLogger


def run(cfg: DictConfig) -> Path:
    """Distil as configured; returns ``output_dir``. Joins torch.distributed under torchrun."""
    return run_distributed(cfg, _run)


def _run(cfg: DictConfig, info: DistInfo) -> Path:
    device = resolve_device(cfg.device, info.local_rank)
    dtype = resolve_precision(cfg.precision, device)
    out = claim_output(cfg, info)  # another run in output_dir is refused before any write
    ckpt_dir = out / "checkpoints"
    train, spec = cfg.train, cfg.student

    teacher = load_encoder(cfg.teacher, device=device).requires_grad_(False)
    torch.manual_seed(cfg.seed)  # the initial weights
    student = create_encoder(
        spec.encoder,
        image_size=spec.image_size,
        drop_path_rate=spec.drop_path_rate,
        num_class_tokens=teacher.num_class_tokens,
    )
    model = DistillStudent(
        student, teacher.embed_dim, teacher.num_class_tokens, spec.head_hidden_dim
    ).to(device)
    config = {
        "kind": "distill_student",
        "encoder": student.config.to_dict(),
        "teacher": str(cfg.teacher),
    }
    optimizer = make_optimizer(
        model,
        cfg.optim.weight_decay,
        tuple(cfg.optim.betas),
        implementation=cfg.optim.get("implementation", "auto"),
    )
    start_step = 0
    if train.resume:
        start_step = resume(ckpt_dir, model=model, optimizer=optimizer, dist_info=info)
    prepare_output(cfg, info)
    if start_step < train.total_steps:
        dataset = build_dataset(cfg.data, spec.image_size, cfg.seed, info, start_step)
        loader = build_loader(dataset, cfg.data, train, cfg.seed, start_step, info, device)
        wrapped = wrap_ddp(model, device, info)

        def sample_mask(batch: int, grid_h: int, grid_w: int, generator: torch.Generator):
            return sample_block_mask(
                batch, grid_h, grid_w, spec.mask_grid, spec.mask_ratio, generator
            )

        def loss_fn(batch: dict[str, torch.Tensor], step: int, micro: int) -> torch.Tensor:
            images = batch["image"]
            targets = teacher_tokens(teacher, images)
            grid = student.check_input(images)
            mask = None
            if spec.mask_ratio > 0:
                mask = step_mask(sample_mask, images, grid, cfg.seed, step, micro, info)
            torch.manual_seed(mix_seed(cfg.seed, step, micro, info.rank, 1))  # drop path
            return wrapped(images, targets, mask=mask)["loss"]

        logger = RunLogger(out, start_step=start_step, enabled=info.is_main)
        if info.is_main:
            print(
                f"distilling {cfg.teacher} ({teacher.config.embed_dim} wide, {teacher.config.depth} blocks) into "
                f"{spec.encoder} (mask ratio {spec.mask_ratio}) on {describe(dataset)}, steps "
                f"{start_step}..{train.total_steps}, {device}, {str(dtype).removeprefix('torch.')}"
            )
        try:
            train_steps(
                wrapped,
                loss_fn=loss_fn,
                batches=iter(loader),
                optimizer=optimizer,
                lr_schedule=lr_schedule(cfg.optim, train),
                start_step=start_step,
                end_step=train.total_steps,
                device=device,
                dtype=dtype,
                accumulation_steps=train.accumulation_steps,
                dist_info=info,
                log_fn=logger.log,
                on_step=config_checkpoints(
                    ckpt_dir,
                    train,
                    model=model,
                    optimizer=optimizer,
                    info=info,
                    config=config,
                ),
                desc="distill",
                throughput_key="images_per_s",
            )
        finally:
            logger.close()
    if info.is_main:
        summarize(out, ckpt_dir, title=f"distillation into {spec.encoder}")
        path = save_encoder(model.encoder, out / "student")
        print(f"student encoder: {path} (load_encoder reads it)")
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m pixio_core.cli.distill`` (torchrun): the ``pixio-distill`` console script."""
    from pixio_core.cli import distill_main

    distill_main(argv)


if __name__ == "__main__":
    main()
