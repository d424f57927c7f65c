"""Check MapAnythingModel against MapAnything's own model class, output by output.

Needs a checkout of facebookresearch/map-anything (its ``mapanything`` package is not on PyPI)
and UniCeption 0.1.7 (``make setup`` installs it). Builds MapAnything's ``pixio`` model at a small
size with random weights (UniCeption's Pixio encoder would download its weights at build time;
that is skipped), copies its state dict into ours strictly and compares every output, without
and with all optional geometric inputs, at a square and a non-square size and 1, 2, 4 views.

    python scripts/mapanything_parity.py --map-anything ~/src/map-anything
"""

from __future__ import annotations

import argparse
import sys

import torch

from pixio_3d.geometry import matrix_to_quaternion, quaternion_to_matrix, ray_directions
from pixio_3d.models.mapanything import MapAnythingModel, mapanything_sizes, wxyz_to_xyzw
from pixio_3d.models.released import reference_config


def reference_model(geometric_inputs: bool):
    import uniception.models.encoders.pixio as uniception_pixio
    from mapanything.models.mapanything.model import MapAnything

    uniception_pixio.PixioEncoder.get_pth_file = lambda self, repo_id: None  # no download
    load = torch.load
    torch.load = lambda path, *a, **k: {} if path is None else load(path, *a, **k)
    config = reference_config(mapanything_sizes()["tiny"])
    if geometric_inputs:
        config["geometric_input_config"].update(
            overall_prob=1, dropout_prob=0, ray_dirs_prob=1, depth_prob=1, cam_prob=1
        )
    try:
        return MapAnything(**config).eval()
    finally:
        torch.load = load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map-anything", required=True, help="map-anything checkout")
    args = parser.parse_args()
    sys.path.insert(0, args.map_anything)
    worst = 0.0
    for geometric in (False, True):
        torch.manual_seed(0)
        reference = reference_model(geometric)
        state = reference.state_dict()
        with torch.no_grad():
            for name, tensor in state.items():
                if tensor.is_floating_point() and "view_pos_table" not in name:
                    tensor.add_(0.02 * torch.randn_like(tensor))
        ours = MapAnythingModel(mapanything_sizes()["tiny"]).eval()
        ours.load_state_dict(state, strict=True)
        for height, width in ((64, 64), (48, 80)):
            for views in (1, 2, 4):
                images = torch.randn(2, views, 3, height, width)
                intrinsics = torch.tensor([[60.0, 0, width / 2], [0, 55.0, height / 2], [0, 0, 1]])
                intrinsics = intrinsics.expand(2, views, 3, 3).clone()
                intrinsics[..., 0, 0] += 10 * torch.rand(2, views)
                depth = 3 * torch.rand(2, views, height, width) + 0.5
                quats = torch.nn.functional.normalize(torch.randn(2, views, 4), dim=-1)
                poses = torch.eye(4).repeat(2, views, 1, 1)
                poses[..., :3, :3] = quaternion_to_matrix(quats)
                poses[..., :3, 3] = torch.randn(2, views, 3)
                rays = ray_directions(intrinsics, height, width)
                inputs = []
                for v in range(views):
                    view = {"img": images[:, v], "data_norm_type": ["pixio"]}
                    if geometric:
                        view.update(
                            ray_directions_cam=rays[:, v],
                            depth_along_ray=(depth[:, v] / rays[:, v, ..., 2])[..., None],
                            camera_pose_quats=wxyz_to_xyzw(
                                matrix_to_quaternion(poses[:, v, :3, :3])
                            ),
                            camera_pose_trans=poses[:, v, :3, 3],
                            is_metric_scale=torch.ones(2, dtype=torch.bool),
                        )
                    inputs.append(view)
                with torch.no_grad():
                    theirs = reference(inputs)
                    mine = ours(
                        images,
                        intrinsics if geometric else None,
                        depth_z=depth if geometric else None,
                        camera_poses=poses if geometric else None,
                        views_per_chunk=3,
                    )
                scale = mine["metric_scaling_factor"]
                errors = {}
                for v in range(views):
                    pairs = {
                        "ray_directions": (
                            theirs[v]["ray_directions"],
                            mine["ray_directions"][:, v],
                        ),
                        "depth_along_ray": (
                            theirs[v]["depth_along_ray"][..., 0],
                            mine["depth_along_ray"][:, v] * scale[:, None, None],
                        ),
                        "conf": (theirs[v]["conf"], mine["conf"][:, v]),
                        "mask_logits": (
                            theirs[v]["non_ambiguous_mask_logits"],
                            mine["non_ambiguous_mask_logits"][:, v],
                        ),
                        "cam_trans": (
                            theirs[v]["cam_trans"],
                            mine["cam_trans"][:, v] * scale[:, None],
                        ),
                        "cam_quats": (
                            theirs[v]["cam_quats"],
                            wxyz_to_xyzw(mine["cam_quats"][:, v]),
                        ),
                        "metric_scale": (theirs[v]["metric_scaling_factor"][:, 0], scale),
                    }
                    for key, (a, b) in pairs.items():
                        errors[key] = max(errors.get(key, 0.0), (a - b).abs().max().item())
                worst = max(worst, *errors.values())
                print(
                    f"geometric inputs={geometric!s:5} {height}x{width} V={views}: "
                    + ", ".join(f"{k} {e:.1e}" for k, e in errors.items())
                )
    print(f"largest difference: {worst:.2e}")
    if worst > 1e-4:
        raise SystemExit("MapAnythingModel differs from MapAnything")


if __name__ == "__main__":
    main()
