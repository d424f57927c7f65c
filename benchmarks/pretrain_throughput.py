"""Pre-training throughput on this machine: data loading and training, 1 vs 2 processes.

* data loading images/s (decode + RandomResizedCrop + normalize, no model) from an image folder
  and from WebDataset shards of the same images, with 0 and 2 DataLoader workers;
* training images/s of ``pixio-pretrain`` (the tiny CPU default at 128 px, global batch 32) in
  one process and in two processes (torchrun, gloo, DDP), read from the runs' ``log.jsonl``.

Prints a markdown table and writes JSON (default ``benchmarks/results/pretrain_throughput.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from torch.utils.data import DataLoader

from pixio_core.data import ImageFolderDataset, find_images, make_shapes_dataset, pretrain_transform
from pixio_core.data.sampler import StepBatchSampler
from pixio_core.data.shards import ShardDataset, write_shards
from pixio_core.runlog import read_log


def loader_rate(loader: DataLoader, batches: int) -> float:
    iterator = iter(loader)
    next(iterator)  # start-up (workers, first shard) is not counted
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        count += next(iterator)["image"].shape[0]
    return count / (time.perf_counter() - start)


def training_rate(out: Path, data: Path, processes: int, steps: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // processes)))
    launcher = [sys.executable, "-m"]
    if processes > 1:
        launcher += [
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(processes),
            "-m",
        ]
    subprocess.run(
        [
            *launcher,
            "pixio_core.cli.pretrain",
            f"output_dir={out}",
            f"data.root={data}",
            f"train.total_steps={steps}",
            f"train.checkpoint_every={steps}",
            f"train.recon_every={steps}",
            "train.resume=false",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = read_log(out / "log.jsonl")[2:]  # skip warm-up steps
    return sum(entry["images_per_s"] for entry in log) / len(log)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_throughput"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "pretrain_throughput.json"
    )
    args = parser.parse_args()
    data = make_shapes_dataset(args.work / "images", images_per_class=64, image_size=256)
    shards = write_shards(
        find_images(data), args.work / "shards", "train-%06d.tar", samples_per_shard=64
    )
    transform = pretrain_transform(128)
    rows = []
    for workers in (0, 2):
        folder = ImageFolderDataset(data, transform)
        sampler = StepBatchSampler(len(folder), 32, 1000)
        rate = loader_rate(DataLoader(folder, batch_sampler=sampler, num_workers=workers), 10)
        rows.append(
            {
                "what": "data loading",
                "source": "image folder (256 px PNG)",
                "workers": workers,
                "images_per_s": rate,
            }
        )
        stream = ShardDataset([str(s) for s in shards], transform, shuffle_buffer=256)
        rate = loader_rate(DataLoader(stream, batch_size=32, num_workers=workers), 10)
        rows.append(
            {
                "what": "data loading",
                "source": "WebDataset shards (same PNGs)",
                "workers": workers,
                "images_per_s": rate,
            }
        )
    for processes in (1, 2):
        rate = training_rate(args.work / f"train_{processes}", data, processes, args.steps)
        rows.append(
            {
                "what": "training",
                "source": "pixio_vitt16, 128 px, global batch 32",
                "processes": processes,
                "images_per_s": rate,
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=2))
    print("\n| what | source | workers / processes | images/s |\n|---|---|---|---|")
    for row in rows:
        count = row.get("workers", row.get("processes"))
        label = f"{count} workers" if "workers" in row else f"{count} process(es)"
        print(f"| {row['what']} | {row['source']} | {label} | {row['images_per_s']:.1f} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
