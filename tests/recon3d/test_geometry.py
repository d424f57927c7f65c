"""Known-answer and round-trip tests of pixio_3d.geometry (OpenCV cameras, cam2world, wxyz)."""

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from pixio_3d import geometry as geo


def _random_rotations(count: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(Rotation.random(count, random_state=seed).as_matrix())


def _intrinsics(fx=50.0, fy=55.0, cx=33.0, cy=23.5) -> torch.Tensor:
    return torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float64)


def _random_poses(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    poses = torch.eye(4, dtype=torch.float64).repeat(count, 1, 1)
    poses[:, :3, :3] = _random_rotations(count, seed)
    poses[:, :3, 3] = torch.randn(count, 3, generator=generator, dtype=torch.float64)
    return poses


def test_quaternion_matrix_round_trip_random_rotations():
    rotations = _random_rotations(500, seed=0)
    quaternions = geo.matrix_to_quaternion(rotations)
    assert torch.all(quaternions[:, 0] >= 0)
    torch.testing.assert_close(quaternions.norm(dim=-1), torch.ones(500, dtype=torch.float64))
    torch.testing.assert_close(geo.quaternion_to_matrix(quaternions), rotations)
    # scipy stores (x, y, z, w): same rotation up to sign
    scipy_quat = torch.from_numpy(Rotation.from_matrix(rotations.numpy()).as_quat())
    scipy_wxyz = scipy_quat[:, [3, 0, 1, 2]]
    dots = (scipy_wxyz * quaternions).sum(-1).abs()
    torch.testing.assert_close(dots, torch.ones(500, dtype=torch.float64))


@pytest.mark.parametrize("angle_deg", [180.0, 179.999, 90.0, 1e-6, 0.0])
def test_quaternion_matrix_round_trip_special_angles(angle_deg):
    generator = torch.Generator().manual_seed(1)
    axes = torch.nn.functional.normalize(torch.randn(64, 3, generator=generator), dim=-1)
    axes[0] = torch.tensor([1.0, 0.0, 0.0])
    axes[1] = torch.tensor([0.0, 0.0, 1.0])
    rotvec = axes.double() * math.radians(angle_deg)
    rotations = torch.from_numpy(Rotation.from_rotvec(rotvec.numpy()).as_matrix())
    recovered = geo.quaternion_to_matrix(geo.matrix_to_quaternion(rotations))
    torch.testing.assert_close(recovered, rotations, atol=1e-12, rtol=0)


def test_quaternion_float32_and_gradients_finite():
    rotations = _random_rotations(16, seed=2).float()
    rotations[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # 180 degrees about x
    rotations.requires_grad_(True)
    quaternions = geo.matrix_to_quaternion(rotations)
    torch.testing.assert_close(geo.quaternion_to_matrix(quaternions), rotations.detach())
    quaternions.sum().backward()
    assert torch.isfinite(rotations.grad).all()


def test_pose_quaternion_translation_round_trip_and_inverse():
    poses = _random_poses(10, seed=3)
    q, t = geo.quaternion_translation_from_pose(poses)
    torch.testing.assert_close(geo.pose_from_quaternion_translation(q, t), poses)
    identity = torch.eye(4, dtype=torch.float64).expand(10, 4, 4)
    torch.testing.assert_close(geo.invert_pose(poses) @ poses, identity)


def test_rays_depth_points_consistency_with_known_intrinsics():
    intrinsics = _intrinsics()
    height, width = 48, 64
    rays = geo.ray_directions(intrinsics, height, width)
    assert rays.shape == (height, width, 3)
    torch.testing.assert_close(rays.norm(dim=-1), torch.ones(height, width, dtype=torch.float64))
    # pixel (col 10, row 20) has its centre at (10.5, 20.5)
    expected = torch.tensor([(10.5 - 33.0) / 50.0, (20.5 - 23.5) / 55.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(rays[20, 10], expected / expected.norm())

    generator = torch.Generator().manual_seed(4)
    z_depth = 1 + 4 * torch.rand(2, height, width, generator=generator, dtype=torch.float64)
    batch_k = intrinsics.expand(2, 3, 3)
    points = geo.points_from_z_depth(z_depth, batch_k)
    torch.testing.assert_close(points[..., 2], z_depth)
    # projecting the points gives back the pixel centres
    projected = points @ intrinsics.T
    u = projected[..., 0] / projected[..., 2]
    torch.testing.assert_close(u[0, 5], torch.arange(width, dtype=torch.float64) + 0.5)
    along_ray = geo.depth_along_ray_from_z(z_depth, batch_k)
    torch.testing.assert_close(along_ray, points.norm(dim=-1))
    from_ray = geo.points_from_depth_along_ray(
        geo.ray_directions(batch_k, height, width), along_ray
    )
    torch.testing.assert_close(from_ray, points)


def test_transform_points_shapes_and_values():
    poses = _random_poses(3, seed=5)
    generator = torch.Generator().manual_seed(5)
    pointmaps = torch.randn(3, 4, 5, 3, generator=generator, dtype=torch.float64)
    moved = geo.transform_points(poses, pointmaps)
    assert moved.shape == pointmaps.shape
    manual = pointmaps[1, 2, 3] @ poses[1, :3, :3].T + poses[1, :3, 3]
    torch.testing.assert_close(moved[1, 2, 3], manual)
    cloud = pointmaps.reshape(-1, 3)
    torch.testing.assert_close(
        geo.transform_points(poses[0], cloud), cloud @ poses[0, :3, :3].T + poses[0, :3, 3]
    )
    back = geo.transform_points(geo.invert_pose(poses), moved)
    torch.testing.assert_close(back, pointmaps)
    with pytest.raises(ValueError, match="points"):
        geo.transform_points(poses.expand(2, 3, 4, 4), torch.zeros(3, 3))


def test_relative_poses_view0_identity_and_preserves_relative_transforms():
    poses = _random_poses(5, seed=6)
    relative = geo.relative_poses(poses)
    torch.testing.assert_close(relative[0], torch.eye(4, dtype=torch.float64))
    for i in range(5):
        for j in range(5):
            before = geo.invert_pose(poses[i]) @ poses[j]
            after = geo.invert_pose(relative[i]) @ relative[j]
            torch.testing.assert_close(after, before)
    # a world change does not change the relative poses
    world_change = _random_poses(1, seed=7)[0]
    torch.testing.assert_close(geo.relative_poses(world_change @ poses), relative)
    batched = geo.relative_poses(torch.stack([poses, world_change @ poses]))
    torch.testing.assert_close(batched[1], relative)


def test_centred_pinhole_from_rays_fits_one_focal_length_or_colmaps_start():
    height, width = 48, 64
    centred = torch.tensor([[70.0, 0.0, 32.0], [0.0, 70.0, 24.0], [0.0, 0.0, 1.0]])
    found = geo.centred_pinhole_from_rays(geo.ray_directions(centred, height, width))
    torch.testing.assert_close(found, centred)
    # fx 80, fy 60, the principal point off: one focal length between, the centre kept
    off = torch.tensor([[80.0, 0.0, 26.0], [0.0, 60.0, 20.0], [0.0, 0.0, 1.0]])
    found = geo.centred_pinhole_from_rays(geo.ray_directions(off, height, width)[None])[0]
    assert 60 < found[0, 0] < 80 and found[0, 0] == found[1, 1]
    assert found[:2, 2].tolist() == [32.0, 24.0]
    # rays of a 2-degree or a 175-degree lens are no camera: COLMAP's 1.2 x the longer side
    low, high = geo.plausible_focal_range(height, width)
    assert low == pytest.approx(64 / (2 * math.tan(math.radians(75))))
    assert high == pytest.approx(64 / (2 * math.tan(math.radians(5))))
    for focal in (0.5 * low, 2 * high):
        k = centred.clone()
        k[0, 0] = k[1, 1] = focal
        found = geo.centred_pinhole_from_rays(geo.ray_directions(k, height, width))
        assert found[0, 0] == pytest.approx(1.2 * 64)
    flat = torch.zeros(height, width, 3)
    flat[..., 2] = 1  # every ray along the axis: an infinite focal length
    assert geo.centred_pinhole_from_rays(flat)[0, 0] == pytest.approx(1.2 * 64)


def test_intrinsics_from_rays_recovers_k():
    intrinsics = torch.stack([_intrinsics(), _intrinsics(80.0, 80.0, 32.0, 24.0)])
    rays = geo.ray_directions(intrinsics, 48, 64)
    torch.testing.assert_close(geo.intrinsics_from_rays(rays), intrinsics)
    # noisy rays still give a close fit
    generator = torch.Generator().manual_seed(8)
    noisy = rays + 1e-4 * torch.randn(rays.shape, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(geo.intrinsics_from_rays(noisy), intrinsics, atol=0.1, rtol=1e-2)


def test_average_point_norm():
    points = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [100.0, 0.0, 0.0]])
    valid = torch.tensor([True, True, False])
    torch.testing.assert_close(geo.average_point_norm(points, valid), torch.tensor(3.5))
    torch.testing.assert_close(geo.average_point_norm(points), torch.tensor(107.0 / 3))


@pytest.mark.parametrize("with_scale", [True, False])
def test_umeyama_recovers_known_similarity(with_scale):
    generator = torch.Generator().manual_seed(9)
    source = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    rotation = _random_rotations(1, seed=10)[0]
    scale = 2.5 if with_scale else 1.0
    translation = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    target = scale * source @ rotation.T + translation
    got_scale, got_rotation, got_translation = geo.umeyama(source, target, with_scale)
    torch.testing.assert_close(got_scale, torch.tensor(scale, dtype=torch.float64))
    torch.testing.assert_close(got_rotation, rotation)
    torch.testing.assert_close(got_translation, translation)


def test_umeyama_reflection_is_not_returned_and_errors():
    generator = torch.Generator().manual_seed(11)
    source = torch.randn(30, 3, generator=generator)
    mirrored = source * torch.tensor([1.0, 1.0, -1.0])
    _, rotation, _ = geo.umeyama(source, mirrored)
    assert torch.linalg.det(rotation.double()).item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        geo.umeyama(source, source[:5])
    with pytest.raises(ValueError, match="coincide"):
        geo.umeyama(torch.ones(4, 3), source[:4])
    with pytest.raises(ValueError, match="weights"):
        geo.umeyama(source, source, weights=-torch.ones(30))


def test_weighted_umeyama_ignores_zero_weight_outliers():
    generator = torch.Generator().manual_seed(12)
    source = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    rotation = _random_rotations(1, seed=13)[0]
    target = source @ rotation.T + torch.tensor([0.5, 0.0, -1.0], dtype=torch.float64)
    target[:10] += 5 * torch.randn(10, 3, generator=generator, dtype=torch.float64)
    weights = torch.ones(40, dtype=torch.float64)
    _, unweighted, _ = geo.umeyama(source, target, with_scale=False)
    assert not torch.allclose(unweighted, rotation, atol=1e-3)  # the outliers pull it away
    weights[:10] = 0.0
    _, weighted, translation = geo.umeyama(source, target, with_scale=False, weights=weights)
    torch.testing.assert_close(weighted, rotation)
    torch.testing.assert_close(translation, torch.tensor([0.5, 0.0, -1.0], dtype=torch.float64))
    # uniform weights of any total are the unweighted fit
    _, uniform, _ = geo.umeyama(source, target, with_scale=False, weights=3 * torch.ones(40))
    torch.testing.assert_close(uniform, unweighted)
