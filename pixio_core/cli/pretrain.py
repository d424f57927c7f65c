"""``pixio-pretrain``: MAE pre-training of a Pixio encoder, from a laptop CPU to torchrun clusters.

    pixio-pretrain                                   # CPU default: tiny model, procedural images
    pixio-pretrain data=folder data.root=/images train.total_steps=20000
    pixio-pretrain +experiment=paper_vith16 data.root=/images
    torchrun --nproc-per-node 8 -m pixio_core.cli.pretrain +experiment=paper_vith16 ...

Writes to ``output_dir``: ``checkpoints/step_*`` (+ ``last``), ``log.jsonl``, ``tensorboard/``,
``reconstructions/step_*.png``, ``loss_curve.png``, ``summary.json`` and the resolved
``config.yaml``; with ``rerun=true`` also ``recording.rrd`` (loss curve and reconstructions on a
``step`` timeline; ``pixio-view output_dir`` opens it). A run with checkpoints resumes exactly
where it stopped (``train.resume=true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from pixio_core.cli.common import (
    build_dataset,
    build_loader,
    claim_output,
    config_checkpoints,
    lr_schedule,
    prepare_output,
    run_distributed,
    summarize,
    uses_fsdp,
    wrap_ddp,
)
from pixio_core.data import ImageFolderDataset, eval_transform
from pixio_core.data.shards import ShardDataset
from pixio_core.devices import resolve_device
from pixio_core.distributed import DistInfo, apply_fsdp
from pixio_core.engine import make_optimizer, pretrain_steps, resume
from pixio_core.models import DecoderConfig, MaskingConfig, PixioMAE, create_mae
from pixio_core.precision import resolve_precision
from pixio_core.runlog import RunLogger
from pixio_core.visualize import reconstruction_panels, save_reconstruction_grid


def build_mae(model_cfg: DictConfig) -> PixioMAE:
    """The ``model`` config group -> a :class:`PixioMAE`."""
    overrides: dict[str, Any] = {
        "image_size": model_cfg.image_size,
        "drop_path_rate": model_cfg.drop_path_rate,
        "masking": MaskingConfig(model_cfg.mask_ratio, model_cfg.mask_grid),
    }
    if model_cfg.get("num_class_tokens") is not None:
        overrides["num_class_tokens"] = model_cfg.num_class_tokens
    if model_cfg.get("decoder") is not None:
        overrides["decoder"] = DecoderConfig(**OmegaConf.to_container(model_cfg.decoder))
    return create_mae(model_cfg.encoder, recipe=model_cfg.recipe, **overrides)


def preview_images(
    dataset: ImageFolderDataset | ShardDataset, image_size: int, count: int = 6
) -> torch.Tensor:
    """A few fixed images (resized and center-cropped): spread over a folder, first of the shards."""
    if isinstance(dataset, ShardDataset):
        stream = ShardDataset(dataset.shards[:1], eval_transform(image_size), shuffle_buffer=1)
        return torch.stack([item["image"] for item, _ in zip(stream, range(count), strict=False)])
    plain = ImageFolderDataset(dataset.root, eval_transform(image_size))
    picks = [i * len(plain) // count for i in range(min(count, len(plain)))]
    return torch.stack([plain[i]["image"] for i in picks])


def describe(dataset: ImageFolderDataset | ShardDataset) -> str:
    if isinstance(dataset, ShardDataset):
        return f"{len(dataset.shards)} WebDataset shards"
    return f"{len(dataset)} images"


class ReconstructionPreview:
    """Original / masked / reconstruction of a few fixed images with a fixed mask, as PNG + TensorBoard."""

    def __init__(self, images: torch.Tensor, out_dir: Path) -> None:
        self.images = images
        self.out_dir = out_dir

    @torch.no_grad()
    def __call__(self, model: PixioMAE, step: int, logger: RunLogger) -> Path | None:
        device = next(model.parameters()).device
        images = self.images.to(device)
        grid = model.encoder.check_input(images)
        mask = model.sample_mask(images.shape[0], *grid, torch.Generator().manual_seed(1234))
        was_training = model.training
        model.eval()
        result = model(images, mask=mask)
        model.train(was_training)
        panels = reconstruction_panels(
            images, result["pred"], result["mask"], model.encoder.patch_size, model.norm_pix_loss
        )
        if not logger.enabled:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = save_reconstruction_grid(
            self.out_dir / f"step_{step:08d}.png", *[p.cpu() for p in panels]
        )
        logger.image("reconstruction", np.asarray(Image.open(path).convert("RGB")), step)
        return path


def run(cfg: DictConfig) -> Path:
    """Train as configured; returns ``output_dir``. Joins torch.distributed under torchrun."""
    return run_distributed(cfg, _run)


def _run(cfg: DictConfig, info: DistInfo) -> Path:
    device = resolve_device(cfg.device, info.local_rank)
    dtype = resolve_precision(cfg.precision, device)
    out = claim_output(cfg, info)  # another run in output_dir is refused before any write
    ckpt_dir = out / "checkpoints"
    train = cfg.train

    torch.manual_seed(cfg.seed)  # the initial weights
    model = build_mae(cfg.model).to(device)
    model_config = {"kind": "mae", "recipe": cfg.model.recipe, **model.config_dict()}
    sharded = uses_fsdp(train, info)
    if sharded:
        apply_fsdp(model, param_dtype=dtype)
    optimizer = make_optimizer(
        model,
        cfg.optim.weight_decay,
        tuple(cfg.optim.betas),
        implementation=cfg.optim.get("implementation", "auto"),
    )
    start_step = 0
    if train.resume:
        start_step = resume(ckpt_dir, model=model, optimizer=optimizer, dist_info=info)
    if start_step >= train.total_steps:
        if info.is_main:
            print(f"nothing to do: the run in {out} already reached {start_step} steps")
        return out
    prepare_output(cfg, info)

    dataset = build_dataset(cfg.data, cfg.model.image_size, cfg.seed, info, start_step)
    loader = build_loader(dataset, cfg.data, train, cfg.seed, start_step, info, device)
    wrapped = model if sharded else wrap_ddp(model, device, info)
    if train.compile:
        wrapped = torch.compile(wrapped)

    logger = RunLogger(
        out,
        start_step=start_step,
        enabled=info.is_main,
        rerun=bool(cfg.get("rerun", False)),
        pictures={"reconstruction": out / "reconstructions"},
    )
    # with FSDP every rank must take part in the preview's forward pass; only the main rank writes
    preview = None
    if info.is_main or sharded:
        images = preview_images(dataset, cfg.model.image_size)
        preview = ReconstructionPreview(images, out / "reconstructions")
    save = config_checkpoints(
        ckpt_dir,
        train,
        model=model,
        optimizer=optimizer,
        info=info,
        config=model_config,
        sharded=sharded,
    )

    def on_step(step: int, scalars: dict[str, float]) -> None:
        save(step, scalars)
        done = step + 1
        if preview is not None and (done % train.recon_every == 0 or done == train.total_steps):
            preview(model, done, logger)

    schedule = lr_schedule(cfg.optim, train)
    if info.is_main:
        print(
            f"pre-training {cfg.model.encoder} ({cfg.model.recipe} recipe) on {describe(dataset)} at "
            f"{cfg.model.image_size} px: steps {start_step}..{train.total_steps}, global batch "
            f"{train.global_batch_size} on {info.world_size} process(es), {device}, "
            f"{str(dtype).removeprefix('torch.')}, peak lr {max(schedule):.3g}"
        )
    try:
        pretrain_steps(
            wrapped,
            batches=iter(loader),
            optimizer=optimizer,
            lr_schedule=schedule,
            start_step=start_step,
            end_step=train.total_steps,
            device=device,
            dtype=dtype,
            seed=cfg.seed,
            accumulation_steps=train.accumulation_steps,
            dist_info=info,
            log_fn=logger.log,
            on_step=on_step,
        )
    finally:
        logger.close()
    if info.is_main:
        summarize(out, ckpt_dir, title=f"{cfg.model.encoder}, {cfg.model.recipe} recipe")
        print(f"reconstructions: {out / 'reconstructions'}")
        if logger.recording is not None:
            print(f"Rerun recording: {logger.recording.path}  (open it: pixio-view {out})")
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m pixio_core.cli.pretrain`` (torchrun): the ``pixio-pretrain`` console script."""
    from pixio_core.cli import pretrain_main

    pretrain_main(argv)


if __name__ == "__main__":
    main()
