"""Images/s of the pre-training data path per loader worker, on photo-sized JPEGs.

The images are 640x480 JPEGs (quality 90, smooth colour fields + noise, like photos in size and
entropy), read by the two loaders ``pixio-pretrain`` uses: an image folder
(:class:`~pixio_core.data.ImageFolderDataset` through the step sampler) and WebDataset shards of
the same files (:class:`~pixio_core.data.shards.ShardDataset`). Each sample is decoded
(torchvision's ``decode_jpeg``, :func:`pixio_core.data.folder.decode_rgb`), cropped with
RandomResizedCrop(224, scale 0.2-1) and normalised; ``--decoder pil`` times PIL's decoder instead.
``workers=0`` is the loading in the training process (one thread); with ``N`` workers, each
worker is one process with one thread. ``--step-rates`` turns the per-worker rate into the workers
needed to feed a training step of that many images/s.

    python benchmarks/data_loader.py                       # table + benchmarks/results/data_loader.json
    python benchmarks/data_loader.py --workers 0 1 2 --step-rates 2.3 120 900
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pretrain_throughput import loader_rate  # benchmarks/: images/s after the first batch
from torch.utils.data import DataLoader

from pixio_core.data import ImageFolderDataset, find_images, pretrain_transform
from pixio_core.data import folder as folder_module
from pixio_core.data import shards as shards_module
from pixio_core.data.sampler import StepBatchSampler
from pixio_core.data.shards import ShardDataset, write_shards


def write_photos(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` 640x480 JPEGs under ``root/photos/`` (reused when already there)."""
    folder = root / "images" / "photos"
    if len(list(folder.glob("*.jpg"))) == count:
        return root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640] / 640.0
    for i in range(count):
        a, b, c = rng.uniform(0.5, 4.0, 3)
        fields = [np.sin(a * x * 6 + i), np.cos(b * y * 6 - i), np.sin(c * (x + y) * 4)]
        pixels = (np.stack(fields, -1) * 90 + 128 + rng.normal(0, 12, (480, 640, 3))).clip(0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=90)
        (folder / f"{i:05d}.jpg").write_bytes(buffer.getvalue())
    return root / "images"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_data_loader"))
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=12, help="timed batches of 32 per row")
    parser.add_argument("--decoder", choices=["torchvision", "pil"], default="torchvision")
    parser.add_argument(
        "--step-rates", nargs="*", type=float, default=[],
        help="training images/s to feed: prints the workers each needs",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "data_loader.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.decoder == "pil":  # the workers are forked: they see the patched module functions
        folder_module.decode_rgb = shards_module.decode_rgb = folder_module.read_rgb
    data = write_photos(args.work, args.images)
    shard_dir = args.work / "shards"
    shards = sorted(shard_dir.glob("*.tar")) or write_shards(
        find_images(data), shard_dir, "train-%06d.tar", samples_per_shard=64
    )
    transform = pretrain_transform(224)
    rows = []
    for workers in args.workers:
        folder = ImageFolderDataset(data, transform)
        sampler = StepBatchSampler(len(folder), 32, 10_000)
        by_source = {
            "image folder": DataLoader(folder, batch_sampler=sampler, num_workers=workers),
            "WebDataset shards": DataLoader(
                ShardDataset([str(s) for s in shards], transform, shuffle_buffer=64),
                batch_size=32,
                num_workers=workers,
            ),
        }
        for source, loader in by_source.items():
            images_per_s = loader_rate(loader, args.batches)
            per_worker = images_per_s / max(1, workers)
            rows.append(
                {
                    "source": source,
                    "decoder": args.decoder,
                    "workers": workers,
                    "images_per_s": images_per_s,
                    "images_per_s_per_worker": per_worker,
                }
            )
            print(
                f"{source:<18} {args.decoder:<11} {workers} workers  {images_per_s:7.1f} img/s"
                f"  ({per_worker:.1f} per worker)",
                flush=True,
            )
    # a worker's rate as measured in worker processes (their hand-off to the training process
    # included); the in-process rate only when no worker row ran; the slower loader counts
    rates = [r["images_per_s_per_worker"] for r in rows if r["workers"] > 0] or [
        r["images_per_s"] for r in rows
    ]
    per_worker = min(rates)
    needed = {str(step): math.ceil(step / per_worker) for step in args.step_rates}
    report = {
        "cpu_count": os.cpu_count(),
        "image": "640x480 JPEG q90 -> RandomResizedCrop(224) + normalize",
        "rows": rows,
        "workers_needed": needed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("\n| loader | decoder | workers | images/s | per worker |\n|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['source']} | {row['decoder']} | {row['workers']} | "
            f"{row['images_per_s']:.0f} | {row['images_per_s_per_worker']:.0f} |"
        )
    for step, count in needed.items():
        print(
            f"a step of {step} images/s needs {count} worker(s) at {per_worker:.0f} images/s each"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
