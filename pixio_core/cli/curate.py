"""``pixio-curate``: per-image scores for self-curation, written beside the data.

For every image (of a folder, or of each WebDataset shard): the MAE reconstruction loss with the
model's training mask settings (averaged over ``num_masks`` masks), the color-histogram entropy
and the image size, as JSON lines in ``<root>/pixio_curation.jsonl`` (for shards:
``<shard>.curation.jsonl`` beside each shard). Training with ``data.curation`` then keeps each
image with probability ``min(loss / loss_scale, 1)``, re-drawn every pass. A histogram of the
losses of images one pass keeps vs drops is written next to the file (``*_histogram.png``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image
from tqdm.auto import tqdm

from pixio_core.data import eval_transform, find_images, read_rgb
from pixio_core.data.curation import color_histogram_entropy
from pixio_core.data.sampler import StepBatchSampler
from pixio_core.data.shards import IMAGE_KEYS, curation_path, expand_urls
from pixio_core.devices import resolve_device
from pixio_core.io import atomic_write_text
from pixio_core.loading import load_mae
from pixio_core.models.mae import PixioMAE
from pixio_core.precision import autocast, resolve_precision


@torch.no_grad()
def score_images(
    model: PixioMAE,
    items: Iterable[tuple[str, Image.Image]],
    image_size: int,
    num_masks: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
) -> Iterator[dict]:
    """Curation records ``{"key", "loss", "entropy", "height", "width"}`` for ``(key, image)`` items.

    ``loss`` is the masked-patch loss with the model's training mask settings, averaged over
    ``num_masks`` masks, on the image resized and center-cropped to ``image_size``.
    """
    transform = eval_transform(image_size)
    pending: list[dict] = []
    tensors: list[torch.Tensor] = []

    def flush() -> Iterator[dict]:
        images = torch.stack(tensors).to(device)
        grid = model.encoder.check_input(images)
        total = torch.zeros(images.shape[0])
        for _ in range(num_masks):
            mask = model.sample_mask(images.shape[0], *grid, generator)
            with autocast(device, dtype):
                total += model(images, mask=mask)["loss_per_sample"].float().cpu()
        for record, loss in zip(pending, (total / num_masks).tolist(), strict=True):
            yield {**record, "loss": loss}
        pending.clear()
        tensors.clear()

    for key, image in items:
        width, height = image.size
        entropy = color_histogram_entropy(image)
        pending.append({"key": key, "entropy": entropy, "height": height, "width": width})
        tensors.append(transform(image))
        if len(tensors) == batch_size:
            yield from flush()
    if tensors:
        yield from flush()


def folder_items(root: Path, skipped: list[str]) -> Iterator[tuple[str, Image.Image]]:
    """``(path relative to root, RGB image)``; unreadable files are listed in ``skipped``."""
    for path in find_images(root):
        rgb = read_rgb(path)
        if rgb is None:
            skipped.append(str(path))
            continue
        yield str(path.relative_to(root)), rgb


def shard_items(shard: str, skipped: list[str]) -> Iterator[tuple[str, Image.Image]]:
    """``(sample key, RGB image)`` of one WebDataset shard; bad samples are listed in ``skipped``."""
    import webdataset as wds

    def count(error: Exception) -> bool:
        skipped.append(f"{shard}: {error}")
        return True

    for sample in wds.tarfile_to_samples(handler=count)(iter([{"url": shard}])):
        rgb = read_rgb(next((sample[k] for k in IMAGE_KEYS if k in sample), None))
        if rgb is None:
            skipped.append(f"{shard}:{sample['__key__']}")
            continue
        yield sample["__key__"], rgb


def write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))


def save_histogram(path: Path, losses: torch.Tensor, kept: torch.Tensor, loss_scale: float) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    axis = fig.subplots()
    bins = torch.linspace(float(losses.min()), float(losses.max()), 30).numpy()
    axis.hist(losses[kept].numpy(), bins=bins, alpha=0.6, label=f"kept ({int(kept.sum())})")
    axis.hist(losses[~kept].numpy(), bins=bins, alpha=0.6, label=f"dropped ({int((~kept).sum())})")
    axis.set_xlabel("reconstruction loss")
    axis.set_ylabel("images")
    axis.set_title(f"one curated pass, keep probability min(loss / {loss_scale:g}, 1)")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def run(cfg: DictConfig) -> Path:
    """Score the data; returns the curation file (folders) or the first shard's file (shards)."""
    device = resolve_device("auto")
    dtype = resolve_precision(cfg.precision, device)
    model = load_mae(cfg.checkpoint, device=device)
    image_size = cfg.image_size or model.encoder.config.image_size
    generator = torch.Generator().manual_seed(cfg.seed)
    skipped: list[str] = []
    score = partial(
        score_images,
        model,
        image_size=image_size,
        num_masks=cfg.num_masks,
        batch_size=cfg.batch_size,
        generator=generator,
        device=device,
        dtype=dtype,
    )
    if cfg.data.kind == "webdataset":
        outputs, records = [], []
        for shard in tqdm(expand_urls(cfg.data.urls), desc="shards"):
            shard_records = list(score(shard_items(shard, skipped)))
            write_jsonl(curation_path(shard), shard_records)
            outputs.append(curation_path(shard))
            records += shard_records
        output = outputs[0]
    elif cfg.data.kind == "folder":
        root = Path(cfg.data.root)
        records = list(score(tqdm(folder_items(root, skipped), desc="scoring")))
        output = Path(cfg.output or root / "pixio_curation.jsonl")
        write_jsonl(
            output,
            [{"path": r["key"], **{k: v for k, v in r.items() if k != "key"}} for r in records],
        )
    else:
        raise ValueError(f"data.kind must be 'folder' or 'webdataset', got {cfg.data.kind!r}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable images: {skipped[:5]}")
    if not records:
        raise RuntimeError(f"no readable image found in {cfg.data}")

    losses = torch.tensor([r["loss"] for r in records])
    keep = (losses / cfg.loss_scale).clamp(max=1.0)
    sampler = StepBatchSampler(len(records), 1, 1, seed=cfg.seed, keep_probability=keep)
    kept = torch.zeros(len(records), dtype=torch.bool)
    kept[sampler.epoch_order(0)] = True
    plot = save_histogram(
        output.with_name(output.stem + "_histogram.png"), losses, kept, cfg.loss_scale
    )
    print(f"scored {len(records)} images -> {output}")
    print(
        f"mean loss: all {losses.mean():.4f}, kept in one pass {losses[kept].mean():.4f} "
        f"({int(kept.sum())} images), dropped {losses[~kept].mean():.4f}; histogram: {plot}"
    )
    return output


def main(argv: list[str] | None = None) -> None:
    """``python -m pixio_core.cli.curate`` (torchrun): the ``pixio-curate`` console script."""
    from pixio_core.cli import curate_main

    curate_main(argv)


if __name__ == "__main__":
    main()
