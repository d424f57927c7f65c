"""Diagnostic: how much of the simulator state a frozen encoder's features carry.

Embeds every frame of a PushBlock demo file with each encoder, in several feature kinds, and
fits a ridge regression from the features to the pusher and puck positions (``obs/state``),
cross-validated over demos (5 folds, whole demos held out). Prints R^2 per feature kind (1 is
perfect, 0 is no better than the mean) and writes JSON. Behaviour cloning from frames cannot do
better than the state its features carry.

    python benchmarks/robot_probe.py --demos outputs/bench/push_v1_128.hdf5 \\
        --encoders pixio_sim_vitt16,random:pixio_vitt16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import torch

from pixio_core.loading import load_frozen_encoder
from pixio_robot.features import grid_feature, preprocess_frames

KINDS = ("pooled", "cls", "patch_mean", "grid2", "patch")


def features(encoder, frames: np.ndarray, image_size: int) -> dict[str, np.ndarray]:
    out: dict[str, list[torch.Tensor]] = {kind: [] for kind in KINDS}
    with torch.no_grad():
        for start in range(0, len(frames), 64):
            result = encoder.forward_features(
                preprocess_frames(frames[start : start + 64], image_size)
            )
            patch = result["patch_tokens"]
            out["pooled"].append(result["pooled"])
            out["cls"].append(result["cls_tokens"].flatten(1))
            out["patch_mean"].append(patch.mean(1))
            out["grid2"].append(grid_feature(patch, (image_size, image_size)))
            out["patch"].append(patch.flatten(1))
    return {kind: torch.cat(values).numpy().astype(np.float64) for kind, values in out.items()}


def ridge_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5) -> np.ndarray:
    """R^2 per target column of a ridge fit (dual form, lambda = 0.1 x feature count), each fold
    holding out whole demos."""
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    predictions = np.zeros_like(y)
    for fold in range(folds):
        test = groups % folds == fold
        train_x, train_y = x[~test], y[~test]
        kernel = train_x @ train_x.T
        alpha = np.linalg.solve(
            kernel + 0.1 * x.shape[1] * np.eye(len(kernel)), train_y - train_y.mean(0)
        )
        predictions[test] = x[test] @ train_x.T @ alpha + train_y.mean(0)
    return 1 - ((predictions - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demos", type=Path, required=True)
    parser.add_argument("--encoders", default="pixio_sim_vitt16,random:pixio_vitt16")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "robot_probe.json"
    )
    args = parser.parse_args()
    with h5py.File(args.demos) as handle:
        names = sorted(handle["data"], key=lambda name: int(name.split("_")[1]))
        frames = np.concatenate([handle[f"data/{n}/obs/pixels"][:] for n in names])
        states = [handle[f"data/{n}/obs/state"][:] for n in names]
    groups = np.concatenate([np.full(len(s), i) for i, s in enumerate(states)])
    targets = np.concatenate(states)[:, :4].astype(np.float64)  # pusher xy, puck xy
    rows = []
    print("| encoder | feature | pusher R^2 | puck R^2 |\n|---|---|---|---|")
    for source in args.encoders.split(","):
        encoder, _ = load_frozen_encoder(source, 0)
        for kind, values in features(encoder, frames, args.image_size).items():
            r2 = ridge_r2(values.reshape(len(values), -1), targets, groups)
            row = {
                "encoder": source,
                "feature": kind,
                "pusher_r2": r2[:2].mean(),
                "puck_r2": r2[2:].mean(),
            }
            rows.append({k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()})
            print(
                f"| {source} | {kind} | {row['pusher_r2']:.2f} | {row['puck_r2']:.2f} |", flush=True
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"demos": str(args.demos), "rows": rows}, indent=2))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
