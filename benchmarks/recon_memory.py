"""Peak memory and latency of multi-view reconstruction (``ReconstructionModel.infer``) vs views.

For each view count (default 1, 2, 4, 8, 16, 32 at 224x224, the ``pixio_vitt16`` encoder and a
small 4-pair alternating-attention trunk) a fresh subprocess builds the model, resets the kernel's
peak-RSS counter (``/proc/self/clear_refs``), runs ``infer`` once and reads the peak resident set
(``VmHWM``) minus the resident set just before: the extra CPU memory one inference needs, measured
by the OS, not by a tracer that cannot see torch's allocator. Latency is the median of further
runs. With ``--backends fused math`` the global attention runs once with PyTorch's default fused
SDPA kernel and once with the naive "math" kernel that materializes the attention matrix, to show
what keeps memory linear in the number of tokens.

Prints a markdown table and writes JSON (default ``benchmarks/results/recon_memory.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_VIEWS = (1, 2, 4, 8, 16, 32)
TRUNK = {
    "width": 192,
    "depth": 4,
    "num_heads": 3,
    "dpt_features": 64,
    "dpt_out_channels": (48, 96, 192, 384),
    "pose_hidden_dim": 128,
    "frames_chunk_size": 8,
}


def _rss_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_worker(command: list[str], views: int) -> dict:
    """Run one measuring subprocess; its last stdout line is its JSON row."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker for {views} views failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker(views: int, size: int, encoder_name: str, backend: str, repeats: int, threads: int):
    """Measure one configuration in this (fresh) process; print one JSON line."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from pixio_3d.models import ReconstructionConfig, ReconstructionModel
    from pixio_core.models.registry import create_encoder

    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    encoder = create_encoder(encoder_name).eval().requires_grad_(False)
    model = ReconstructionModel(encoder, ReconstructionConfig(**TRUNK)).eval()
    images = torch.randn(1, views, 3, size, size)
    context = sdpa_kernel(SDPBackend.MATH) if backend == "math" else contextlib.nullcontext()

    rss_before = _rss_mb("VmRSS")
    reset = _reset_peak_rss()
    with context:
        start = time.perf_counter()
        model.infer(images)
        cold = time.perf_counter() - start
        peak = (
            _rss_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.infer(images)
            times.append(time.perf_counter() - start)
    grid = size // encoder.patch_size
    tokens_per_view = grid * grid + (
        encoder.num_class_tokens if model.class_proj is not None else 0
    )
    global_tokens = views * tokens_per_view + 1
    result = {
        "views": views,
        "backend": backend,
        "global_tokens": global_tokens,
        "peak_extra_mb": round(peak - rss_before, 1),
        "rss_before_mb": round(rss_before, 1),
        "peak_counter": "VmHWM" if reset else "ru_maxrss",
        "cold_seconds": round(cold, 3),
        "median_seconds": round(statistics.median(times), 3) if times else None,
        # what one (heads, N, N) float32 attention matrix would take if it were materialized
        "attention_matrix_mb": round(TRUNK["num_heads"] * global_tokens**2 * 4 / 2**20, 1),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, nargs="+", default=list(DEFAULT_VIEWS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--encoder", default="pixio_vitt16")
    parser.add_argument("--backends", nargs="+", choices=("fused", "math"), default=["fused"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/recon_memory.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.image_size % 16:
        parser.error(f"--image-size must be a multiple of 16, got {args.image_size}")
    if args.worker:
        worker(
            args.views[0],
            args.image_size,
            args.encoder,
            args.backends[0],
            args.repeats,
            args.threads,
        )
        return

    rows = []
    for backend in args.backends:
        for views in args.views:
            command = [
                sys.executable, __file__, "--worker", "--views", str(views),
                "--image-size", str(args.image_size), "--encoder", args.encoder,
                "--backends", backend, "--repeats", str(args.repeats), "--threads", str(args.threads),
            ]  # fmt: skip
            rows.append(run_worker(command, views))
            row = rows[-1]
            print(
                f"{backend:5s} V={views:3d} tokens={row['global_tokens']:6d} "
                f"peak +{row['peak_extra_mb']:8.1f} MiB  median {row['median_seconds']} s",
                flush=True,
            )

    print()
    print("| attention | views | global tokens | peak extra RSS (MiB) | per view (MiB) "
          "| attn matrix if materialized (MiB) | cold (s) | median (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        per_view = row["peak_extra_mb"] / row["views"]
        print(
            f"| {row['backend']} | {row['views']} | {row['global_tokens']} | "
            f"{row['peak_extra_mb']:.1f} | {per_view:.1f} | {row['attention_matrix_mb']:.1f} | "
            f"{row['cold_seconds']:.2f} | {row['median_seconds']} |"
        )

    report = {
        "benchmark": "recon_memory",
        "image_size": args.image_size,
        "encoder": args.encoder,
        "trunk": TRUNK,
        "note": "peak extra RSS = peak resident set during one infer minus resident set before; "
        "batch of 1 scene; encoder and DPT run frames_chunk_size views at a time",
        "rows": rows,
    }
    write_report(args.output, report)


def write_report(output: Path, report: dict) -> None:
    """Write ``report`` with the torch version and the machine as JSON to ``output``."""
    import torch

    report = {
        **report,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
