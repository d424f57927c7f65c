"""COLMAP baseline (pycolmap incremental SfM) on a rendered scene with exact ground truth.

The scene: 16 views at 256x192 on a 90-degree arc (~6 degrees apart), a case COLMAP handles.
Measured on this scene (known K, contrast stretch, 1 thread): 16/16 registered, AUC@5 and
AUC@30 1.00, Sim(3) ATE ~5 mm. Over six random 90-degree-arc scenes AUC@30 ranged 0.01-1.0
(the repeated wall texture folds some models), so the thresholds below hold for this scene.
"""

import numpy as np
import pycolmap
import pytest
import torch
from PIL import Image
from scipy.spatial import cKDTree

from pixio_3d.data.scenes import SceneConfig, build_scene, render_scene, scene_seed
from pixio_3d.evaluation.metrics import absolute_trajectory_error, pose_metrics
from pixio_3d.geometry import umeyama
from pixio_3d.sfm.colmap_baseline import run_colmap_sfm, stretch_contrast

HEIGHT, WIDTH, VIEWS = 192, 256, 16


@pytest.fixture(scope="module", autouse=True)
def quiet_colmap():
    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 3
    yield
    pycolmap.logging.minloglevel = level


@pytest.fixture(scope="module")
def scene():
    spec = build_scene(scene_seed(11, 1), VIEWS, SceneConfig(camera_arc_degrees=90.0))
    return render_scene(spec, HEIGHT, WIDTH)


def _world_points(views) -> np.ndarray:
    rows, cols = np.mgrid[0:HEIGHT:2, 0:WIDTH:2]
    pixels = np.stack([cols + 0.5, rows + 0.5, np.ones_like(cols, dtype=float)], -1)
    clouds = []
    for depth, matrix, pose in zip(views.depth, views.intrinsics, views.cam2world, strict=True):
        z = depth[rows, cols]
        camera = pixels[z > 0] @ np.linalg.inv(matrix).T * z[z > 0, None]
        clouds.append(camera @ pose[:3, :3].T + pose[:3, 3])
    return np.concatenate(clouds)


def test_dense_arc_reconstructs_with_accurate_poses_and_points(scene, tmp_path):
    paths = []
    for index, rgb in enumerate(scene.rgb):
        paths.append(tmp_path / f"view_{index}.png")
        Image.fromarray(rgb).save(paths[-1])
    result = run_colmap_sfm(
        paths, tmp_path / "colmap", scene.intrinsics, contrast_stretch=True, num_threads=1
    )
    registered = result["registered"]
    assert result["status"] == "ok" and result["num_registered"] == registered.sum() >= 14
    assert np.isfinite(result["cam2world"][registered]).all()
    assert np.isnan(result["cam2world"][~registered]).all()
    # known intrinsics are held fixed
    np.testing.assert_allclose(result["intrinsics"][registered], scene.intrinsics[registered])

    poses = np.where(registered[:, None, None], result["cam2world"], np.eye(4))
    metrics = pose_metrics(poses, scene.cam2world, registered=registered)
    assert metrics["auc_30"] > 0.9 and metrics["auc_5"] > 0.8, metrics
    assert absolute_trajectory_error(poses, scene.cam2world, registered) < 0.05  # metres

    # the sparse points, moved by the Sim(3) that aligns the cameras, lie on the GT surfaces
    scale, rotation, translation = (
        value.numpy()
        for value in umeyama(
            torch.from_numpy(result["cam2world"][registered, :3, 3]),
            torch.from_numpy(scene.cam2world[registered, :3, 3]),
        )
    )
    points = scale * result["points"] @ rotation.T + translation
    distances, _ = cKDTree(_world_points(scene)).query(points)
    assert len(points) > 100 and np.median(distances) < 0.03
    assert result["colors"].shape == (len(points), 3) and result["colors"].dtype == np.uint8
    assert (tmp_path / "colmap" / "database.db").is_file()  # work_dir is kept
    assert result["seconds"] >= sum(result["stage_seconds"].values()) > 0


def test_failure_is_a_result_not_an_error(scene, tmp_path):
    flat = np.full((3, 96, 128, 3), 128, np.uint8)
    result = run_colmap_sfm(flat, tmp_path / "flat", shared_intrinsics=True)
    assert result["status"] == "no_reconstruction" and result["num_registered"] == 0
    assert not result["registered"].any() and np.isnan(result["cam2world"]).all()
    assert result["points"].shape == (0, 3) and (result["keypoints"] == 0).all()
    assert result["reconstruction"] is None

    # two views of unrelated noise: many keypoints, no verified geometry, nothing registers
    rng = np.random.default_rng(0)
    noise = np.stack(
        [
            np.asarray(Image.fromarray(cells).resize((128, 96), Image.Resampling.BICUBIC))
            for cells in rng.integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
        ]
    )
    paths = [tmp_path / f"noise_{k}.jpg" for k in range(2)]
    for path, image in zip(paths, noise, strict=True):
        Image.fromarray(image).save(path, quality=95)
    result = run_colmap_sfm(paths, None, scene.intrinsics[0], settings="sparse", num_threads=1)
    assert (result["keypoints"] > 200).all()  # the (linked, not copied) files were read
    assert result["num_registered"] == 0 and np.isnan(result["cam2world"]).all()

    # metrics score the failure as failed pairs
    poses = np.where(result["registered"][:, None, None], result["cam2world"], np.eye(4))
    failed = pose_metrics(poses, scene.cam2world[:2], registered=result["registered"])
    assert failed["auc_30"] == 0.0 and failed["registered_ratio"] == 0.0


def test_bad_input_and_reused_work_dir(tmp_path):
    images = np.full((2, 32, 32, 3), 100, np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        run_colmap_sfm(images.astype(np.float32), tmp_path / "a")
    with pytest.raises(ValueError, match="known_intrinsics"):
        run_colmap_sfm(images, tmp_path / "b", known_intrinsics=np.eye(3)[None].repeat(3, 0))
    with pytest.raises(ValueError, match="settings"):
        run_colmap_sfm(images, tmp_path / "c", settings="fast")
    with pytest.raises(ValueError, match="list of image paths"):
        run_colmap_sfm(str(tmp_path), tmp_path / "f")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        run_colmap_sfm([tmp_path / "missing.png"], tmp_path / "d")
    run_colmap_sfm(images, tmp_path / "e")
    with pytest.raises(FileExistsError, match="previous COLMAP run"):
        run_colmap_sfm(images, tmp_path / "e")
    assert run_colmap_sfm(images, tmp_path / "e", overwrite=True)["num_registered"] == 0


def test_photo_files_for_colmap_are_read_with_the_one_reader(tmp_path):
    """16-bit and EXIF-rotated photos reach COLMAP as the pixels pixio-recon sees, not as the
    all-white image a plain PIL convert("RGB") makes of a 16-bit PNG."""
    from pixio_3d.sfm.colmap_baseline import _prepare_images

    gray = np.tile(np.linspace(20, 230, 48).astype(np.uint8), (32, 1))
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit PNG
    Image.fromarray(gray).save(tmp_path / "plain.png")
    rotated = Image.fromarray(np.stack([gray] * 3, -1)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: stored turned 90 degrees counter-clockwise
    rotated.save(tmp_path / "rotated.png", exif=exif)
    paths = [tmp_path / name for name in ("deep.png", "plain.png", "rotated.png")]
    (tmp_path / "images").mkdir()
    names = _prepare_images(paths, tmp_path / "images", contrast_stretch=True)
    deep, plain, upright = (np.asarray(Image.open(tmp_path / "images" / n)) for n in names)
    assert deep.std() > 50  # a gradient, not a white page
    np.testing.assert_array_equal(deep, plain)
    np.testing.assert_array_equal(upright, plain)


def test_stretch_contrast_maps_percentiles_to_full_range():
    rng = np.random.default_rng(0)
    dark = rng.integers(20, 70, (48, 64, 3)).astype(np.uint8)
    stretched = stretch_contrast(dark)
    assert stretched.dtype == np.uint8 and stretched.shape == dark.shape
    assert np.percentile(stretched, 1) <= 3 and np.percentile(stretched, 99) >= 252
    # order of intensities is kept; a flat image is left alone
    order = np.argsort(dark.ravel(), kind="stable")
    assert (np.diff(stretched.ravel()[order].astype(int)) >= 0).all()
    flat = np.full((8, 8, 3), 40, np.uint8)
    np.testing.assert_array_equal(stretch_contrast(flat), flat)


def test_stretch_contrast_equals_the_float_formula():
    """The histogram + lookup-table version gives the pixels of the direct formula (numpy's
    percentiles, float scaling of every pixel) on images of many sizes and histograms."""

    def direct(image: np.ndarray) -> np.ndarray:
        low, high = np.percentile(image, (1.0, 99.0))
        if high - low < 1:
            return image.copy()
        scaled = (image.astype(np.float32) - low) * (255.0 / (high - low))
        return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)

    rng = np.random.default_rng(3)
    for _ in range(200):
        height, width = rng.integers(1, 50, 2)
        shape = (height, width, 3) if rng.random() < 0.8 else (height, width)
        spread = rng.beta(rng.uniform(0.3, 3), rng.uniform(0.3, 3), shape)
        image = (spread * rng.integers(1, 256)).astype(np.uint8)
        np.testing.assert_array_equal(stretch_contrast(image), direct(image))
    with pytest.raises(ValueError, match="uint8"):
        stretch_contrast(np.zeros((4, 4, 3), np.float32))
