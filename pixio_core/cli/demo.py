"""``pixio-demo``: a short pre-training of a tiny Pixio on procedurally made images.

Writes under ``--out`` (default ``outputs/demo``): the images it made (``data/``), checkpoints
(``run/step_XXXXXXXX`` + ``run/last``), ``loss.jsonl``, ``loss_curve.png`` and
``reconstruction.png`` (original / masked / reconstruction), then reloads the encoder with
``load_encoder`` to show the checkpoint is usable.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pixio_core.checkpoint import save_checkpoint, write_last_pointer
from pixio_core.data import (
    ImageFolderDataset,
    eval_transform,
    make_shapes_dataset,
    pretrain_transform,
)
from pixio_core.engine import cosine_schedule, param_groups, pretrain_steps
from pixio_core.loading import load_encoder
from pixio_core.models import MaskingConfig, create_mae
from pixio_core.precision import PRECISIONS, resolve_precision
from pixio_core.visualize import reconstruction_panels, save_loss_curve, save_reconstruction_grid


def _batches(loader: DataLoader):
    while True:
        for images, _ in loader:
            yield images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--images-per-class", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--recipe", choices=("pixio", "mae"), default="pixio")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_precision(args.precision, device)
    out = args.out
    run_dir = out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)

    data_dir = make_shapes_dataset(
        out / "data", images_per_class=args.images_per_class, image_size=args.image_size
    )
    dataset = ImageFolderDataset(data_dir, pretrain_transform(args.image_size))
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    # At 128 px the patch grid is 8x8; 2x2-patch blocks give the paper's 4x4 grid of blocks
    # (75 % masked = 12 of 16 blocks), the same proportions as 4x4 blocks on 256 px images.
    mask_grid = 4 if args.image_size % 64 == 0 and args.image_size >= 256 else 2
    masking = MaskingConfig(mask_ratio=0.75, mask_grid=mask_grid if args.recipe == "pixio" else 1)
    model = create_mae(
        "pixio_vitt16", recipe=args.recipe, image_size=args.image_size, masking=masking
    ).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=args.lr, betas=(0.9, 0.95))
    schedule = cosine_schedule(args.lr, args.steps, warmup_steps=max(1, args.steps // 10))
    generator = torch.Generator().manual_seed(args.seed)
    config = {
        "kind": "mae",
        **model.config_dict(),
        "recipe": args.recipe,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))

    def checkpoint(step: int, scalars: dict[str, float]) -> None:
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            path = save_checkpoint(
                run_dir / f"step_{step + 1:08d}",
                model.state_dict(),
                config,
                {"step": step + 1, "optimizer": optimizer.state_dict(), "loss": scalars["loss"]},
            )
            write_last_pointer(run_dir, path)

    print(
        f"pre-training pixio_vitt16 ({args.recipe} recipe) for {args.steps} steps on {len(dataset)} "
        f"images at {args.image_size} px, {device} {str(dtype).removeprefix('torch.')}"
    )
    started = time.perf_counter()
    log_path = out / "loss.jsonl"
    log_path.unlink(missing_ok=True)
    losses = pretrain_steps(
        model,
        _batches(loader),
        optimizer,
        schedule,
        0,
        args.steps,
        device,
        dtype,
        generator=generator,
        log_path=log_path,
        on_step=checkpoint,
    )
    seconds = time.perf_counter() - started

    save_loss_curve(out / "loss_curve.png", losses, title=f"pixio_vitt16, {args.recipe} recipe")
    eval_set = ImageFolderDataset(data_dir, eval_transform(args.image_size))
    images = torch.stack([eval_set[i * args.images_per_class][0] for i in range(6)]).to(device)
    model.eval()
    with torch.no_grad():
        result = model(images, generator=torch.Generator().manual_seed(1234))
    panels = reconstruction_panels(images, result["pred"], result["mask"], model.encoder.patch_size)
    save_reconstruction_grid(out / "reconstruction.png", *panels)

    encoder = load_encoder(run_dir)
    with torch.no_grad():
        pooled = encoder.forward_features(images.cpu())["pooled"]
    window = max(1, len(losses) // 10)
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    print(f"done in {seconds:.0f} s ({args.steps * args.batch_size / seconds:.1f} images/s)")
    print(f"loss: first {window} steps {first:.4f} -> last {window} steps {last:.4f}")
    print(
        f"checkpoint: {run_dir / (run_dir / 'last').read_text().strip()} "
        f"(reloaded: pooled features {tuple(pooled.shape)})"
    )
    print(f"loss curve: {out / 'loss_curve.png'}\nreconstructions: {out / 'reconstruction.png'}")


if __name__ == "__main__":
    main()
