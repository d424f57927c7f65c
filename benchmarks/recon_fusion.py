"""How much fitting the dense depth to the SfM points and multi-view fusion move the geometry.

On held-out synthetic scenes (rendered here, exact ground truth): the first ``--views`` of a
16-view ring, the network at its training size, SIFT on the 256x192 renders, known intrinsics
(``--intrinsics predicted`` to let the model and the bundle adjustment estimate them). For each
scene and variant:

* ``off``: the ``features`` poses, the network's depth;
* ``scale``: each view's depth scaled to the bundle-adjusted points it sees;
* ``fit``: the cross-validated fit (scale, shift, smooth correction; the default);

and the same with the network's depth replaced by noise (``--noise``: a constant depth times
log-normal noise of sigma 0.3), where the fit must carry the geometry alone. Metrics on the views
the features solver placed (view 0 included): the median point error after one Sim(3) alignment
of the whole scene, over the scene's extent (std of the true points); depth AbsRel (metric and
per-view median-aligned); the fused cloud's share of pixels and its point error; and the median
relative depth error at the SfM points (how close the dense geometry is to them).

    python benchmarks/recon_fusion.py --checkpoint outputs/demo/recon/run/checkpoints \\
        --num-scenes 6 --out benchmarks/results/recon_fusion.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

VARIANTS = {"off": ("none",), "scale": ("none", "scale"), "fit": True}


class NoisyDepth:
    """A reconstruction model whose depth is replaced by a constant times log-normal noise
    (its cameras and confidence kept): what the fit and the fusion make of useless depth."""

    def __init__(self, model, sigma: float = 0.3, seed: int = 0) -> None:
        self.model, self.sigma, self.seed = model, sigma, seed

    def __getattr__(self, name):
        return getattr(self.model, name)

    def infer(self, images, intrinsics=None, keep_match_logits=False):
        import torch

        from pixio_3d.geometry import points_from_z_depth, transform_points

        out = self.model.infer(images, intrinsics, keep_match_logits)
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(out["depth_z"].shape, generator=generator)
        out["depth_z"] = out["depth_z"].median() * torch.exp(self.sigma * noise)
        out["pts3d_cam"] = points_from_z_depth(out["depth_z"], out["intrinsics"])
        out["depth_along_ray"] = out["pts3d_cam"].norm(dim=-1)
        out["pts3d"] = transform_points(out["camera_poses"], out["pts3d_cam"])
        return out


def _first_views(rendered, count: int):
    return type(rendered)(
        *(getattr(rendered, f.name)[:count] for f in dataclasses.fields(rendered))
    )


def evaluate_scene(model, scene_seed: int, views: int, size, known: bool) -> list[dict]:
    import torch

    from pixio_3d.data.scenes import SceneConfig, build_scene, render_scene
    from pixio_3d.geometry import points_from_z_depth, transform_points, umeyama
    from pixio_3d.pipeline import predict
    from pixio_3d.sfm.bundle_adjust import sample_depth
    from pixio_3d.sfm.fusion import consistency
    from pixio_core.imaging import normalize_images

    spec = build_scene(scene_seed, 16, SceneConfig())
    photos = _first_views(render_scene(spec, 192, 256), views)
    small = _first_views(render_scene(spec, size[1], size[0]), views)
    images = normalize_images(torch.from_numpy(small.rgb).permute(0, 3, 1, 2).float() / 255)
    intrinsics = torch.from_numpy(small.intrinsics).float()[None] if known else None
    gt_pose = np.linalg.inv(small.cam2world[0]) @ small.cam2world
    gt_world = transform_points(
        torch.from_numpy(gt_pose),
        points_from_z_depth(
            torch.from_numpy(small.depth).double(), torch.from_numpy(small.intrinsics).double()
        ),
    ).numpy()
    rows = []
    for name, fit in VARIANTS.items():
        started = time.perf_counter()
        out = predict(
            model,
            images[None],
            intrinsics,
            pose_solver="features",
            photos=[list(photos.rgb)],
            fit_depth=fit,
        )
        seconds = time.perf_counter() - started
        placed = out["pose_support"][0].numpy() > 0
        placed[0] = True
        depth = out["depth_z"][0].double().numpy()
        valid = (small.depth > 0) & placed[:, None, None]
        pred = out["pts3d"][0].double().numpy()
        scale, rotation, translation = (
            value.numpy()
            for value in umeyama(
                torch.from_numpy(pred[valid]), torch.from_numpy(gt_world[valid]), True
            )
        )
        error = np.linalg.norm(scale * pred @ rotation.T + translation - gt_world, axis=-1)
        extent = float(np.linalg.norm(gt_world[valid].std(0)))
        gt = small.depth
        abs_rel = np.abs(depth[valid] - gt[valid]) / gt[valid]
        aligned = []
        for v in np.flatnonzero(placed):
            mask = gt[v] > 0
            ratio = np.median(gt[v][mask] / depth[v][mask])
            aligned.append(np.median(np.abs(ratio * depth[v][mask] - gt[v][mask]) / gt[v][mask]))
        fused = consistency(
            depth, out["intrinsics"][0].double().numpy(), out["camera_poses"][0].double().numpy()
        )
        kept = fused.keep & valid
        rows.append(
            {
                "scene_seed": scene_seed,
                "variant": name,
                "placed_views": int(placed.sum()),
                "point_error_rel": float(np.median(error[valid]) / extent),
                "depth_abs_rel_metric": float(np.median(abs_rel)),
                "depth_abs_rel_aligned": float(np.mean(aligned)),
                "fused_share": float(kept.sum() / max(valid.sum(), 1)),
                "fused_point_error_rel": float(np.median(error[kept]) / extent)
                if kept.any()
                else None,
                "sfm_points": int(out["depth_fit_points"][0].sum())
                if "depth_fit_points" in out
                else 0,
                "depth_error_at_sfm_points": _sfm_error(out, depth, sample_depth),
                "metric_scale_spread": float(out["metric_scale_spread"][0]),
                "seconds": round(seconds, 3),
            }
        )
    return rows


def _sfm_error(out, depth, sample_depth) -> float | None:
    """The median relative error of the returned depth at the SfM points (all views)."""
    if "depth_fit_error_after" not in out:
        return None
    values = out["depth_fit_error_after"][0].numpy()
    return float(np.nanmedian(values)) if np.isfinite(values).any() else None


def _mean(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if row[key] is not None]
    return float(np.mean(values)) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="outputs/demo/recon/run/checkpoints")
    parser.add_argument("--num-scenes", type=int, default=6)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--size", default="128x96", help="network input WxH (its training size)")
    parser.add_argument("--intrinsics", choices=("known", "predicted"), default="known")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/recon_fusion.json")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    from pixio_3d.checkpoint import load_model
    from pixio_3d.sfm import quiet_pycolmap_logs

    torch.set_num_threads(args.threads)
    quiet_pycolmap_logs()
    size = tuple(int(v) for v in args.size.split("x"))
    model, _ = load_model(args.checkpoint)
    results = {}
    for depth_source, network in (("network", model), ("noise", NoisyDepth(model))):
        rows = []
        for index in range(args.num_scenes):
            rows += evaluate_scene(
                network, args.first_seed + index, args.views, size, args.intrinsics == "known"
            )
        results[depth_source] = rows
    keys = (
        "point_error_rel",
        "fused_point_error_rel",
        "fused_share",
        "depth_abs_rel_metric",
        "depth_abs_rel_aligned",
        "depth_error_at_sfm_points",
    )
    print(f"| depth | variant | {' | '.join(keys)} |")
    print("|" + "---|" * (2 + len(keys)))
    summary = {}
    for depth_source, rows in results.items():
        for variant in VARIANTS:
            mine = [row for row in rows if row["variant"] == variant]
            means = {key: _mean(mine, key) for key in keys}
            summary[f"{depth_source}/{variant}"] = means
            cells = " | ".join("–" if v is None else f"{v:.3f}" for v in means.values())
            print(f"| {depth_source} | {variant} | {cells} |")
    payload = {
        "checkpoint": args.checkpoint,
        "scenes": args.num_scenes,
        "first_seed": args.first_seed,
        "views": args.views,
        "size": args.size,
        "intrinsics": args.intrinsics,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "summary": summary,
        "rows": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
