"""Losses: zero at the ground truth, invariances, known values, gradient routing."""

import math

import pytest
import torch

from pixio_3d.geometry import (
    depth_along_ray_from_z,
    matrix_to_quaternion,
    pose_from_quaternion_translation,
    quaternion_translation_from_pose,
    ray_directions,
    relative_poses,
)
from pixio_3d.training.losses import (
    MatchLoss,
    QuaternionLoss,
    ReconstructionLoss,
    ReconstructionLossConfig,
    ScaleShiftInvariantLoss,
    SegmentationLoss,
    SiLogLoss,
    match_targets,
    reconstruction_targets,
    robust_regression,
    signed_log,
)

GEOMETRY_TERMS = ("pointmap", "camera_points", "depth", "ray", "quaternion", "translation")


def rotation_y(degrees: float) -> torch.Tensor:
    angle = math.radians(degrees)
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def plane_scene(views: int = 3, height: int = 12, width: int = 16, plane_z: float = 3.0):
    """Cameras near the origin looking at the plane z = plane_z, then moved by a rigid motion.

    Returns a dataset-style batch with B = 1; one corner pixel per view is marked invalid.
    """
    intrinsics = torch.tensor(
        [[0.8 * width, 0.0, 0.5 * width], [0.0, 0.75 * width, 0.45 * height], [0.0, 0.0, 1.0]]
    )
    poses, depths = [], []
    rays = ray_directions(intrinsics, height, width)
    for index in range(views):
        pose = torch.eye(4)
        pose[:3, :3] = rotation_y(6.0 * index)
        pose[:3, 3] = torch.tensor([0.4 * index, -0.1 * index, 0.2 * index])
        world_rays = rays @ pose[:3, :3].T
        along_ray = (plane_z - pose[2, 3]) / world_rays[..., 2]
        depths.append(along_ray * rays[..., 2])
        poses.append(pose)
    motion = pose_from_quaternion_translation(
        torch.nn.functional.normalize(torch.tensor([0.8, 0.3, -0.4, 0.2]), dim=0),
        torch.tensor([5.0, -2.0, 1.0]),
    )
    cam2world = motion @ torch.stack(poses)
    valid = torch.ones(views, height, width, dtype=torch.bool)
    valid[:, 0, 0] = False
    return {
        "images": torch.rand(
            1, views, 3, height, width, generator=torch.Generator().manual_seed(0)
        ),
        "depth": torch.stack(depths)[None],
        "valid": valid[None],
        "intrinsics": intrinsics.expand(1, views, 3, 3).clone(),
        "cam2world": cam2world[None],
    }


def prediction_from_truth(batch, scale: float = 1.0, noise: float = 0.0, seed: int = 0):
    """A model-style factored prediction equal to the GT up to ``scale`` (+ optional noise)."""
    generator = torch.Generator().manual_seed(seed)
    depth, intrinsics = batch["depth"], batch["intrinsics"]
    poses = relative_poses(batch["cam2world"])
    quats, trans = quaternion_translation_from_pose(poses)
    along_ray = depth_along_ray_from_z(depth, intrinsics)
    along_ray = along_ray * (1 + noise * torch.randn(along_ray.shape, generator=generator))
    return {
        "ray_directions": ray_directions(intrinsics, *depth.shape[-2:]),
        "depth_along_ray": scale * along_ray.abs(),
        "cam_quats": quats,
        "cam_trans": scale * trans,
        "conf": torch.ones_like(depth),
        "metric_scaling_factor": torch.full((depth.shape[0],), 1.0 / scale),
    }


def test_targets_do_not_depend_on_the_world_frame():
    batch = plane_scene()
    moved = dict(batch)
    motion = pose_from_quaternion_translation(
        torch.nn.functional.normalize(torch.tensor([0.3, -0.2, 0.9, 0.1]), dim=0),
        torch.tensor([-3.0, 4.0, 0.5]),
    )
    moved["cam2world"] = motion @ batch["cam2world"]
    first, second = reconstruction_targets(batch), reconstruction_targets(moved)
    for key in ("pts3d", "cam_trans", "cam_quats", "depth_along_ray"):
        torch.testing.assert_close(first[key], second[key], atol=1e-4, rtol=1e-4)
    # view 0 is the world frame: its world points are its camera points
    torch.testing.assert_close(first["pts3d"][:, 0], first["pts3d_cam"][:, 0])
    # normalized: the mean norm of valid world points is 1
    norms = first["pts3d"].norm(dim=-1)[first["valid"]]
    assert norms.mean().item() == pytest.approx(1.0, abs=1e-5)
    # every point lies on the plane z = 3 of the scene frame, which is view 0's camera frame
    plane = (first["pts3d"][..., 2] * first["norm_factor"][:, None, None, None])[first["valid"]]
    torch.testing.assert_close(plane, torch.full_like(plane, 3.0), atol=1e-4, rtol=0)


@pytest.mark.parametrize("scale", [0.25, 1.0, 7.0])
def test_reconstruction_loss_is_zero_at_the_truth_at_any_prediction_scale(scale):
    batch = plane_scene()
    total, terms = ReconstructionLoss()(prediction_from_truth(batch, scale=scale), batch)
    assert total.item() == pytest.approx(0.0, abs=1e-5)
    for name, value in terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-5), name


def test_geometry_terms_are_scale_invariant_and_the_scale_term_is_not():
    batch = plane_scene()
    loss = ReconstructionLoss()
    _, small = loss(prediction_from_truth(batch, scale=0.5, noise=0.1), batch)
    _, large = loss(prediction_from_truth(batch, scale=4.0, noise=0.1), batch)
    for name in GEOMETRY_TERMS:
        assert small[name].item() == pytest.approx(large[name].item(), rel=1e-4, abs=1e-6), name
    assert small["pointmap"] > 1e-3  # the noise is seen
    wrong_scale = prediction_from_truth(batch, scale=2.0)
    wrong_scale["metric_scaling_factor"] = wrong_scale["metric_scaling_factor"] * 1.5
    _, terms = loss(wrong_scale, batch)
    expected = robust_regression(torch.tensor(math.log(1.5) ** 2), 0.5, 0.05)
    assert terms["scale"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert all(terms[name].item() < 1e-5 for name in GEOMETRY_TERMS)


def test_confidence_weighting():
    batch = plane_scene()
    alpha = ReconstructionLossConfig().confidence_alpha
    exact = prediction_from_truth(batch)
    exact["conf"] = torch.full_like(exact["conf"], 3.0)
    _, terms = ReconstructionLoss()(exact, batch)
    assert terms["pointmap"].item() == pytest.approx(-alpha * math.log(3.0), rel=1e-5)
    noisy = prediction_from_truth(batch, noise=0.2)
    _, base = ReconstructionLoss()(noisy, batch)
    noisy["conf"] = torch.full_like(noisy["conf"], 2.0)
    _, doubled = ReconstructionLoss()(noisy, batch)
    assert doubled["pointmap"].item() == pytest.approx(
        2 * base["pointmap"].item() - alpha * math.log(2.0), rel=1e-4
    )


def test_pose_terms_see_pose_errors():
    batch = plane_scene()
    prediction = prediction_from_truth(batch)
    rotated = prediction["cam_quats"].clone()
    rotated[0, 2] = matrix_to_quaternion(rotation_y(20.0))
    prediction["cam_quats"] = rotated
    _, terms = ReconstructionLoss()(prediction, batch)
    assert terms["quaternion"] > 1e-2 and terms["pointmap"] > 1e-2
    assert terms["ray"].item() < 1e-6  # rays live in the camera frame: untouched
    # depth only moves through the prediction's avg-dis normalization, far less than the points
    assert terms["depth"] < terms["pointmap"] / 5


def test_quaternion_loss_ignores_the_sign():
    quats = torch.nn.functional.normalize(torch.randn(2, 3, 4), dim=-1)
    term = QuaternionLoss()
    assert term({"cam_quats": -quats}, {"cam_quats": quats}).item() == pytest.approx(0.0, abs=1e-7)


def test_scale_term_sends_no_gradient_to_geometry():
    batch = plane_scene()
    prediction = prediction_from_truth(batch, scale=2.0, noise=0.05)
    depth = prediction["depth_along_ray"].requires_grad_(True)
    metric = prediction["metric_scaling_factor"].requires_grad_(True)
    loss = ReconstructionLoss(
        ReconstructionLossConfig(
            pointmap_weight=0,
            camera_points_weight=0,
            depth_weight=0,
            ray_weight=0,
            quaternion_weight=0,
            translation_weight=0,
            scale_weight=1.0,
        )
    )
    prediction["metric_scaling_factor"] = metric * 1.3
    total, _ = loss(prediction, batch)
    total.backward()
    assert depth.grad is None or depth.grad.abs().max().item() == 0.0
    assert metric.grad.abs().item() > 0


def test_robust_regression_shape():
    squared = torch.tensor([0.0, 1e-6, 1e-2, 1.0, 100.0])
    values = robust_regression(squared, 0.5, 0.05)
    assert values[0].item() == 0.0
    # quadratic near zero: e^2 / (2 c^2)
    assert values[1].item() == pytest.approx(1e-6 / (2 * 0.05**2), rel=1e-3)
    assert torch.all(values[1:] > values[:-1])
    # sub-linear far out: |e|^alpha growth, much smaller than the quadratic
    assert values[-1].item() < 100.0 / (2 * 0.05**2) / 100


def test_signed_log():
    x = torch.tensor([-3.0, 0.0, 2.0])
    torch.testing.assert_close(signed_log(x), torch.tensor([-math.log(4.0), 0.0, math.log(3.0)]))


def test_scale_shift_invariant_loss():
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(2, 8, 10, generator=generator) + 0.5
    valid = torch.rand(2, 8, 10, generator=generator) > 0.2
    loss = ScaleShiftInvariantLoss()
    assert loss(target, target, valid).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(3.0 * target - 0.7, target, valid).item() == pytest.approx(0.0, abs=1e-5)
    wrong = torch.rand(2, 8, 10, generator=generator)
    value = loss(wrong, target, valid)
    assert value > 0.1
    assert loss(5.0 * wrong + 2.0, target, valid).item() == pytest.approx(value.item(), rel=1e-4)
    garbage = torch.where(valid, wrong, torch.full_like(wrong, 1e6))
    assert loss(garbage, target, valid).item() == pytest.approx(value.item(), rel=1e-5)
    assert loss(-target, target, valid) > 0.5  # a flipped map is not an affine match with a > 0


def test_silog_loss_known_values():
    target = torch.rand(2, 6, 7) + 1.0
    valid = torch.ones_like(target, dtype=torch.bool)
    assert SiLogLoss()(target, target, valid).item() == pytest.approx(0.0, abs=1e-5)
    # a constant log offset k: sqrt(k^2 - 0.5 k^2) = |k| / sqrt(2); fully invariant with lambda 1
    scaled = target * math.exp(0.3)
    assert SiLogLoss()(scaled, target, valid).item() == pytest.approx(0.3 / math.sqrt(2), rel=1e-4)
    assert SiLogLoss(variance_focus=1.0)(scaled, target, valid).item() < 1e-4
    with pytest.raises(ValueError, match="variance_focus"):
        SiLogLoss(variance_focus=1.5)


def test_segmentation_loss_ignores_the_ignore_index():
    logits = torch.randn(1, 4, 5, 6)
    labels = logits.argmax(1)
    labels[0, 0, :] = 255
    changed = logits.clone()
    changed[0, :, 0, :] = torch.randn(4, 6) * 10
    loss = SegmentationLoss()
    assert loss(logits, labels).item() == pytest.approx(loss(changed, labels).item())


def test_bad_inputs():
    batch = plane_scene()
    del batch["cam2world"]
    with pytest.raises(ValueError, match="cam2world"):
        reconstruction_targets(batch)
    with pytest.raises(ValueError, match="pointmap_weight"):
        ReconstructionLossConfig(pointmap_weight=-1.0)
    with pytest.raises(ValueError, match="robust_alpha"):
        ReconstructionLossConfig(robust_alpha=2.0)


def test_batch_loss_is_the_mean_of_its_scenes_losses():
    """Each scene weighs the same whatever its valid-pixel count, so splitting a batch over DDP
    ranks (equal halves) and averaging gives exactly the one-process loss."""
    scenes = [plane_scene(plane_z=3.0), plane_scene(plane_z=4.5)]
    scenes[1]["valid"][..., :6, :] = False  # far fewer valid pixels in the second scene
    batch = {key: torch.cat([s[key] for s in scenes]) for key in scenes[0]}
    predictions = [prediction_from_truth(s, noise=0.2, seed=k) for k, s in enumerate(scenes)]
    joint = {key: torch.cat([p[key] for p in predictions]) for key in predictions[0]}
    loss = ReconstructionLoss()
    total, terms = loss(joint, batch)
    parts = [loss(p, s) for p, s in zip(predictions, scenes, strict=True)]
    torch.testing.assert_close(total, (parts[0][0] + parts[1][0]) / 2)
    for name in ("pointmap", "depth"):
        torch.testing.assert_close(terms[name], (parts[0][1][name] + parts[1][1][name]) / 2)


def shifted_plane_pair(shift_patches: int, patch: int = 4, grid=(3, 4), plane_z: float = 2.0):
    """Two fronto-parallel views of the plane z = plane_z; view 1's camera is moved along +x so
    that the image content moves by exactly ``shift_patches`` patches to the left."""
    height, width = grid[0] * patch, grid[1] * patch
    focal = 10.0
    intrinsics = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    cam2world = torch.eye(4).repeat(2, 1, 1)
    cam2world[1, 0, 3] = shift_patches * patch * plane_z / focal
    return {
        "depth": torch.full((1, 2, height, width), plane_z),
        "valid": torch.ones(1, 2, height, width, dtype=torch.bool),
        "intrinsics": intrinsics.expand(1, 2, 3, 3).clone(),
        "cam2world": cam2world[None],
    }


def test_match_targets_follow_the_camera_motion_and_leave_out_unseen_patches():
    grid = (3, 4)
    for shift in (0, 1, 2):
        target = reconstruction_targets(shifted_plane_pair(shift, grid=grid))
        index = match_targets(target["pts3d"], target["valid"], target["intrinsics"], grid)
        rows, cols = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
        expected = torch.where(cols + shift < 4, rows * 4 + cols + shift, -1).flatten()
        assert index[0, 1].tolist() == expected.tolist(), shift
        assert index[0, 0].tolist() == list(range(12))  # view 0 matches itself


def test_match_targets_leave_out_occluded_and_invalid_points():
    grid = (3, 4)
    batch = shifted_plane_pair(0, grid=grid)
    batch["depth"][0, 0, :4] = 1.0  # something nearer covers view 0's top patch row
    batch["valid"][0, 1, 4:8] = False  # view 1's middle row has no depth
    target = reconstruction_targets(batch)
    index = match_targets(target["pts3d"], target["valid"], target["intrinsics"], grid)[0, 1]
    assert index.tolist() == [-1] * 8 + list(range(8, 12))


def test_match_loss_rewards_the_true_matches():
    grid = (3, 4)
    batch = shifted_plane_pair(1, grid=grid)
    target = reconstruction_targets(batch)
    truth = match_targets(target["pts3d"], target["valid"], target["intrinsics"], grid)
    uniform = MatchLoss()({"match_logits": torch.zeros(1, 2, 12, 12)}, target)
    assert uniform.item() == pytest.approx(math.log(12), rel=1e-5)
    confident = torch.full((1, 2, 12, 12), -10.0)
    confident.scatter_(-1, truth.clamp_min(0).unsqueeze(-1), 10.0)
    assert MatchLoss()({"match_logits": confident}, target).item() < 1e-6
    # off by one patch (view 1's match taken as its own position): a large loss
    assert MatchLoss()({"match_logits": confident[:, :1].expand(1, 2, 12, 12)}, target) > 5.0
    # the term is part of the total only for predictions that carry match logits
    prediction = prediction_from_truth(batch)
    assert "match" not in ReconstructionLoss()(prediction, batch)[1]
    prediction["match_logits"] = confident
    total, terms = ReconstructionLoss()(prediction, batch)
    assert terms["match"].item() < 1e-6 and total.item() == pytest.approx(0.0, abs=1e-5)
