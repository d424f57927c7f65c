"""The prepared GPU check (``benchmarks/gpu_check.sh``): one JSON with what only a GPU can tell.

Sections, each a subprocess with its own time limit (a failing or timed-out section is recorded
with its error and the others still run):

* ``pretrain_step``: images/s of our pre-training step vs the official MAE computation
  (``pretrain_step.py``) at ViT-B/16 and ViT-L/16, bf16 autocast, with and without
  ``torch.compile``;
* ``encoder_forward``: encoder forward images/s and the fraction of the GPU's measured bf16
  matmul peak it reaches (``encoder_speed.py``);
* ``pretrain_run``: a 200-step ``pixio-pretrain`` run of ``pixio_vitb16`` on procedural images:
  the loss falls, a checkpoint is written, and a second call resumes from it;
* ``fsdp_one_process``: the same job under ``torchrun --nproc_per_node 1`` with FSDP2;
* ``recon_inference``: seconds and peak GPU memory of the released-size 3D model for 2/8/32
  views (``mapanything_inference.py``);
* ``data_loader``: images/s of one loader worker (JPEG decode with torchvision and with PIL,
  RandomResizedCrop, normalize) on that machine's CPU, and the workers needed to feed the
  measured ViT-B/16 step rate.

``--smoke`` runs every section at a tiny size in a few seconds each, on whatever device there
is: what the test suite runs on a CPU. Writes ``--out`` (default
``benchmarks/results/gpu_check.json``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run(command: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    """Run one section's command; its record (seconds, return code, output tail)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
        )
        record = {"returncode": done.returncode, "tail": (done.stdout + done.stderr)[-3000:]}
    except subprocess.TimeoutExpired as error:
        record = {"returncode": None, "error": f"timed out after {timeout:.0f} s"}
        record["tail"] = str(error.stdout or "")[-3000:]
    record["seconds"] = round(time.perf_counter() - start, 1)
    if record.get("returncode") not in (0, None):
        record["error"] = f"exit status {record['returncode']}"
    return record


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def pretrain_step(smoke: bool, work: Path, timeout: float) -> dict:
    out = work / "pretrain_step.json"
    sizes = ["tiny"] if smoke else ["base", "large"]
    command = [
        sys.executable, str(HERE / "pretrain_step.py"), "--sizes", *sizes, "--recipes", "mae",
        "--batch-size", "2" if smoke else "64", "--rounds", "1" if smoke else "3",
        "--steps", "1" if smoke else "5", "--out", str(out),
        *([] if smoke else ["--bf16", "--compile"]),
    ]  # fmt: skip
    record = run(command, timeout)
    report = read_json(out)
    if report:
        record["rows"] = [
            {
                k: r[k]
                for k in ("size", "variant", "precision", "images_per_s", "speedup_vs_official")
            }
            for r in report["rows"]
        ]
    return record


def encoder_forward(smoke: bool, work: Path, timeout: float) -> dict:
    out = work / "encoder_speed.json"
    command = [
        sys.executable, str(HERE / "encoder_speed.py"), "--sizes", "tiny" if smoke else "base",
        "--batch-size", "2" if smoke else "128", "--iters", "1" if smoke else "10",
        "--out", str(out), *(["--quick"] if smoke else []),
    ]  # fmt: skip
    record = run(command, timeout)
    report = read_json(out)
    if report:
        record["matmul_peak_tflops"] = {k: v / 1e12 for k, v in report["matmul_peak_flops"].items()}
        record["forward"] = [
            {
                k: r[k]
                for k in ("size", "variant", "precision", "images_per_s", "fraction_of_matmul_peak")
            }
            for r in report["rows"]
            if r["kind"] == "forward"
        ]
    return record


def _pretrain_command(out: Path, smoke: bool, steps: int, launcher: list[str]) -> list[str]:
    size = ["model.image_size=64", "train.global_batch_size=4"] if smoke else [
        "model.encoder=pixio_vitb16", "model.image_size=224", "model.mask_grid=4",
        "train.global_batch_size=64",
    ]  # fmt: skip
    return [
        *launcher, "pixio_core.cli.pretrain", f"output_dir={out}", *size,
        f"train.total_steps={steps}", f"train.checkpoint_every={steps}", "train.recon_every=100000",
        "data.images_per_class=4" if smoke else "data.images_per_class=64",
        "optim.warmup_steps=2" if smoke else "optim.warmup_steps=20",
    ]  # fmt: skip


def _losses(out: Path) -> list[float]:
    from pixio_core.runlog import read_log

    return [row["loss"] for row in read_log(out / "log.jsonl") if "loss" in row]


def pretrain_run(smoke: bool, work: Path, timeout: float, fsdp: bool = False) -> dict:
    out = work / ("fsdp_run" if fsdp else "pretrain_run")
    steps = 6 if smoke else 200
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if smoke:
        env["OMP_NUM_THREADS"] = "1"
    launcher = [sys.executable, "-m"]
    extra: list[str] = []
    if fsdp:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m"]
        extra = ["train.strategy=fsdp"]
        steps = 4 if smoke else 50
    first = run(_pretrain_command(out, smoke, steps, launcher) + extra, timeout, env)
    record: dict = {"first": first}
    if first.get("error"):
        return {**record, "error": first["error"]}
    losses = _losses(out)
    record["steps"] = len(losses)
    record["loss_first"], record["loss_last"] = (losses[0], losses[-1]) if losses else (None, None)
    window = max(1, len(losses) // 5)
    record["loss_fell"] = bool(
        losses and sum(losses[-window:]) / window < sum(losses[:window]) / window
    )
    record["checkpoint_written"] = (out / "checkpoints" / "last").exists()
    again = run(_pretrain_command(out, smoke, steps + 2, launcher) + extra, timeout, env)
    record["resume"] = again
    record["resumed_from_step"] = None
    for line in again.get("tail", "").splitlines():
        if "resum" in line.lower():
            record["resumed_from_step"] = line.strip()[-200:]
    record["steps_after_resume"] = len(_losses(out))
    record["resume_works"] = bool(
        not again.get("error") and record["steps_after_resume"] == steps + 2
    )
    return record


def recon_inference(smoke: bool, work: Path, timeout: float) -> dict:
    out = work / "mapanything_inference.json"
    views = ["2"] if smoke else ["2", "8", "32"]
    size = ["--config", "tiny", "--height", "64", "--width", "64"] if smoke else ["--bf16"]
    command = [
        sys.executable, str(HERE / "mapanything_inference.py"), "--views", *views, *size,
        "--output", str(out),
    ]  # fmt: skip
    record = run(command, timeout)
    report = read_json(out)
    if report:
        record["rows"] = report["rows"]
    return record


def data_loader(smoke: bool, step_rate: float | None) -> dict:
    """Images/s of one loader worker (JPEG decode + RandomResizedCrop 224 + normalize) on this
    machine, and the workers needed to feed ``step_rate`` (our ViT-B/16 bf16 step, images/s)."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from pixio_core.data.folder import decode_rgb, pretrain_transform, read_rgb

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    pixels = np.stack([x * 0.4 % 255, y * 0.5 % 255, (x + y) * 0.2 % 255], -1)
    pixels = (pixels + rng.normal(0, 20, pixels.shape)).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)  # a 640x480 photo-sized JPEG
    data = buffer.getvalue()
    transform = pretrain_transform(224)
    count = 20 if smoke else 200
    rates = {}
    for name, decode in (("torchvision decode_jpeg", decode_rgb), ("PIL", read_rgb)):
        transform(decode(data))
        start = time.perf_counter()
        for _ in range(count):
            transform(decode(data))
        rates[name] = count / (time.perf_counter() - start)
    record: dict = {"per_worker_images_per_s": rates, "cpu_count": os.cpu_count()}
    if step_rate:
        best = max(rates.values())
        record["step_images_per_s"] = step_rate
        record["workers_needed"] = int(np.ceil(step_rate / best))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device (tests)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu_check.json")
    parser.add_argument(
        "--only", nargs="+", default=None,
        choices=[
            "pretrain_step", "encoder_forward", "pretrain_run", "fsdp_one_process",
            "recon_inference", "data_loader",
        ],
    )  # fmt: skip
    args = parser.parse_args()
    import torch

    limits = {  # seconds per section on a GPU: 8 minutes in all
        "pretrain_step": 150, "encoder_forward": 45, "pretrain_run": 120,
        "fsdp_one_process": 60, "recon_inference": 90,
    }  # fmt: skip
    if args.smoke:
        limits = dict.fromkeys(limits, 300)
    sections = {
        "pretrain_step": pretrain_step,
        "encoder_forward": encoder_forward,
        "pretrain_run": pretrain_run,
        "fsdp_one_process": lambda smoke, work, timeout: pretrain_run(smoke, work, timeout, True),
        "recon_inference": recon_inference,
        "data_loader": None,  # after pretrain_step: it divides that step rate
    }
    report: dict = {
        "smoke": args.smoke,
        "cuda": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "sections": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pixio_gpu_check_") as tmp:
        for name, section in sections.items():
            if args.only and name not in args.only:
                continue
            print(f"== {name}", flush=True)
            if name == "data_loader":
                rows = report["sections"].get("pretrain_step", {}).get("rows", [])
                ours = [r["images_per_s"] for r in rows if r["variant"] == "pixio"]
                record = data_loader(args.smoke, ours[0] if ours else None)
            else:
                record = section(args.smoke, Path(tmp), limits[name])
            report["sections"][name] = record
            status = record.get("error") or "ok"
            print(
                f"   {status} ({record.get('seconds', record.get('first', {}).get('seconds'))} s)"
            )
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    failed = [n for n, r in report["sections"].items() if r.get("error")]
    print(f"wrote {args.out} in {report['seconds']:.0f} s; failed sections: {failed or 'none'}")


if __name__ == "__main__":
    main()
