"""Poses from matches: exact on exact matches, robust to wrong ones, fallback without matches."""

import math

import pytest
import torch

from pixio_3d.geometry import (
    points_from_z_depth,
    pose_from_quaternion_translation,
    relative_poses,
    transform_points,
)
from pixio_3d.sfm import poses_from_matches
from pixio_3d.training.losses import match_targets

GRID = (6, 8)
PATCH = 4


def stepped_scene(views: int = 3, seed: int = 0):
    """Cameras translated by whole patches of image motion in x and y in front of a plane, all in
    a random world frame: every true match lands exactly on a patch centre."""
    generator = torch.Generator().manual_seed(seed)
    height, width = GRID[0] * PATCH, GRID[1] * PATCH
    focal, depth = 10.0, 2.0
    intrinsics = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    cam2world = torch.eye(4).repeat(views, 1, 1)
    for view in range(1, views):
        # one patch of image motion = PATCH pixels = PATCH * depth / focal metres
        cam2world[view, 0, 3] = view * PATCH * depth / focal
        cam2world[view, 1, 3] = -(view % 2) * PATCH * depth / focal
    z = torch.full((views, height, width), depth)
    rotation = pose_from_quaternion_translation(
        torch.nn.functional.normalize(torch.randn(4, generator=generator), dim=0), torch.zeros(3)
    )
    return {
        "depth": z[None],
        "valid": torch.ones(1, views, height, width, dtype=torch.bool),
        "intrinsics": intrinsics.expand(1, views, 3, 3).clone(),
        "cam2world": (rotation @ cam2world)[None],
    }


def true_logits(batch, wrong_fraction: float = 0.0, seed: int = 0) -> torch.Tensor:
    points = transform_points(
        relative_poses(batch["cam2world"]), points_from_z_depth(batch["depth"], batch["intrinsics"])
    )
    index = match_targets(points, batch["valid"], batch["intrinsics"], GRID)  # (1, V, P)
    patches = GRID[0] * GRID[1]
    generator = torch.Generator().manual_seed(seed)
    wrong = torch.rand(index.shape, generator=generator) < wrong_fraction
    random_index = torch.randint(0, patches, index.shape, generator=generator)
    index = torch.where(wrong & (index >= 0), random_index, index)
    logits = torch.full(index.shape + (patches,), -5.0)
    logits.scatter_(-1, index.clamp_min(0).unsqueeze(-1), 5.0)
    return torch.where((index >= 0).unsqueeze(-1), logits, torch.zeros_like(logits))


def rotation_error_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = ((a[:3, :3].T @ b[:3, :3]).trace() - 1) / 2
    return math.degrees(math.acos(max(-1.0, min(1.0, cos.item()))))


@pytest.mark.parametrize("wrong_fraction", [0.0, 0.25])
def test_poses_from_true_matches_are_exact_and_wrong_matches_are_down_weighted(wrong_fraction):
    batch = stepped_scene()
    truth = relative_poses(batch["cam2world"])[0]
    points_cam = points_from_z_depth(batch["depth"], batch["intrinsics"])
    identity = torch.eye(4).repeat(1, 3, 1, 1)
    poses, used = poses_from_matches(points_cam, true_logits(batch, wrong_fraction), identity, GRID)
    assert used[0, 0] == 0 and bool((used[0, 1:] >= 6).all())
    for view in range(3):
        assert rotation_error_deg(poses[0, view], truth[view]) < 0.5, view
        torch.testing.assert_close(poses[0, view, :3, 3], truth[view, :3, 3], atol=0.02, rtol=0)


def test_views_without_matches_keep_the_fallback_pose():
    batch = stepped_scene(views=2)
    points_cam = points_from_z_depth(batch["depth"], batch["intrinsics"])
    fallback = torch.eye(4).repeat(1, 2, 1, 1)
    fallback[0, 1, :3, 3] = torch.tensor([9.0, 9.0, 9.0])
    logits = true_logits(batch)
    points_cam[0, 1] = float("nan")  # no usable point in view 1
    poses, used = poses_from_matches(points_cam, logits, fallback, GRID)
    assert used[0, 1] == 0 and torch.equal(poses, fallback)
    with pytest.raises(ValueError, match="match_logits"):
        poses_from_matches(points_cam, logits[:, :, :5], fallback, GRID)
