"""Synthetic MuJoCo scenes: determinism, exact cross-view geometry, object ids, on-disk layout."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pixio_3d import geometry as geo
from pixio_3d.cli.scenes import main as scenes_main
from pixio_3d.data import (
    MultiViewDataset,
    find_scenes,
    read_cameras,
    read_scene,
    read_view,
    write_scene,
)
from pixio_3d.data.scenes import (
    SHAPES,
    SceneConfig,
    build_scene,
    generate_dataset,
    render_scene,
    scene_seed,
)

HEIGHT, WIDTH, VIEWS = 48, 64, 6
TINY = SceneConfig(texture_size=32, num_objects=(3, 5))


@pytest.fixture(scope="module")
def scene():
    spec = build_scene(3, VIEWS, TINY)
    return spec, render_scene(spec, HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate_dataset(root, 2, 5, HEIGHT, WIDTH, seed=7, config=TINY, progress=False)
    return root


def _lift(views, i: int, principal_shift: float = 0.0) -> np.ndarray:
    """World points (N, 3) of view i's valid pixels, through pixio_3d.geometry."""
    intrinsics = torch.from_numpy(views.intrinsics[i]).clone()
    intrinsics[:2, 2] += principal_shift
    depth = torch.from_numpy(views.depth[i]).double()
    points = geo.points_from_z_depth(depth, intrinsics)
    world = geo.transform_points(torch.from_numpy(views.cam2world[i]), points)
    return world[depth > 0].numpy()


def _reprojection_errors(views, i: int, j: int, principal_shift: float = 0.0) -> np.ndarray:
    """Signed relative z-depth error of view i's points against view j's depth map, where the
    point lands on a planar 2x2 patch of one object in view j (inverse depth is affine in the
    image on a plane, so its bilinear interpolation is exact there)."""
    world = _lift(views, i, principal_shift)
    world2cam = np.linalg.inv(views.cam2world[j])
    local = world @ world2cam[:3, :3].T + world2cam[:3, 3]
    uvw = local @ views.intrinsics[j].T
    x, y = uvw[:, 0] / uvw[:, 2] - 0.5, uvw[:, 1] / uvw[:, 2] - 0.5  # in pixel-index units
    col, row = np.floor(x).astype(int), np.floor(y).astype(int)
    inside = (local[:, 2] > 0.05) & (col >= 0) & (row >= 0) & (col < WIDTH - 1) & (row < HEIGHT - 1)
    z, x, y, col, row = local[inside, 2], x[inside], y[inside], col[inside], row[inside]
    corners = [(row, col), (row, col + 1), (row + 1, col), (row + 1, col + 1)]
    depth = np.stack([views.depth[j][r, c] for r, c in corners], 1).astype(np.float64)
    ids = np.stack([views.object_ids[j][r, c] for r, c in corners], 1)
    inverse = 1.0 / np.where(depth > 0, depth, 1.0)
    planar = (depth > 0).all(1) & (ids == ids[:, :1]).all(1)
    planar &= np.abs(
        inverse[:, 0] + inverse[:, 3] - inverse[:, 1] - inverse[:, 2]
    ) <= 1e-5 * inverse.min(1)
    fx, fy = x - col, y - row
    interpolated = (
        inverse[:, 0] * (1 - fx) * (1 - fy)
        + inverse[:, 1] * fx * (1 - fy)
        + inverse[:, 2] * (1 - fx) * fy
        + inverse[:, 3] * fx * fy
    )
    seen = 1.0 / interpolated[planar]
    return (z[planar] - seen) / seen


def test_same_seed_same_scene_different_seed_different_scene(scene):
    spec, views = scene
    again = build_scene(3, VIEWS, TINY)
    assert again.xml == spec.xml and again.assets == spec.assets
    rerendered = render_scene(again, HEIGHT, WIDTH)
    for name in ("rgb", "depth", "object_ids", "intrinsics", "cam2world"):
        np.testing.assert_array_equal(getattr(rerendered, name), getattr(views, name))
    other = build_scene(4, VIEWS, TINY)
    assert other.xml != spec.xml
    other_views = render_scene(other, HEIGHT, WIDTH)
    assert not np.array_equal(other_views.rgb, views.rgb)
    assert not np.allclose(other_views.cam2world, views.cam2world)


def test_rendered_arrays_have_documented_shapes_and_intrinsics(scene):
    spec, views = scene
    assert views.rgb.shape == (VIEWS, HEIGHT, WIDTH, 3) and views.rgb.dtype == np.uint8
    assert views.depth.shape == (VIEWS, HEIGHT, WIDTH) and views.depth.dtype == np.float32
    assert views.object_ids.shape == (VIEWS, HEIGHT, WIDTH)
    for k, camera in enumerate(spec.info["cameras"]):
        focal = 0.5 * HEIGHT / np.tan(np.radians(camera["fovy"]) / 2)
        expected = [[focal, 0, WIDTH / 2], [0, focal, HEIGHT / 2], [0, 0, 1]]
        np.testing.assert_allclose(views.intrinsics[k], expected, rtol=1e-6)
        # OpenCV pose: camera centre where it was placed, +z (optical axis) towards the target
        np.testing.assert_allclose(views.cam2world[k, :3, 3], camera["pos"], atol=1e-6)
        forward = np.subtract(camera["target"], camera["pos"])
        np.testing.assert_allclose(
            views.cam2world[k, :3, 2], forward / np.linalg.norm(forward), atol=1e-6
        )
        assert views.cam2world[k, 2, 1] < 0  # image y (down) points down in the world
        np.testing.assert_allclose(np.linalg.det(views.cam2world[k, :3, :3]), 1.0, atol=1e-9)


def test_depth_poses_and_intrinsics_agree_across_views(scene):
    _, views = scene
    pairs = [(i, j) for i in range(VIEWS) for j in range(VIEWS) if i != j]
    errors = np.concatenate([_reprojection_errors(views, i, j) for i, j in pairs])
    assert errors.size > 1000
    consistent = np.abs(errors) < 1e-3
    assert consistent.mean() > 0.9  # the rest are occluded in view j (behind its surface)
    assert np.median(np.abs(errors[consistent])) < 1e-5
    assert (errors < -1e-3).mean() < 0.01  # a point in front of what view j sees: a bug
    # negative control: the half-pixel principal-point bug breaks the agreement
    shifted = np.concatenate([_reprojection_errors(views, i, j, 0.5) for i, j in pairs])
    assert (np.abs(shifted) < 1e-3).mean() < 0.3


def test_object_ids_match_depth_and_geometry(scene):
    spec, views = scene
    np.testing.assert_array_equal(views.object_ids == 0, views.depth == 0)
    objects = spec.info["objects"]
    assert set(np.unique(views.object_ids)) <= set(range(len(objects) + 2))
    room = spec.info["room"]
    half_x, half_y = room["half_size"]
    for i in range(VIEWS):
        world = _lift(views, i)
        ids = views.object_ids[i][views.depth[i] > 0]
        on_room = world[ids == 1]
        distance_to_room = np.min(
            np.abs(
                [
                    on_room[:, 2],
                    on_room[:, 2] - room["wall_height"],
                    np.abs(on_room[:, 0]) - half_x,
                    np.abs(on_room[:, 1]) - half_y,
                ]
            ),
            axis=0,
        )
        assert np.median(distance_to_room) < 1e-4 and np.mean(distance_to_room < 0.01) > 0.99
        for obj in objects:
            points = world[ids == obj["id"]]
            # sum of the sizes bounds every primitive's centre-to-surface distance
            reach = max(sum(g["size"]) + np.linalg.norm(g["pos"]) for g in obj["geoms"])
            assert (np.linalg.norm(points - obj["pos"], axis=1) < reach + 0.02).all()


@pytest.mark.parametrize("texture_mode", ["photo", "builtin", "flat"])
def test_every_texture_mode_renders(texture_mode):
    config = SceneConfig(texture_mode=texture_mode, texture_size=16, num_objects=(2, 2))
    views = render_scene(build_scene(1, 2, config), 24, 32, shadows=True, antialias=True)
    assert views.rgb.std() > 5  # lit and textured, not a blank frame
    assert (views.object_ids >= 2).any()
    if texture_mode != "photo":  # same seed: same geometry and cameras, other textures
        photo = render_scene(build_scene(1, 2, replace(config, texture_mode="photo")), 24, 32)
        np.testing.assert_array_equal(views.depth, photo.depth)
        np.testing.assert_array_equal(views.cam2world, photo.cam2world)
        assert not np.array_equal(views.rgb, photo.rgb)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_compiles_with_one_body_per_object(shape):
    spec = build_scene(2, 2, SceneConfig(texture_size=16, shapes=(shape,), num_objects=(3, 3)))
    model = spec.compile()
    objects = spec.info["objects"]
    assert objects and {obj["shape"] for obj in objects} == {shape}
    assert model.nbody == len(objects) + 1  # render_scene maps geom -> body -> object id
    assert (
        model.ngeom == sum(len(obj["geoms"]) for obj in objects) + 5 + spec.info["room"]["ceiling"]
    )


def test_sky_is_background_id_zero_and_depth_zero():
    config = SceneConfig(
        texture_size=32, num_objects=(2, 3), wall_height=(0.3, 0.3), ceiling_probability=0.0
    )
    views = render_scene(build_scene(0, 3, config), HEIGHT, WIDTH)
    background = views.object_ids == 0
    assert background.mean() > 0.05
    np.testing.assert_array_equal(background, views.depth == 0)


def test_layout_round_trip(scene, tmp_path):
    spec, views = scene
    write_scene(
        tmp_path / "scene",
        rgb=views.rgb,
        depth=views.depth,
        intrinsics=views.intrinsics,
        cam2world=views.cam2world,
        object_ids=views.object_ids,
        scene_info=spec.info,
    )
    loaded = read_scene(tmp_path / "scene")
    np.testing.assert_array_equal(loaded["rgb"], views.rgb)
    np.testing.assert_array_equal(loaded["depth"], views.depth)
    np.testing.assert_array_equal(loaded["object_ids"], views.object_ids)
    np.testing.assert_array_equal(loaded["intrinsics"], views.intrinsics)
    np.testing.assert_array_equal(loaded["cam2world"], views.cam2world)
    covisibility = loaded["cameras"].covisibility
    assert covisibility.shape == (VIEWS, VIEWS) and np.allclose(np.diag(covisibility), 1)
    assert json.loads((tmp_path / "scene" / "scene.json").read_text())["seed"] == 3


def test_generated_dataset_matches_its_seeds(dataset_root):
    scenes = find_scenes(dataset_root)
    assert [p.name for p in scenes] == ["scene_0000", "scene_0001"]
    info = json.loads((scenes[1] / "scene.json").read_text())
    assert info["seed"] == scene_seed(7, 1) and info["index"] == 1
    views = render_scene(build_scene(info["seed"], 5, TINY), HEIGHT, WIDTH)
    loaded = read_scene(scenes[1])
    np.testing.assert_array_equal(loaded["rgb"], views.rgb)
    np.testing.assert_array_equal(loaded["depth"], views.depth)


def test_multiview_dataset_samples(dataset_root):
    dataset = MultiViewDataset(dataset_root, 3, samples_per_scene=2, seed=1)
    assert len(dataset) == 4
    item = dataset[0]
    expected = {
        "images": ((3, 3, HEIGHT, WIDTH), torch.float32),
        "depth": ((3, HEIGHT, WIDTH), torch.float32),
        "valid_mask": ((3, HEIGHT, WIDTH), torch.bool),
        "intrinsics": ((3, 3, 3), torch.float32),
        "cam2world": ((3, 4, 4), torch.float32),
        "object_ids": ((3, HEIGHT, WIDTH), torch.int64),
        "view_indices": ((3,), torch.int64),
    }
    for key, (shape, dtype) in expected.items():
        assert tuple(item[key].shape) == shape and item[key].dtype == dtype, key
    assert item["scene"] == "scene_0000"
    assert 0 <= item["images"].min() and item["images"].max() <= 1
    assert torch.equal(item["valid_mask"], item["depth"] > 0)
    assert len(set(item["view_indices"].tolist())) == 3
    # the views it picks overlap: each sees at least min_overlap of an earlier one
    overlap = np.minimum(dataset.covisibility(0), dataset.covisibility(0).T)
    assert (overlap < 0.4).any()  # so that a random pick could fail this
    for seed in range(10):
        picker = MultiViewDataset(dataset_root, 3, min_overlap=0.4, seed=seed)
        chosen = picker.select_views(0).tolist()
        for k in range(1, 3):
            assert overlap[chosen[:k], chosen[k]].max() >= 0.4
    # seeded: same item, same views; another seed or epoch draws again
    assert torch.equal(dataset[0]["view_indices"], item["view_indices"])
    draws = {
        tuple(MultiViewDataset(dataset_root, 3, seed=s)[0]["view_indices"].tolist())
        for s in range(6)
    }
    assert len(draws) > 1
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert (
        batch["images"].shape == (2, 3, 3, HEIGHT, WIDTH) and batch["scene"] == ["scene_0000"] * 2
    )
    random_views = MultiViewDataset(dataset_root, 5, view_selection="random")[1]["view_indices"]
    assert sorted(random_views.tolist()) == list(range(5))
    with pytest.raises(ValueError, match="has 5 views, need 6"):
        MultiViewDataset(dataset_root, 6)


def test_sequential_views_walk_the_scene_in_order(dataset_root):
    """Runs of consecutive views (stride 1..max_stride, either direction), inside the scene."""
    strides, directions = set(), set()
    for seed in range(30):
        dataset = MultiViewDataset(dataset_root, 3, view_selection="sequential", seed=seed)
        chosen = dataset.select_views(0)
        steps = set(np.diff(chosen).tolist())
        assert len(steps) == 1 and chosen.min() >= 0 and chosen.max() < 5
        strides.add(abs(steps.pop()))
        directions.add(bool(chosen[1] > chosen[0]))
    assert strides == {1, 2} and directions == {True, False}
    # 5 views in a 5-view scene: the only run is all of them, in one order or the other
    full = MultiViewDataset(dataset_root, 5, view_selection="sequential").select_views(0)
    assert full.tolist() in (list(range(5)), list(range(4, -1, -1)))
    with pytest.raises(ValueError, match="max_stride"):
        MultiViewDataset(dataset_root, 3, view_selection="sequential", max_stride=0)


def test_user_scene_with_png_depth_and_without_ids(scene, tmp_path):
    """A hand-made scene: JPEG-free layout, 16-bit millimetre depth, no ids, no covisibility."""
    _, views = scene
    root = tmp_path / "my_scene"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    names = ["left", "right"]
    for k, name in enumerate(names):
        Image.fromarray(views.rgb[k]).save(root / "rgb" / f"{name}.png")
        millimetres = np.round(views.depth[k] * 1000).astype(np.uint16)
        Image.fromarray(millimetres).save(root / "depth" / f"{name}.png")
    cameras = {
        "height": HEIGHT,
        "width": WIDTH,
        "views": [
            {
                "name": n,
                "intrinsics": views.intrinsics[k].tolist(),
                "cam2world": views.cam2world[k].tolist(),
            }
            for k, n in enumerate(names)
        ],
    }
    (root / "cameras.json").write_text(json.dumps(cameras))
    item = MultiViewDataset(root, 2)[0]
    assert item["scene"] == "my_scene"
    expected = torch.from_numpy(views.depth[item["view_indices"].numpy()])
    assert (item["depth"] - expected).abs().max() <= 0.0006
    assert (item["object_ids"] == -1).all()


def test_bad_layouts_raise_errors_that_name_the_file(dataset_root, tmp_path):
    scene_dir = tmp_path / "scene"
    shutil.copytree(dataset_root / "scene_0000", scene_dir)
    cameras = read_cameras(scene_dir)
    dataset = MultiViewDataset(scene_dir, 5)
    (scene_dir / "rgb" / "0001.png").unlink()
    with pytest.raises(FileNotFoundError, match="rgb/0001"):
        dataset[0]
    np.save(scene_dir / "depth" / "0002.npy", np.zeros((HEIGHT, WIDTH + 1), np.float32))
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(scene_dir / "rgb" / "0001.png")
    with pytest.raises(ValueError, match="depth/0002.npy"):
        dataset[0]
    (scene_dir / "ids" / "0003.png").unlink()
    np.save(scene_dir / "depth" / "0002.npy", np.zeros((HEIGHT, WIDTH), np.float32))
    with pytest.raises(FileNotFoundError, match="ids/0003.png"):
        dataset[0]
    meta = json.loads((scene_dir / "cameras.json").read_text())
    meta["views"][2]["intrinsics"] = [[1, 0, 0], [0, 1, 0]]
    (scene_dir / "cameras.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"cameras.json: views\[2\].intrinsics"):
        read_cameras(scene_dir)
    meta["views"][2]["intrinsics"] = cameras.intrinsics[2].tolist()
    meta["views"][1]["cam2world"][0][0] = 3.0
    (scene_dir / "cameras.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"views\[1\].cam2world must be a rigid"):
        read_cameras(scene_dir)
    (scene_dir / "cameras.json").unlink()
    with pytest.raises(FileNotFoundError, match="no scene folders"):
        MultiViewDataset(tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="cameras.json"):
        read_cameras(scene_dir)


def test_existing_scenes_are_not_overwritten_without_the_flag(tmp_path, capsys):
    args = [
        str(tmp_path),
        "--num-scenes",
        "1",
        "--views",
        "2",
        "--size",
        "32x24",
        "--texture-size",
        "16",
    ]
    scenes_main(args)
    first = (tmp_path / "scene_0000" / "rgb" / "0000.png").read_bytes()
    assert "wrote 1 scenes" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="scene_0000 exists and is not empty"):
        scenes_main([*args, "--seed", "1"])
    assert (tmp_path / "scene_0000" / "rgb" / "0000.png").read_bytes() == first
    (tmp_path / "scene_0001").write_text("a user's file, not a scene")
    with pytest.raises(SystemExit, match="scene_0001 is a file, not a scene folder"):
        scenes_main([*args[:2], "2", *args[3:], "--overwrite"])
    assert (tmp_path / "scene_0001").read_text() == "a user's file, not a scene"
    assert (tmp_path / "scene_0000" / "rgb" / "0000.png").read_bytes() == first
    (tmp_path / "scene_0001").unlink()
    views = render_scene(build_scene(0, 2, TINY), 24, 32)
    with pytest.raises(FileExistsError, match="scene_0000"):
        write_scene(
            tmp_path / "scene_0000",
            rgb=views.rgb,
            depth=views.depth,
            intrinsics=views.intrinsics,
            cam2world=views.cam2world,
        )
    scenes_main([*args, "--seed", "1", "--overwrite"])
    assert (tmp_path / "scene_0000" / "rgb" / "0000.png").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene_0000"]  # no temp folders left


def test_wrong_depth_units_implausible_cameras_and_truncated_files(dataset_root, tmp_path):
    scene_dir = tmp_path / "scene"
    shutil.copytree(dataset_root / "scene_0000", scene_dir)
    cameras = read_cameras(scene_dir)
    depth_file = scene_dir / "depth" / "0000.npy"
    metres = np.load(depth_file)
    np.save(depth_file, np.round(metres * 1000).astype(np.uint16))  # millimetres in a .npy
    with pytest.raises(ValueError, match=r"depth/0000.npy.*float metres, got uint16"):
        read_view(cameras, 0)
    np.save(depth_file, (metres * 1000).astype(np.float32))  # millimetres as floats
    with pytest.raises(ValueError, match=r"depth/0000.npy: the median depth is \d+ m"):
        read_view(cameras, 0)
    depth_file.unlink()
    Image.fromarray(np.zeros((HEIGHT, WIDTH), np.uint8)).save(scene_dir / "depth" / "0000.png")
    with pytest.raises(ValueError, match=r"depth/0000.png.*16-bit millimetres, got .* mode L"):
        read_view(cameras, 0)
    (scene_dir / "depth" / "0000.png").unlink()
    np.save(depth_file, metres)
    depth_file.write_bytes(depth_file.read_bytes()[:200])  # a cut copy
    with pytest.raises(ValueError, match=r"cannot read depth .*depth/0000.npy"):
        read_view(cameras, 0)
    np.save(depth_file, metres)
    rgb_file = scene_dir / "rgb" / "0001.png"
    rgb_file.write_bytes(rgb_file.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"cannot read image .*rgb/0001.png"):
        read_view(cameras, 1)
    meta = json.loads((scene_dir / "cameras.json").read_text())
    meta["views"][2]["intrinsics"][0][2] = 1e6
    (scene_dir / "cameras.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"views\[2\].intrinsics: the principal point \(1e\+06"):
        read_cameras(scene_dir)
