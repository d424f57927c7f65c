"""``pixio-curate``: per-image scores for self-curation, written beside the data.

For every image: the MAE reconstruction loss with the model's training mask settings (averaged
over ``num_masks`` masks), the color-histogram entropy and the image size, as JSON lines in
``<root>/pixio_curation.jsonl``. ``pixio-pretrain data.curation=<that file>`` then keeps each
image with probability ``min(loss / loss_scale, 1)``, re-drawn every pass. A histogram of the
losses of images one pass keeps vs drops is written next to the file (``*_histogram.png``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import hydra
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from pixio_core.cli.common import CONFIG_DIR  # noqa: E402
from pixio_core.data import ImageFolderDataset, eval_transform  # noqa: E402
from pixio_core.data.curation import color_histogram_entropy, keep_probabilities  # noqa: E402
from pixio_core.data.sampler import StepBatchSampler  # noqa: E402
from pixio_core.loading import load_mae  # noqa: E402
from pixio_core.models.mae import PixioMAE  # noqa: E402
from pixio_core.precision import autocast, resolve_precision  # noqa: E402


@torch.no_grad()
def reconstruction_losses(
    model: PixioMAE,
    dataset: ImageFolderDataset,
    num_masks: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Per-image masked-patch loss averaged over ``num_masks`` seeded masks, ``(N,)``."""
    losses = torch.zeros(len(dataset))
    loader = DataLoader(dataset, batch_size=batch_size)
    generator = torch.Generator().manual_seed(seed)
    for batch in tqdm(loader, desc="scoring", dynamic_ncols=True):
        images = batch["image"].to(device)
        grid = model.encoder.check_input(images)
        total = torch.zeros(images.shape[0])
        for _ in range(num_masks):
            mask = model.sample_mask(images.shape[0], *grid, generator)
            with autocast(device, dtype):
                total += model(images, mask=mask)["loss_per_sample"].float().cpu()
        losses[batch["index"]] = total / num_masks
    return losses


def save_histogram(path: Path, losses: torch.Tensor, kept: torch.Tensor, loss_scale: float) -> Path:
    fig, axis = plt.subplots(figsize=(6, 3.5))
    bins = torch.linspace(float(losses.min()), float(losses.max()), 30).numpy()
    axis.hist(losses[kept].numpy(), bins=bins, alpha=0.6, label=f"kept ({int(kept.sum())})")
    axis.hist(losses[~kept].numpy(), bins=bins, alpha=0.6, label=f"dropped ({int((~kept).sum())})")
    axis.set_xlabel("reconstruction loss")
    axis.set_ylabel("images")
    axis.set_title(f"one curated pass, keep probability min(loss / {loss_scale:g}, 1)")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(cfg: DictConfig) -> Path:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_precision(cfg.precision, device)
    model = load_mae(cfg.checkpoint, device=device)
    image_size = cfg.image_size or model.encoder.config.image_size
    dataset = ImageFolderDataset(cfg.data.root, eval_transform(image_size))
    losses = reconstruction_losses(
        model, dataset, cfg.num_masks, cfg.batch_size, cfg.seed, device, dtype
    )
    if dataset.skipped:
        print(
            f"skipped {len(dataset.skipped)} unreadable files: {sorted(map(str, dataset.skipped))[:5]} ..."
        )
    output = Path(cfg.output or Path(cfg.data.root) / "pixio_curation.jsonl")
    lines = []
    for path, loss in zip(dataset.files, losses.tolist(), strict=True):
        if path in dataset.skipped:
            continue
        with Image.open(path) as image:
            width, height = image.size
            entropy = color_histogram_entropy(image)
        lines.append(
            json.dumps(
                {
                    "path": str(path.relative_to(dataset.root)),
                    "loss": loss,
                    "entropy": entropy,
                    "height": height,
                    "width": width,
                }
            )
        )
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, output)

    keep = keep_probabilities(dataset.files, dataset.root, output, loss_scale=cfg.loss_scale)
    sampler = StepBatchSampler(len(dataset), 1, 1, seed=cfg.seed, keep_probability=keep)
    kept = torch.zeros(len(dataset), dtype=torch.bool)
    kept[sampler.epoch_order(0)] = True
    plot = save_histogram(
        output.with_name(output.stem + "_histogram.png"), losses, kept, cfg.loss_scale
    )
    print(f"scored {len(lines)} images -> {output}")
    print(
        f"mean loss: all {losses.mean():.4f}, kept in one pass {losses[kept].mean():.4f} "
        f"({int(kept.sum())} images), dropped {losses[~kept].mean():.4f}; histogram: {plot}"
    )
    return output


@hydra.main(config_path=CONFIG_DIR, config_name="curate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
