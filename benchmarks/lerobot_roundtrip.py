"""HDF5 demos -> LeRobot v3 -> HDF5 on this machine: size, time, frame loss, feature change.

Collects ``--demos`` PushBlock expert demos at ``--image-size`` px, converts them with each video
codec (``av1`` = LeRobot's default, ``h264``, ``lossless``), reads them back, and reports the
dataset size against the HDF5 file, the write and read seconds, the frame error (mean absolute
error in 0..255 and PSNR) and how much the frozen encoder's features move when computed on the
decoded frames (relative L2 change of ``pixio_sim_vitt16`` pooled features, the policy's input).
Prints a markdown table and writes JSON (default ``benchmarks/results/lerobot_roundtrip.json``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pixio_envs  # noqa: F401
import torch
from pixio_envs.push_block import PushBlockExpert
from recon_memory import write_report

from pixio_core.loading import load_frozen_encoder
from pixio_robot.demos import collect_demos
from pixio_robot.features import embed_frames
from pixio_robot.lerobot import CODECS, hdf5_to_lerobot, lerobot_to_hdf5


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def frames_of(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        names = sorted(handle["data"], key=lambda n: int(n.split("_")[-1]))
        return np.concatenate([handle[f"data/{n}/obs/pixels"][:] for n in names])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demos", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--encoder", default="pixio_sim_vitt16")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "lerobot_roundtrip.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    encoder, _ = load_frozen_encoder(args.encoder, 0, "cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demos = tmp / "demos.hdf5"
        collect_demos(
            "pixio_envs/PushBlock-v1", PushBlockExpert(), demos, args.demos,
            env_kwargs={"image_size": args.image_size}, progress=False,
        )  # fmt: skip
        original = frames_of(demos)
        reference = embed_frames(encoder, original, 224, "pooled")
        hdf5_mb = demos.stat().st_size / 2**20
        print(f"{len(original)} frames of {args.image_size} px; HDF5 (gzip) {hdf5_mb:.2f} MB")
        for codec in CODECS:
            start = time.perf_counter()
            root = hdf5_to_lerobot(demos, tmp / codec, codec=codec, progress=False)
            write_s = time.perf_counter() - start
            start = time.perf_counter()
            back = lerobot_to_hdf5(root, tmp / f"{codec}.hdf5", progress=False)
            read_s = time.perf_counter() - start
            decoded = frames_of(back)
            error = np.abs(decoded.astype(np.float64) - original)
            mse = float((error**2).mean())
            features = embed_frames(encoder, decoded, 224, "pooled")
            change = (features - reference).norm(dim=-1) / reference.norm(dim=-1)
            rows.append(
                {
                    "codec": codec,
                    "dataset_mb": folder_mb(root),
                    "hdf5_mb": hdf5_mb,
                    "write_s": write_s,
                    "read_s": read_s,
                    "frame_mae": float(error.mean()),
                    "psnr_db": float("inf") if mse == 0 else 10 * np.log10(255**2 / mse),
                    "feature_rel_change_mean": float(change.mean()),
                    "feature_rel_change_max": float(change.max()),
                }
            )
    print(
        "\n| codec | dataset MB (HDF5 MB) | write s | read s | frame MAE (0-255) | PSNR dB | "
        "feature change mean / max |\n|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['codec']} | {r['dataset_mb']:.2f} ({r['hdf5_mb']:.2f}) | {r['write_s']:.2f} | "
            f"{r['read_s']:.2f} | {r['frame_mae']:.2f} | {r['psnr_db']:.1f} | "
            f"{100 * r['feature_rel_change_mean']:.2f} % / {100 * r['feature_rel_change_max']:.2f} % |"
        )
    write_report(
        args.out,
        {"demos": args.demos, "image_size": args.image_size, "frames": len(original), "rows": rows},
    )


if __name__ == "__main__":
    main()
