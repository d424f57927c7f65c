"""The ``features`` pose solver: exact two-view geometry and chaining on exact keypoints, robust
to wrong matches, the fallback for views it cannot place, and SIFT on a rendered scene."""

import math

import numpy as np
import pytest
import torch

from pixio_3d.geometry import transform_points
from pixio_3d.metrics import relative_pose_errors
from pixio_3d.models import ReconstructionConfig, ReconstructionModel
from pixio_3d.pose_solver import (
    FeatureSettings,
    match_descriptors,
    poses_from_features,
    poses_from_keypoints,
    relative_pose_from_features,
    sift_features,
    triangulated_depth,
)
from pixio_3d.scenes import SceneConfig, build_scene, render_scene
from pixio_core.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from pixio_core.models.registry import create_encoder

WIDTH, HEIGHT, FOCAL = 320, 240, 250.0
K = np.array([[FOCAL, 0.0, WIDTH / 2], [0.0, FOCAL, HEIGHT / 2], [0.0, 0.0, 1.0]])


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world pose at ``centre`` looking at ``target`` (y down)."""
    forward = target - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = centre
    return pose


def ring_cameras(views: int, step_deg: float = 20.0, radius: float = 4.0) -> np.ndarray:
    angles = np.deg2rad(step_deg) * np.arange(views)
    centres = np.stack([radius * np.sin(angles), np.zeros(views), -radius * np.cos(angles)], 1)
    return np.stack([look_at(c, np.zeros(3)) for c in centres])


def project(cam2world: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = (points - cam2world[:3, 3]) @ cam2world[:3, :3]
    pixels = cam @ K.T
    return pixels[:, :2] / pixels[:, 2:], cam[:, 2]


def synthetic_features(cam2world: np.ndarray, visible: list[np.ndarray], seed: int = 0):
    """Keypoints of random points in a 2 m cube around the origin, each with its own random unit
    descriptor; view ``v`` sees the points ``visible[v]``. Also a z-depth map per view holding
    the true z at each keypoint's pixel (0 elsewhere = no depth)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1.0, 1.0, (400, 3))
    descriptors = rng.normal(size=(400, 128)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    features, depth = [], np.zeros((len(cam2world), HEIGHT, WIDTH))
    for view, pose in enumerate(cam2world):
        order = rng.permutation(visible[view])
        pixels, z = project(pose, points[order])
        inside = (pixels >= 0).all(1) & (pixels[:, 0] < WIDTH) & (pixels[:, 1] < HEIGHT)
        pixels, z, order = pixels[inside], z[inside], order[inside]
        depth[view, pixels[:, 1].astype(int), pixels[:, 0].astype(int)] = z
        features.append((pixels, descriptors[order]))
    return features, torch.from_numpy(depth)


def errors_deg(pred: torch.Tensor, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return relative_pose_errors(pred.double().numpy(), gt)


def test_descriptor_matching_is_mutual_and_ratio_tested():
    rng = np.random.default_rng(0)
    first = rng.normal(size=(50, 128)).astype(np.float32)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    order = rng.permutation(50)
    second = first[order].copy()
    second[0] = second[1]  # two identical candidates: the ratio test must drop their matches
    matches = match_descriptors(first, second)
    assert {order[b] for _, b in [(a, b) for a, b in matches]} <= set(range(50))
    for a, b in matches:
        assert order[b] == a
    assert len(matches) == 48 and order[0] not in matches[:, 0] and order[1] not in matches[:, 0]
    assert match_descriptors(first[:1], second).shape == (0, 2)


def test_two_view_pose_and_triangulation_are_exact_on_exact_keypoints():
    cam2world = ring_cameras(2)
    everything = np.arange(400)
    features, _ = synthetic_features(cam2world, [everything, everything])
    found = relative_pose_from_features(features[0], features[1], K, K, (WIDTH, HEIGHT))
    assert found is not None
    pose, points0, points1 = found
    truth = np.linalg.inv(cam2world[1]) @ cam2world[0]  # cam1_from_cam0
    rotation_error = np.rad2deg(
        np.arccos(np.clip((np.trace(pose[:3, :3].T @ truth[:3, :3]) - 1) / 2, -1, 1))
    )
    assert rotation_error < 0.05
    direction = truth[:3, 3] / np.linalg.norm(truth[:3, 3])
    assert np.dot(pose[:3, 3], direction) > 1 - 1e-6  # unit, same sign
    z0, z1 = triangulated_depth(points0, points1, K, K, pose)
    true_z0 = np.linalg.solve(K, np.c_[points0, np.ones(len(points0))].T).T  # rays with z = 1
    assert (z0 > 0).all() and (z1 > 0).all()
    # depths are in units of the unit baseline: scaled by the true baseline they are metric
    world = (true_z0 * (z0 * np.linalg.norm(truth[:3, 3]))[:, None]) @ cam2world[0][:3, :3].T
    world += cam2world[0][:3, 3]
    reprojected, _ = project(cam2world[1], world)
    np.testing.assert_allclose(reprojected, points1, atol=1e-3)


@pytest.mark.parametrize("wrong_fraction", [0.0, 0.3])
def test_chained_poses_recover_the_cameras_with_metric_translations(wrong_fraction):
    """View 2 shares no point with view 0: its pose comes through view 1 (the view graph)."""
    world_cameras = ring_cameras(3)
    first, second = np.arange(0, 200), np.arange(200, 400)
    features, depth = synthetic_features(world_cameras, [first, np.arange(400), second])
    cam2world = np.linalg.inv(world_cameras[0]) @ world_cameras  # view 0 is the world frame
    if wrong_fraction:
        rng = np.random.default_rng(1)
        points, descriptors = features[1]
        wrong = rng.random(len(points)) < wrong_fraction
        features[1] = (
            np.where(wrong[:, None], rng.uniform(0, HEIGHT, points.shape), points),
            descriptors,
        )
    intrinsics = torch.from_numpy(K).expand(3, 3, 3)
    fallback = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    poses, placed = poses_from_keypoints(
        features, (WIDTH, HEIGHT), intrinsics, depth, fallback, FeatureSettings(max_error=1.0)
    )
    assert placed[0] == 0 and bool((placed[1:] >= 15).all())
    rotation, translation = errors_deg(poses, cam2world)
    # wrong keypoints that happen to lie within 1 px of their epipolar line stay inliers
    tolerance = 0.1 if wrong_fraction == 0 else 0.5
    assert rotation.max() < tolerance and translation.max() < 2 * tolerance
    # the network depth sets the translation lengths: metric here, because the depth is exact
    np.testing.assert_allclose(
        poses[:, :3, 3].numpy(), cam2world[:, :3, 3], atol=2e-3 if wrong_fraction == 0 else 0.05
    )


def test_views_the_graph_cannot_reach_keep_their_fallback_pose():
    cam2world = ring_cameras(3)
    features, depth = synthetic_features(
        cam2world, [np.arange(200), np.arange(200), np.arange(200, 400)]
    )
    intrinsics = torch.from_numpy(K).expand(3, 3, 3)
    fallback = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    fallback[2, :3, 3] = torch.tensor([7.0, 8.0, 9.0], dtype=torch.float64)
    poses, placed = poses_from_keypoints(features, (WIDTH, HEIGHT), intrinsics, depth, fallback)
    assert placed.tolist()[0] == 0 and placed[1] > 0 and placed[2] == 0
    assert torch.equal(poses[2], fallback[2]) and torch.equal(poses[0], fallback[0])
    assert not torch.equal(poses[1], fallback[1])


@pytest.fixture(scope="module")
def rendered():
    """Real MuJoCo renders of 4 neighbouring ring views, 22.5 degrees apart, at 256x192."""
    return render_scene(build_scene(5, 4, SceneConfig(camera_arc_degrees=67.5)), 192, 256)


def test_sift_poses_on_a_rendered_scene(rendered):
    """Real SIFT; the network's views are half the photos' size (intrinsics, depth 128x96)."""
    views = rendered
    gt = np.linalg.inv(views.cam2world[0]) @ views.cam2world
    keypoints, descriptors = sift_features(views.rgb[0])
    assert keypoints.shape[1] == 2 and descriptors.shape == (len(keypoints), 128)
    assert len(keypoints) > 50
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, rtol=1e-5)
    fallback = torch.eye(4, dtype=torch.float64).repeat(4, 1, 1)
    intrinsics = torch.from_numpy(np.diag([0.5, 0.5, 1.0]) @ views.intrinsics)
    depth = torch.from_numpy(views.depth[:, ::2, ::2].astype(np.float64))
    poses, placed = poses_from_features(list(views.rgb), intrinsics, depth, fallback)
    placed_views = [v for v in range(1, 4) if placed[v] > 0]
    assert placed_views, "no view placed"
    rotation, translation = errors_deg(poses, gt)
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    for index, (i, j) in enumerate(pairs):
        if i in [0, *placed_views] and j in [0, *placed_views]:
            assert rotation[index] < 2.0 and translation[index] < 10.0, (i, j)
    for v in placed_views:  # translation lengths from the (here true, half-size) depth
        assert math.isclose(
            poses[v, :3, 3].norm().item(), float(np.linalg.norm(gt[v, :3, 3])), rel_tol=0.15
        )
    blank = np.zeros_like(views.rgb[2])  # no keypoints at all: view 2 keeps its fallback
    keypoints, descriptors = sift_features(blank)
    assert keypoints.shape == (0, 2) and descriptors.shape == (0, 128)
    photos = [views.rgb[0], views.rgb[1], blank, views.rgb[3]]
    poses, placed = poses_from_features(photos, intrinsics, depth, fallback)
    assert placed[2] == 0 and torch.equal(poses[2], fallback[2])
    with pytest.raises(ValueError, match="aspect"):
        poses_from_features([v[:, :200] for v in views.rgb], intrinsics, depth, fallback)
    with pytest.raises(ValueError, match="photos for"):
        poses_from_features(list(views.rgb[:2]), intrinsics, depth, fallback)


def test_infer_with_the_feature_solver(rendered):
    """An untrained model: its depth is arbitrary, yet the rotations come from the photos."""
    torch.manual_seed(0)
    encoder = create_encoder("pixio_vitt16", depth=2).eval().requires_grad_(False)
    tiny = {"width": 64, "depth": 2, "num_heads": 4, "pose_hidden_dim": 32, "dpt_features": 16}
    model = ReconstructionModel(
        encoder, ReconstructionConfig(dpt_out_channels=(8, 16, 32, 32), **tiny)
    ).eval()
    rgb = torch.from_numpy(rendered.rgb).permute(0, 3, 1, 2).float() / 255.0
    small = torch.nn.functional.interpolate(rgb, size=(96, 128), mode="bilinear", antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = ((small - mean) / std)[None]
    intrinsics = torch.from_numpy(np.diag([0.5, 0.5, 1.0]) @ rendered.intrinsics).float()[None]
    head = model.infer(x, intrinsics)
    solved = model.infer(x, intrinsics, pose_solver="features", photos=[list(rendered.rgb)])
    torch.testing.assert_close(solved["pts3d_cam"], head["pts3d_cam"])  # geometry unchanged
    torch.testing.assert_close(solved["camera_poses"][:, 0], torch.eye(4)[None])
    torch.testing.assert_close(
        solved["pts3d"], transform_points(solved["camera_poses"], solved["pts3d_cam"])
    )
    gt = np.linalg.inv(rendered.cam2world[0]) @ rendered.cam2world
    rotation, _ = errors_deg(solved["camera_poses"][0], gt)
    head_rotation, _ = errors_deg(head["camera_poses"][0], gt)
    assert rotation[:3].max() < 2.0 < head_rotation[:3].max()  # pairs (0, 1), (0, 2), (0, 3)
    support = solved["pose_support"][0]
    assert "pose_support" not in head and support[0] == 0 and bool((support[1:] >= 15).all())
    # without photos the keypoints come from the (128x96) views themselves: it runs
    low = model.infer(x, intrinsics, pose_solver="features")
    assert low["camera_poses"].shape == (1, 4, 4, 4)
    with pytest.raises(ValueError, match="photos for 2 scenes"):
        model.infer(x, intrinsics, pose_solver="features", photos=[list(rendered.rgb)] * 2)
