"""Dense depth fitted to sparse SfM points, and multi-view consistency on exact geometry."""

from pathlib import Path

import numpy as np
import pytest

from pixio_3d.sfm.bundle_adjust import SparseDepth
from pixio_3d.sfm.depth_fit import _median, fit_depth_to_points, fit_view_depth
from pixio_3d.sfm.fusion import consistency

H, W = 48, 64
ROWS, COLS = np.mgrid[0:H, 0:W]
TRUE = 2.0 + COLS / W + 0.5 * ROWS / H  # a tilted plane, metres


def _points(count, seed=0, region=(0, W, 0, H)):
    rng = np.random.default_rng(seed)
    pixels = np.stack(
        [rng.uniform(region[0], region[1], count), rng.uniform(region[2], region[3], count)], 1
    )
    return pixels, TRUE[pixels[:, 1].astype(int), pixels[:, 0].astype(int)]


@pytest.mark.parametrize(
    "network, tolerance",
    [(0.5 * TRUE - 0.3, 1e-9), (1.3 * TRUE, 1e-9), (TRUE * (1 + 0.2 * COLS / W), 0.01)],
    ids=["affine", "scale", "low-frequency"],
)
def test_fit_recovers_the_depth_from_points(network, tolerance):
    pixels, z = _points(120)
    fitted, fit = fit_view_depth(network, pixels, z)
    assert np.median(np.abs(fitted - TRUE) / TRUE) <= tolerance, fit
    assert fit.points == 120 and fit.after <= fit.before


def test_cross_validation_keeps_a_plain_scale_for_clustered_points():
    """Points of one small patch: a shift or a smooth field would bend the rest of the view."""
    network = 1.3 * TRUE
    pixels, z = _points(80, region=(5, 15, 5, 12))
    z = z * np.exp(np.random.default_rng(1).normal(0, 0.01, len(z)))  # SfM noise
    fitted, fit = fit_view_depth(network, pixels, z)
    assert np.median(np.abs(fitted - TRUE) / TRUE) < 0.02, fit


def test_few_points_keep_the_network_depth_and_every_view_is_reported():
    depth = np.stack([TRUE, 2 * TRUE])
    pixels, z = _points(2)
    sparse = SparseDepth(np.array([1, 1]), pixels, z)
    fitted, report = fit_depth_to_points(depth, sparse)
    np.testing.assert_array_equal(fitted, depth)  # 0 and 2 points: nothing to fit
    assert [fit.points for fit in report] == [0, 2]


def _two_cameras():
    k = np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]])
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[1, 0, 3] = 0.3  # a baseline along x
    depth = np.full((2, H, W), 3.0)  # a fronto-parallel wall 3 m away: z is 3 in both
    return depth, np.stack([k, k]), poses


def test_consistent_views_agree_and_a_wrong_patch_is_dropped():
    depth, intrinsics, poses = _two_cameras()
    exact = consistency(depth, intrinsics, poses)
    overlap = exact.seen[0] > 0
    assert overlap.mean() > 0.5 and (exact.agree[0][overlap] == 1).all()
    assert np.allclose(exact.support[0][overlap], 0.75) and np.allclose(
        exact.support[0][~overlap], 0.5
    )
    assert exact.keep.all()
    wrong = depth.copy()
    wrong[1, 10:30, 10:30] = 2.0  # in front of the wall: contradicts what view 0 sees there
    fused = consistency(wrong, intrinsics, poses)
    bad = fused.keep[1, 10:30, 10:30]
    assert (fused.seen[1, 10:30, 10:30] == 1).all() and not bad.any()
    assert fused.keep[1, 35:, 35:].all()  # the rest of view 1 still agrees
    invalid = depth.copy()
    invalid[0, :, :5] = np.nan
    assert not consistency(invalid, intrinsics, poses).keep[0, :, :5].any()


def test_fusion_modes_keep_what_they_say():
    depth, intrinsics, poses = _two_cameras()
    wrong = depth.copy()
    wrong[1, 10:30, 10:30] = 2.0
    fused = consistency(wrong, intrinsics, poses)
    consistent, verified, every = (fused.kept(m) for m in ("consistent", "verified", "all"))
    np.testing.assert_array_equal(consistent, fused.keep)
    unverified = fused.seen == 0
    assert consistent[unverified].all() and not verified[unverified].any()
    np.testing.assert_array_equal(verified, fused.keep & ~unverified)
    assert verified.sum() < consistent.sum() < every.sum() == every.size
    single = consistency(depth[:1], intrinsics[:1], poses[:1])
    assert single.kept("verified").all()  # one view: nothing to verify against, all kept
    with pytest.raises(ValueError, match="fusion mode must be one of"):
        fused.kept("strict")


def _reference_consistency(depth_z, intrinsics, cam2world, rel_tol=0.05):
    """The rule of :mod:`pixio_3d.sfm.fusion` pixel by pixel and view by view."""
    views, height, width = depth_z.shape
    seen = np.zeros(depth_z.shape, int)
    agree = np.zeros(depth_z.shape, int)
    for i in range(views):
        for r in range(height):
            for c in range(width):
                z = depth_z[i, r, c]
                if not (np.isfinite(z) and z > 0):
                    continue
                local = z * np.linalg.solve(intrinsics[i], [c + 0.5, r + 0.5, 1.0])
                world = cam2world[i, :3, :3] @ local + cam2world[i, :3, 3]
                for j in range(views):
                    other = np.linalg.solve(cam2world[j], np.append(world, 1.0))[:3]
                    if j == i or other[2] <= 1e-9:
                        continue
                    u, v, _ = intrinsics[j] @ other / other[2]
                    if not (0 <= u < width and 0 <= v < height):
                        continue
                    surface = depth_z[j, int(v), int(u)]
                    if not (np.isfinite(surface) and surface > 0):
                        continue
                    difference = (other[2] - surface) / surface
                    if difference <= rel_tol:  # not behind j's surface: j sees the point
                        seen[i, r, c] += 1
                        agree[i, r, c] += abs(difference) <= rel_tol
    return seen, agree


def test_consistency_counts_match_a_pixel_by_pixel_reference():
    """Three views of a noisy slanted wall with holes, a patch in front and one view turned:
    the vectorised counts equal the plain loops over pixels and views."""
    rng = np.random.default_rng(3)
    height, width = 12, 16
    k = np.array([[14.0, 0, width / 2], [0, 13.0, height / 2], [0, 0, 1]])
    intrinsics = np.stack([k, k * [[1.1], [1.0], [1.0]], k])
    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[1, :3, 3] = [0.25, 0.0, 0.05]
    angle = np.deg2rad(8)
    poses[2, :3, :3] = [
        [np.cos(angle), 0, np.sin(angle)],
        [0, 1, 0],
        [-np.sin(angle), 0, np.cos(angle)],
    ]
    poses[2, :3, 3] = [-0.3, 0.1, 0.0]
    cols = np.arange(width)[None, :]
    depth = (2.0 + 0.04 * cols + np.zeros((3, height, 1))) * rng.uniform(
        0.96, 1.04, (3, height, width)
    )
    depth[0, 2:5, 3:7] = 1.4  # in front of the wall
    depth[1, :, :2] = np.nan
    depth[2, 7:, 10:] = 0.0
    fused = consistency(depth, intrinsics, poses)
    seen, agree = _reference_consistency(depth, intrinsics, poses)
    assert seen.sum() > 0.5 * seen.size and 0 < agree.sum() < seen.sum()  # a real mixture
    np.testing.assert_array_equal(fused.seen, seen)
    np.testing.assert_array_equal(fused.agree, agree)


def test_the_fits_median_is_numpys():
    rng = np.random.default_rng(0)
    for count in (1, 2, 3, 10, 11, 200, 201):
        values = rng.normal(size=count)
        assert _median(values) == np.median(values)
    assert _median(np.array([3.0, 1.0, 2.0, 2.0])) == 2.0  # ties, an even count


def test_a_fit_does_not_extrapolate_beyond_the_points_corrections():
    """A view of the COLMAP benchmark (4 scenes at 16 views, the demo's tiny MapAnything model):
    126 bundle-adjusted points, a few near ones 3-5x closer than the network says. The robust
    scale and shift (1.59, -1.63 m) with the smooth field on top put a corner of the view at
    1,744 m, where the farthest SfM point is 4.5 m away; no pixel may be corrected by more than
    most of the points are."""
    case = np.load(Path(__file__).parent / "data" / "depth_fit_extrapolation.npz")
    depth, pixels, z = (case[key].astype(np.float64) for key in ("depth", "pixels", "z"))
    fitted, fit = fit_view_depth(depth, pixels, z)
    assert fit.model == "smooth" and fit.points == 126  # the field that extrapolated
    assert 0 < fitted.min() and fitted.max() < 2 * z.max(), (fitted.min(), fitted.max())
    correction = fitted / depth
    assert correction.max() / correction.min() < 20  # the points need 0.2-1.5 (7x); was ~400x
    assert fit.after < 0.2  # and the points are still fitted (median error, in-sample)
