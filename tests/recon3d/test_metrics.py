"""Known-answer tests of pixio_3d.evaluation.metrics (perturbed-ground-truth predictors, recon3d.md §6.3)."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import norm

from pixio_3d import geometry as geo
from pixio_3d.evaluation import metrics

VIEWS, HEIGHT, WIDTH = 5, 12, 16


def _scene(seed: int = 0, views: int = VIEWS):
    """Cameras on a ring looking at the origin and pointmaps of a noisy sphere-ish surface."""
    generator = torch.Generator().manual_seed(seed)
    poses = torch.eye(4, dtype=torch.float64).repeat(views, 1, 1)
    for v in range(views):
        angle = 2 * math.pi * v / views
        centre = torch.tensor(
            [3 * math.sin(angle), 0.3 * v, -3 * math.cos(angle)], dtype=torch.float64
        )
        forward = -centre / centre.norm()
        right = torch.linalg.cross(torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64), forward)
        right = right / right.norm()
        down = torch.linalg.cross(forward, right)
        poses[v, :3, :3] = torch.stack([right, down, forward], dim=1)
        poses[v, :3, 3] = centre
    intrinsics = torch.tensor([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]], dtype=torch.float64)
    z_depth = 2 + torch.rand(views, HEIGHT, WIDTH, generator=generator, dtype=torch.float64)
    cam_points = geo.points_from_z_depth(z_depth, intrinsics.expand(views, 3, 3))
    world_points = geo.transform_points(poses, cam_points)
    valid = torch.rand(views, HEIGHT, WIDTH, generator=generator) > 0.1
    return world_points, poses, valid, z_depth


def _similarity(seed: int = 1, scale: float = 1.7) -> torch.Tensor:
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] = scale * torch.from_numpy(Rotation.random(random_state=seed).as_matrix())
    transform[:3, 3] = torch.tensor([0.5, -2.0, 3.0])
    return transform


def _apply_similarity(transform, points, poses):
    """World change by a similarity: points move, poses stay rigid with scaled translations."""
    scale = transform[:3, :3].det().abs() ** (1 / 3)
    rotation = transform[:3, :3] / scale
    moved_poses = poses.clone()
    moved_poses[:, :3, :3] = rotation @ poses[:, :3, :3]
    moved_poses[:, :3, 3] = (transform[:3, :3] @ poses[:, :3, 3:4]).squeeze(-1) + transform[:3, 3]
    return geo.transform_points(transform, points), moved_poses


def test_identical_inputs_give_perfect_scores():
    points, poses, valid, z_depth = _scene()
    dense = metrics.pointmap_metrics(points, points, valid, poses, poses)
    assert dense["pointmaps_abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert dense["pointmaps_inlier_thres_103"] == 1.0
    pose = metrics.pose_metrics(poses, poses)
    assert pose["auc_5"] == 1.0 and pose["auc_30"] == 1.0
    assert pose["rra_5"] == 1.0 and pose["rta_5"] == 1.0 and pose["registered_ratio"] == 1.0
    assert pose["ate"] == pytest.approx(0.0, abs=1e-9)
    depth = metrics.depth_metrics(z_depth, z_depth, valid)
    assert depth["abs_rel"] == 0.0 and depth["delta1"] == 1.0 and depth["rmse"] == 0.0
    cloud = points[valid]
    chamfer = metrics.chamfer_distance(cloud, cloud)
    assert chamfer["chamfer"] == pytest.approx(0.0, abs=1e-9)


def test_normalized_metrics_are_similarity_invariant_and_scale_is_measured():
    points, poses, valid, _ = _scene(seed=2)
    moved_points, moved_poses = _apply_similarity(_similarity(scale=1.02), points, poses)
    normalized = metrics.pointmap_metrics(moved_points, points, valid, moved_poses, poses)
    assert normalized["pointmaps_abs_rel"] == pytest.approx(0.0, abs=1e-9)
    assert normalized["pointmaps_inlier_thres_103"] == 1.0
    raw = metrics.pointmap_metrics(moved_points, points, valid, moved_poses, poses, normalize=False)
    assert raw["pointmaps_abs_rel"] == pytest.approx(0.02)
    assert raw["pointmaps_inlier_thres_103"] == 1.0  # 1.02 < 1.03
    too_big, big_poses = _apply_similarity(_similarity(scale=1.05), points, poses)
    raw_big = metrics.pointmap_metrics(too_big, points, valid, big_poses, poses, normalize=False)
    assert raw_big["pointmaps_inlier_thres_103"] == 0.0
    scale_rel = metrics.metric_scale_abs_rel(moved_points, points, valid, moved_poses, poses)
    assert scale_rel == pytest.approx(0.02)
    # normalize_scene: same result from either world
    a, pose_a, factor_a = metrics.normalize_scene(points, valid, poses)
    b, pose_b, factor_b = metrics.normalize_scene(moved_points, valid, moved_poses)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(pose_a, pose_b)
    assert factor_b / factor_a == pytest.approx(1.02)
    torch.testing.assert_close(pose_a[0], torch.eye(4, dtype=torch.float64))
    # relative pose metrics and Sim(3) ATE ignore the world change too
    pose = metrics.pose_metrics(moved_poses, poses)
    assert pose["auc_5"] == 1.0 and pose["ate"] == pytest.approx(0.0, abs=1e-9)


def test_zero_prediction_is_an_outlier():
    points, _, valid, _ = _scene(seed=3)
    pred = points.clone()
    pred[0] = 0
    result = metrics.pointmap_metrics(pred, points, valid, normalize=False)
    assert result["pointmaps_inlier_thres_103"] == pytest.approx((VIEWS - 1) / VIEWS)
    assert result["pointmaps_abs_rel"] == pytest.approx(1 / VIEWS)


@pytest.mark.parametrize("views", [4, 6])
def test_one_camera_rotated_about_optical_axis_gives_hand_computed_auc(views):
    _, poses, _, _ = _scene(seed=4, views=views)
    pred = poses.clone()
    roll = torch.from_numpy(Rotation.from_euler("z", 3.5, degrees=True).as_matrix())
    pred[2, :3, :3] = poses[2, :3, :3] @ roll  # about camera 2's own z axis
    rotation, translation = metrics.relative_pose_errors(pred, poses)
    pairs = views * (views - 1) // 2
    affected = np.array([2 in pair for pair in zip(*np.triu_indices(views, 1), strict=True)])
    np.testing.assert_allclose(rotation[affected], 3.5, atol=1e-9)
    np.testing.assert_allclose(rotation[~affected], 0.0, atol=1e-9)
    assert np.all(np.maximum(rotation, translation)[affected] == rotation[affected])
    auc5 = metrics.pose_auc(rotation, translation, 5)
    assert auc5 == pytest.approx(1 - (views - 1) / pairs * 3 / 5)
    assert metrics.pose_auc(rotation, translation, 30) == pytest.approx(
        1 - (views - 1) / pairs * 3 / 30
    )
    result = metrics.pose_metrics(pred, poses)
    assert result["rra_5"] == 1.0 and result["auc_5"] == pytest.approx(auc5)


def test_translation_direction_error_and_sign_ambiguity():
    gt = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    gt[1, :3, 3] = torch.tensor([1.0, 0.0, 0.0])
    pred = gt.clone()
    pred[1, :3, 3] = 5 * torch.tensor([math.cos(math.radians(10)), math.sin(math.radians(10)), 0.0])
    rotation, translation = metrics.relative_pose_errors(pred, gt)
    assert rotation[0] == pytest.approx(0.0, abs=1e-9)
    assert translation[0] == pytest.approx(10.0)
    pred[1, :3, 3] = torch.tensor([-2.0, 0.0, 0.0])  # flipped direction counts as correct
    assert metrics.relative_pose_errors(pred, gt)[1][0] == pytest.approx(0.0, abs=1e-6)
    pred[1, :3, 3] = 0.0
    assert metrics.relative_pose_errors(pred, gt)[1][0] == pytest.approx(90.0)


def test_unregistered_views_fail_their_pairs_exactly():
    _, poses, _, _ = _scene(seed=5, views=6)
    pred = poses.clone()
    pred[1] = float("nan")  # whatever an unregistered view holds must not matter
    registered = np.array([True, False, True, True, False, True])
    rotation, translation = metrics.relative_pose_errors(pred, poses, registered)
    assert np.isfinite(rotation).all() and np.isfinite(translation).all()
    assert np.sum(rotation == 180.0) == 15 - 6  # only the C(4, 2) = 6 registered pairs are right
    for threshold in (5, 30):
        assert metrics.pose_auc(rotation, translation, threshold) == pytest.approx(6 / 15)
    result = metrics.pose_metrics(pred, poses, registered)
    assert result["auc_5"] == pytest.approx(0.4) and result["registered_ratio"] == pytest.approx(
        4 / 6
    )
    assert result["ate"] == pytest.approx(0.0, abs=1e-9)
    two_registered = np.array([True, True, False, False, False, False])
    assert math.isnan(metrics.absolute_trajectory_error(poses, poses, two_registered))


def test_ate_known_answers():
    _, poses, _, _ = _scene(seed=6, views=5)
    centres = poses[:, :3, 3]
    doubled = poses.clone()
    doubled[:, :3, 3] = 2 * (centres - centres.mean(0)) + centres.mean(0) + 1.0
    assert metrics.absolute_trajectory_error(doubled, poses) == pytest.approx(0.0, abs=1e-9)
    spread = (centres - centres.mean(0)).norm(dim=-1)
    rigid_rmse = metrics.absolute_trajectory_error(doubled, poses, with_scale=False)
    assert rigid_rmse == pytest.approx(float((spread**2).mean().sqrt()))
    rigid_mean = metrics.absolute_trajectory_error(
        doubled, poses, with_scale=False, reduction="mean"
    )
    assert rigid_mean == pytest.approx(float(spread.mean()))


def test_chamfer_known_answers():
    grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    shifted = grid + np.array([0.0, 0.0, 0.1])
    result = metrics.chamfer_distance(shifted, grid, alignment="none", fscore_threshold=0.05)
    assert result["accuracy"] == pytest.approx(0.1) and result["completeness"] == pytest.approx(0.1)
    assert result["chamfer"] == pytest.approx(0.1) and result["fscore"] == 0.0
    assert metrics.chamfer_distance(shifted, grid, fscore_threshold=0.15)["fscore"] == 1.0
    # a similarity-transformed prediction is aligned back exactly, its scale reported
    transform = _similarity(seed=7, scale=3.0).numpy()
    moved = grid @ transform[:3, :3].T + transform[:3, 3]
    aligned = metrics.chamfer_distance(moved, grid)
    assert aligned["chamfer"] == pytest.approx(0.0, abs=1e-9)
    assert aligned["scale"] == pytest.approx(1 / 3)
    subset = metrics.chamfer_distance(moved[:20], grid, correspondences=(moved, grid))
    assert subset["accuracy"] == pytest.approx(0.0, abs=1e-9) and subset["completeness"] > 0.5
    with pytest.raises(ValueError, match="correspond"):
        metrics.chamfer_distance(moved[:20], grid)


def test_depth_metrics_alignments():
    _, _, valid, z_depth = _scene(seed=8)
    doubled = metrics.depth_metrics(2 * z_depth, z_depth, valid)
    assert doubled["abs_rel"] == pytest.approx(1.0) and doubled["delta1"] == 0.0
    assert metrics.depth_metrics(2 * z_depth, z_depth, valid, "median")["abs_rel"] == pytest.approx(
        0, abs=1e-12
    )
    affine = metrics.depth_metrics(2 * z_depth + 1, z_depth, valid, "scale_shift")
    assert affine["abs_rel"] == pytest.approx(0.0, abs=1e-9) and affine["delta1"] == 1.0
    disparity = metrics.depth_metrics(3 / z_depth + 0.5, z_depth, valid, "disparity_scale_shift")
    assert disparity["abs_rel"] == pytest.approx(0.0, abs=1e-9)
    single = metrics.depth_metrics(z_depth[0] * 1.1, z_depth[0])
    assert single["abs_rel"] == pytest.approx(0.1) and single["inlier_103"] == 0.0
    with pytest.raises(ValueError, match="alignment"):
        metrics.depth_metrics(z_depth, z_depth, alignment="mean")


def test_depth_gaussian_noise_matches_analytic_values():
    generator = torch.Generator().manual_seed(9)
    gt = 1 + torch.rand(4, 200, 250, generator=generator, dtype=torch.float64)
    sigma = 0.02
    noise = sigma * torch.randn(gt.shape, generator=generator, dtype=torch.float64)
    result = metrics.depth_metrics(gt * (1 + noise), gt)
    assert result["abs_rel"] == pytest.approx(sigma * math.sqrt(2 / math.pi), rel=0.01)
    # max(r, 1/r) < 1.03 with r = 1 + e  <=>  1/1.03 - 1 < e < 0.03
    expected = norm.cdf(0.03 / sigma) - norm.cdf((1 / 1.03 - 1) / sigma)
    assert result["inlier_103"] == pytest.approx(expected, abs=0.005)


def test_ray_angular_error():
    intrinsics = torch.tensor([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]], dtype=torch.float64)
    rays = geo.ray_directions(intrinsics, 12, 16)
    tilt = torch.from_numpy(Rotation.from_euler("y", 2.0, degrees=True).as_matrix())
    tilted = rays @ tilt.T
    expected = torch.rad2deg(torch.acos((tilted * rays).sum(-1).clamp(max=1))).mean()
    assert metrics.ray_angular_error(tilted, rays) == pytest.approx(float(expected), rel=1e-6)
    # rays in the x-z plane (perpendicular to the rotation axis) are off by exactly 2 degrees
    planar = torch.nn.functional.normalize(
        torch.stack([rays[..., 0], 0 * rays[..., 1], rays[..., 2]], -1), dim=-1
    )
    assert metrics.ray_angular_error(planar @ tilt.T, planar) == pytest.approx(2.0)


def test_bad_inputs_raise_clear_errors():
    points, poses, valid, _ = _scene(seed=10)
    with pytest.raises(ValueError, match="pred_points"):
        metrics.pointmap_metrics(points[:2], points, valid)
    with pytest.raises(ValueError, match="both"):
        metrics.pointmap_metrics(points, points, valid, poses, None)
    with pytest.raises(ValueError, match="registered"):
        metrics.relative_pose_errors(poses, poses, np.ones(2, dtype=bool))
    with pytest.raises(ValueError, match="positive whole"):
        metrics.pose_auc(np.zeros(3), np.zeros(3), 2.5)


def test_depth_metrics_accept_a_single_map_with_its_mask():
    gt = torch.full((4, 5), 2.0)
    pred = gt.clone()
    pred[0, 0] = 100.0  # masked out below
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[0, 0] = False
    assert metrics.depth_metrics(pred, gt, valid, alignment="none")["abs_rel"] == 0.0
