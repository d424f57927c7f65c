"""pixio_3d.export: every writer's output is read back by the real library (open3d, trimesh,
pycolmap, PIL)."""

import json

import numpy as np
import open3d as o3d
import pycolmap
import pytest
import torch
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from pixio_3d import export
from pixio_3d.export import preview
from pixio_3d.export.depth_maps import COLOUR_BAR_ROWS
from pixio_3d.geometry import matrix_to_quaternion

HEIGHT, WIDTH = 48, 64


def _cameras(views: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (views, 1, 1))
    poses[:, :3, :3] = Rotation.random(views, random_state=seed).as_matrix()
    poses[:, :3, 3] = rng.normal(size=(views, 3))
    intrinsics = np.array([[50.0, 0, 32.0], [0, 52.0, 24.0], [0, 0, 1]])
    return poses, intrinsics


def _cloud(count: int = 2000, outliers: int = 20, seed: int = 0):
    """A dense unit cube of points plus a few far-away outliers."""
    rng = np.random.default_rng(seed)
    inliers = rng.random((count, 3))
    far = rng.normal(size=(outliers, 3))
    far = 20 * far / np.linalg.norm(far, axis=1, keepdims=True)
    points = np.concatenate([inliers, far])
    colors = rng.integers(0, 256, size=(len(points), 3), dtype=np.uint8)
    return points, colors


def _filter_and_write(path, points, colors=None, confidence=None, overwrite=False, **filters):
    """The two steps of a filtered PLY: filter_point_cloud, then write_ply; returns the counts."""
    cloud = export.filter_point_cloud(points, colors, confidence, **filters)
    export.write_ply(path, cloud.points, cloud.colors, cloud.confidence, overwrite=overwrite)
    return cloud.counts


def _no_temporaries(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name or p.name.endswith(".old")]


def test_ply_filters_and_reads_back(tmp_path):
    points, colors = _cloud()
    confidence = np.linspace(0, 1, len(points))
    confidence[-20:] = 1.0  # confident outliers must go through the statistical filter
    points[5] = np.nan
    counts = _filter_and_write(
        tmp_path / "cloud.ply", torch.from_numpy(points), colors, confidence, min_confidence=0.25
    )
    assert counts["input"] == 2020 and counts["finite"] == 2019
    assert counts["confident"] == int((confidence >= 0.25).sum()) - (confidence[5] >= 0.25)
    assert counts["voxel"] == counts["confident"]
    assert counts["confident"] - 20 - 20 <= counts["written"] <= counts["confident"] - 20
    cloud = o3d.io.read_point_cloud(str(tmp_path / "cloud.ply"))
    xyz = np.asarray(cloud.points)
    assert len(xyz) == counts["written"]
    assert np.abs(xyz).max() <= 1.0 + 1e-6  # all far outliers removed
    # colours survive exactly for the points that remain
    kept = {tuple(np.round(p, 5)): c for p, c in zip(points, colors, strict=True)}
    stored = np.round(np.asarray(cloud.colors) * 255).astype(np.uint8)
    assert all(
        (kept[tuple(np.round(p, 5))] == c).all() for p, c in zip(xyz[:50], stored, strict=False)
    )
    tensor_cloud = o3d.t.io.read_point_cloud(str(tmp_path / "cloud.ply"))
    assert "confidence" in tensor_cloud.point
    assert float(tensor_cloud.point.confidence.numpy().min()) >= 0.25
    assert _no_temporaries(tmp_path) == []


def test_ply_voxel_float_colors_overwrite_and_errors(tmp_path):
    points, _ = _cloud(outliers=0)
    colors = np.full((len(points), 3), 0.5)
    path = tmp_path / "voxels.ply"
    counts = _filter_and_write(path, points, colors, voxel_size=0.25, outlier_nb_neighbors=0)
    assert counts["voxel"] == counts["written"] <= 4**3
    assert np.allclose(np.asarray(o3d.io.read_point_cloud(str(path)).colors), 128 / 255)
    with pytest.raises(FileExistsError, match="overwrite"):
        _filter_and_write(path, points, colors)
    _filter_and_write(path, points[:100], colors[:100], overwrite=True)
    assert len(o3d.io.read_point_cloud(str(path)).points) <= 100
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _filter_and_write(tmp_path / "x.ply", points, colors * 255)
    with pytest.raises(ValueError, match="no points left"):
        _filter_and_write(
            tmp_path / "x.ply", points, None, np.zeros(len(points)), min_confidence=0.5
        )
    assert not (tmp_path / "x.ply").exists() and _no_temporaries(tmp_path) == []


def test_glb_scene_reads_back_with_frusta_in_gltf_frame(tmp_path):
    poses, intrinsics = _cameras()
    points, colors = _cloud(count=500, outliers=0)
    path = export.write_glb_scene(
        tmp_path / "scene.glb", points, colors, poses, intrinsics, (HEIGHT, WIDTH), 0.2
    )
    scene = trimesh.load(path)
    assert isinstance(scene, trimesh.Scene)
    cloud = scene.geometry["points"]
    flip = export.OPENCV_TO_GLTF[:3, :3]
    np.testing.assert_allclose(cloud.vertices, points @ flip.T, atol=1e-5)
    np.testing.assert_array_equal(cloud.colors[:, :3], colors)
    for index, pose in enumerate(poses):
        frustum = scene.geometry[f"camera_{index:03d}"]
        vertices = np.asarray(frustum.vertices)
        apex = flip @ pose[:3, 3]
        assert np.min(np.linalg.norm(vertices - apex, axis=1)) < 1e-5
        # the image corner (W, H) at depth 0.2 is a frustum vertex
        corner = np.linalg.inv(intrinsics) @ [WIDTH, HEIGHT, 1.0] * 0.2
        corner_world = flip @ (pose[:3, :3] @ corner + pose[:3, 3])
        assert np.min(np.linalg.norm(vertices - corner_world, axis=1)) < 1e-5
    assert _no_temporaries(tmp_path) == []


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_model_round_trip(tmp_path, binary):
    poses, intrinsics = _cameras(views=3, seed=1)
    k = np.stack([intrinsics, intrinsics, intrinsics * [[1.1], [1.1], [1]]])
    rng = np.random.default_rng(2)
    points = rng.normal(size=(40, 3))
    # observations: every point in front of images 0 and 2, at its projection
    observations = ([], [], [])
    for image_index in (0, 2):
        local = (points - poses[image_index, :3, 3]) @ poses[image_index, :3, :3]
        in_front = np.flatnonzero(local[:, 2] > 0.1)
        pixels = local[in_front] @ k[image_index].T
        observations[0].extend(in_front)
        observations[1].extend([image_index] * len(in_front))
        observations[2].extend(pixels[:, :2] / pixels[:, 2:3])
    colors = rng.integers(0, 256, size=(40, 3), dtype=np.uint8)
    names = ["a.png", "b.png", "c.png"]
    out = export.write_colmap_model(
        tmp_path / "sparse", poses, k, names, (HEIGHT, WIDTH), points, colors, observations, binary
    )
    suffix = ".bin" if binary else ".txt"
    assert {"cameras", "images", "points3D"} <= {p.stem for p in out.glob(f"*{suffix}")}
    model = pycolmap.Reconstruction(out)
    assert model.num_cameras() == 2 and model.num_images() == 3 and model.num_points3D() == 40
    for index, name in enumerate(names):
        image = model.find_image_with_name(name)
        camera = model.cameras[image.camera_id]
        assert camera.model.name == "PINHOLE" and (camera.width, camera.height) == (WIDTH, HEIGHT)
        np.testing.assert_allclose(camera.params, k[index][[0, 1, 0, 1], [0, 1, 2, 2]])
        world_to_camera = image.cam_from_world().matrix()
        cam2world = np.linalg.inv(np.vstack([world_to_camera, [0, 0, 0, 1]]))
        np.testing.assert_allclose(cam2world, poses[index], atol=1e-9)
        # pycolmap's quaternion is (x, y, z, w) of world-to-camera; ours is (w, x, y, z)
        xyzw = np.asarray(image.cam_from_world().rotation.quat)
        wxyz = matrix_to_quaternion(torch.from_numpy(poses[index, :3, :3].T)).numpy()
        assert abs(np.dot(xyzw[[3, 0, 1, 2]], wxyz)) == pytest.approx(1.0)
        # exported points project back onto their recorded pixels
        for point2d in image.points2D:
            xyz = model.points3D[point2d.point3D_id].xyz
            projected = camera.img_from_cam(image.cam_from_world() * xyz)
            assert np.abs(projected - point2d.xy).max() < 1e-3
    assert model.find_image_with_name("b.png").num_points2D() == 0
    stored = {tuple(np.round(p.xyz, 9)): p.color for p in model.points3D.values()}
    for point, color in zip(points, colors, strict=True):
        np.testing.assert_array_equal(stored[tuple(np.round(point, 9))], color)
    track_lengths = np.bincount(np.asarray(observations[0]), minlength=len(points))
    for point in model.points3D.values():
        index = [tuple(np.round(p, 9)) for p in points].index(tuple(np.round(point.xyz, 9)))
        assert len(point.track.elements) == track_lengths[index]
    assert track_lengths.sum() == sum(model.image(i).num_points2D() for i in model.images)
    if not binary:  # COLMAP's text format lists the quaternion scalar-first
        line = next(
            row
            for row in (out / "images.txt").read_text().splitlines()
            if row and not row.startswith("#") and row.endswith("a.png")
        )
        qw_qx_qy_qz = np.array(line.split()[1:5], dtype=float)
        wxyz = matrix_to_quaternion(torch.from_numpy(poses[0, :3, :3].T)).numpy()
        assert abs(np.dot(qw_qx_qy_qz, wxyz)) == pytest.approx(1.0)
    assert _no_temporaries(tmp_path) == []


def test_colmap_overwrite_and_bad_input(tmp_path):
    poses, intrinsics = _cameras(views=2)
    target = tmp_path / "sparse"
    export.write_colmap_model(target, poses, intrinsics, ["a", "b"], (HEIGHT, WIDTH))
    with pytest.raises(FileExistsError, match="overwrite"):
        export.write_colmap_model(target, poses, intrinsics, ["a", "b"], (HEIGHT, WIDTH))
    export.write_colmap_model(
        target, poses[:1], intrinsics, ["only"], (HEIGHT, WIDTH), overwrite=True
    )
    assert pycolmap.Reconstruction(target).num_images() == 1
    with pytest.raises(ValueError, match="distinct"):
        export.write_colmap_model(tmp_path / "x", poses, intrinsics, ["a", "a"], (HEIGHT, WIDTH))
    skewed = intrinsics.copy()
    skewed[0, 1] = 0.3
    with pytest.raises(ValueError, match="skew"):
        export.write_colmap_model(tmp_path / "x", poses, skewed, ["a", "b"], (HEIGHT, WIDTH))
    assert _no_temporaries(tmp_path) == []


def test_depth_map_png_and_npy(tmp_path):
    rows, cols = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
    depth = 1.0 + cols / WIDTH * 4
    depth[0, 0] = np.nan
    confidence = np.ones_like(depth)
    confidence[:, :4] = 0.0
    paths = export.save_depth_map(
        tmp_path / "depth_000.png", torch.from_numpy(depth), confidence, min_confidence=0.5
    )
    full = np.asarray(Image.open(paths["png"]))
    assert full.shape == (HEIGHT + COLOUR_BAR_ROWS, WIDTH, 3) and full.dtype == np.uint8
    image, bar = full[:HEIGHT], full[HEIGHT:]
    assert not np.array_equal(bar[4, 2], bar[4, -3])  # the bar runs from far to near colours
    assert (bar[10:] > 200).any()  # with labels (in metres)
    assert (image[:, :4] == 0).all()  # low confidence -> black
    assert not (image[:, 10:] == 0).all(axis=-1).any()
    assert not np.array_equal(image[5, 10], image[5, 60])  # near and far differ
    np.testing.assert_array_equal(np.load(paths["depth"]), depth.astype(np.float32))
    np.testing.assert_array_equal(np.load(paths["confidence"]), confidence.astype(np.float32))
    assert paths["depth"].name == "depth_000.npy"
    assert _no_temporaries(tmp_path) == []


def test_preview_numpy_splat_shows_the_nearest_point(tmp_path):
    # a red square at z = 2 in front of a blue square at z = 4, seen from the origin
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 60), np.linspace(-1, 1, 60)), -1).reshape(-1, 2)
    near = np.column_stack([0.5 * grid, np.full(len(grid), 2.0)])
    far = np.column_stack([2 * grid, np.full(len(grid), 4.0)])
    points = np.concatenate([far, near])
    colors = np.concatenate(
        [np.tile([0, 0, 255], (len(far), 1)), np.tile([255, 0, 0], (len(near), 1))]
    )
    intrinsics = np.array([[40.0, 0, 40.0], [0, 40.0, 30.0], [0, 0, 1]])
    image = preview.render_point_cloud_preview(
        tmp_path / "preview.png", points, colors.astype(np.uint8), 80, 60, np.eye(4), intrinsics, 3
    )
    assert image.shape == (60, 80, 3)
    assert tuple(image[30, 40]) == (255, 0, 0)  # the centre sees the near square
    assert tuple(image[30, 25]) == (0, 0, 255)  # the far square shows around it
    assert tuple(image[0, 0]) == (255, 255, 255)  # background
    assert Image.open(tmp_path / "preview.png").size == (80, 60)
    default_view = preview.render_point_cloud_preview(tmp_path / "auto.png", points, None, 64, 48)
    assert (default_view != 255).any()
    assert _no_temporaries(tmp_path) == []


def test_preview_open3d_backend(tmp_path):
    points, colors = _cloud(count=3000, outliers=0)
    try:
        image = preview.render_point_cloud_preview(
            tmp_path / "o3d.png", points, colors, 64, 48, backend="open3d"
        )
    except RuntimeError as error:  # no Vulkan driver on this machine
        pytest.skip(f"open3d offscreen rendering unavailable: {error}")
    assert image.shape == (48, 64, 3)
    assert Image.open(tmp_path / "o3d.png").size == (64, 48)
    assert (image != 255).any(axis=-1).mean() > 0.05  # the cube covers part of the view


def _project_opengl(transform_matrix, fl_x, fl_y, cx, cy, points):
    """Pixels of world points as nerfstudio's OpenGL cameras see them (x right, y up, -z ahead)."""
    local = (np.linalg.inv(transform_matrix) @ np.c_[points, np.ones(len(points))].T).T
    ahead = -local[:, 2]
    return np.stack([cx + fl_x * local[:, 0] / ahead, cy - fl_y * local[:, 1] / ahead], -1), ahead


def test_nerfstudio_transforms_project_like_the_opencv_cameras(tmp_path):
    poses, intrinsics = _cameras(3)
    points = poses[0, :3, 3] + poses[0, :3, :3] @ np.array([0.1, -0.2, 3.0])  # before camera 0
    path = export.write_nerfstudio_transforms(
        tmp_path / "transforms.json", poses, intrinsics, ["images/a.png", "images/b.png",
        "images/c.png"], (HEIGHT, WIDTH), ply_file_path="points.ply",
    )  # fmt: skip
    meta = json.loads(path.read_text())
    assert (meta["w"], meta["h"], meta["camera_model"]) == (WIDTH, HEIGHT, "OPENCV")
    assert meta["ply_file_path"] == "points.ply"
    assert [f["file_path"] for f in meta["frames"]] == [
        "images/a.png",
        "images/b.png",
        "images/c.png",
    ]
    assert np.allclose(meta["applied_transform"], np.eye(4)[:3])
    for pose, frame in zip(poses, meta["frames"], strict=True):
        world = points[None]
        expected = intrinsics @ (np.linalg.inv(pose) @ np.r_[points, 1.0])[:3]
        pixels, ahead = _project_opengl(
            np.array(frame["transform_matrix"]), meta["fl_x"], meta["fl_y"], meta["cx"],
            meta["cy"], world,
        )  # fmt: skip
        assert np.allclose(ahead[0], expected[2])  # same depth, now along -z
        assert np.allclose(pixels[0], expected[:2] / expected[2])
        assert np.allclose(np.array(frame["transform_matrix"])[:3, 3], pose[:3, 3])

    # per-view intrinsics go into the frames; existing files need overwrite; bad input is named
    varied = np.stack([intrinsics, intrinsics * [[2], [2], [1]], intrinsics])
    export.write_nerfstudio_transforms(
        path, poses, varied, ["a", "b", "c"], (HEIGHT, WIDTH), overwrite=True
    )
    meta = json.loads(path.read_text())
    assert "fl_x" not in meta and [f["fl_x"] for f in meta["frames"]] == [50.0, 100.0, 50.0]
    with pytest.raises(FileExistsError, match="overwrite"):
        export.write_nerfstudio_transforms(path, poses, intrinsics, ["a", "b", "c"], (4, 4))
    with pytest.raises(ValueError, match="3 image paths"):
        export.write_nerfstudio_transforms(tmp_path / "x.json", poses, intrinsics, ["a"], (4, 4))
