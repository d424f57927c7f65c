"""Seconds and peak memory of the released-size MapAnything-with-Pixio model vs number of views.

The full released configuration (:class:`pixio_3d.models.mapanything.MapAnythingModel`, ViT-H/16
encoder, 24-block transformer, ~896 M parameters) with random weights: the released weights
cost the same. For each view count a fresh subprocess builds the model, resets the kernel's
peak-RSS counter and runs ``infer`` on one scene of ``--height x --width`` views (default
384x512, what ``pixio-recon --long-side 512`` feeds a 4:3 photo), ``views_per_chunk`` views at a
time through the encoder and the dense heads. Peak extra memory is the peak resident set
(``VmHWM``) during the call minus the resident set before (the weights: ~3.6 GB in fp32).

Prints a markdown table and writes JSON (default ``benchmarks/results/mapanything_inference.json``).

    python benchmarks/mapanything_inference.py --views 1 2 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from recon_memory import _reset_peak_rss, _rss_mb, run_worker, write_report


def worker(
    views: int, height: int, width: int, chunk: int, threads: int, bf16: bool, config: str
) -> None:
    import torch

    from pixio_3d.models.mapanything import MapAnythingModel, mapanything_sizes

    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    model_config = mapanything_sizes()[config] if config != "released" else None
    model = MapAnythingModel(model_config).eval().requires_grad_(False).to(device)
    build = time.perf_counter() - start
    images = torch.randn(1, views, 3, height, width, device=device)
    rss_before = _rss_mb("VmRSS")
    reset = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.synchronize()
        weights_gpu = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    dtype = torch.bfloat16 if bf16 else None  # autocast of the encoder and the transformer
    out = model.infer(images, views_per_chunk=chunk, progress=False, autocast_dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = _rss_mb("VmHWM") if reset else float("nan")
    gpu = {}
    if device.type == "cuda":
        gpu = {
            "gpu_weights_mb": round(weights_gpu, 1),
            "gpu_peak_extra_mb": round(torch.cuda.max_memory_allocated() / 2**20 - weights_gpu, 1),
        }
    assert torch.isfinite(out["pts3d"]).all()
    print(
        json.dumps(
            {
                "views": views,
                "seconds": round(seconds, 2),
                "seconds_per_view": round(seconds / views, 2),
                "peak_extra_mb": round(peak - rss_before, 1),
                "weights_rss_mb": round(rss_before, 1),
                "build_seconds": round(build, 1),
                "parameters": sum(p.numel() for p in model.parameters()),
                "threads": torch.get_num_threads(),
                "precision": "bf16 autocast (encoder, transformer)" if bf16 else "fp32",
                "device": str(device),
                "config": config,
                **gpu,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--views-per-chunk", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast (only fast where bf16 is native)"
    )
    parser.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/mapanything_inference.json")
    )
    parser.add_argument(
        "--config", default="released", help="released (default) or a mapanything_sizes() name"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.height % 16 or args.width % 16:
        parser.error(
            f"--height and --width must be multiples of 16, got {args.height}x{args.width}"
        )
    if args.worker:
        worker(
            args.views[0], args.height, args.width, args.views_per_chunk, args.threads,
            args.bf16, args.config,
        )  # fmt: skip
        return
    rows = []
    for views in args.views:
        command = [
            sys.executable, __file__, "--worker", "--views", str(views), "--height",
            str(args.height), "--width", str(args.width), "--views-per-chunk",
            str(args.views_per_chunk), "--threads", str(args.threads), "--config", args.config,
            *(["--bf16"] if args.bf16 else []),
        ]  # fmt: skip
        rows.append(run_worker(command, views))
        row = rows[-1]
        print(
            f"V={views:3d}  {row['seconds']:8.1f} s ({row['seconds_per_view']:.1f} s/view)  "
            f"peak +{row['peak_extra_mb']:.0f} MiB",
            flush=True,
        )
    print()
    print("| views | seconds | seconds per view | peak extra RSS (MiB) | weights RSS (MiB) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['views']} | {row['seconds']:.1f} | {row['seconds_per_view']:.1f} | "
            f"{row['peak_extra_mb']:.0f} | {row['weights_rss_mb']:.0f} |"
        )

    report = {
        "benchmark": "mapanything_inference",
        "model": f"MapAnythingModel ({args.config} configuration, random weights)",
        "precision": "bf16 autocast" if args.bf16 else "fp32",
        "image_size": [args.height, args.width],
        "views_per_chunk": args.views_per_chunk,
        "rows": rows,
    }
    write_report(args.output, report)


if __name__ == "__main__":
    main()
