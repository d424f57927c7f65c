"""pixio-recon / pixio-depth: a folder of photos to PLY, GLB, COLMAP, depth maps, preview, summary.

A tiny untrained reconstruction model (2-block pixio_vitt16, 1 trunk pair, tiny DPT) is enough
for formats and behaviour; photos are MuJoCo renders saved as JPEGs (one with an EXIF rotation,
one at twice the size), next to a text file and a broken JPEG.
"""

import copy
import json
import logging
import math
from pathlib import Path

import numpy as np
import open3d as o3d
import pycolmap
import pytest
import torch
import trimesh
from PIL import Image

from pixio_3d import export
from pixio_3d.checkpoint import load_model, save_model
from pixio_3d.cli.depth import main as depth_main
from pixio_3d.cli.recon import main as recon_main
from pixio_3d.data.photos import load_photos
from pixio_3d.data.scenes import SceneConfig, build_scene, render_scene
from pixio_3d.export import colmap_observations
from pixio_3d.export.depth_maps import COLOUR_BAR_ROWS
from pixio_3d.models import (
    MonoDepthConfig,
    MonoDepthModel,
    ReconstructionConfig,
    ReconstructionModel,
)
from pixio_3d.pipeline import predict_views, reconstruct_photos
from pixio_core.loading import load_frozen_encoder, save_encoder
from pixio_core.models.registry import create_encoder
from pixio_core.precision import resolve_precision

HEIGHT, WIDTH, LONG_SIDE = 64, 96, 96
TINY_DPT = {"dpt_features": 16, "dpt_out_channels": (8, 16, 32, 32)}
TINY_TRUNK = {"width": 64, "depth": 1, "num_heads": 4, "pose_hidden_dim": 32, **TINY_DPT}
FOCAL = 70.0  # known focal (pixels of the original photos) for the main runs
FAST = {"long_side": LONG_SIDE, "preview_size": (80, 60), "progress": False}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    save_encoder(create_encoder("pixio_vitt16", depth=2), root / "encoder")
    encoder, _ = load_frozen_encoder(str(root / "encoder"))
    paths = {}
    recon = ReconstructionModel(encoder, ReconstructionConfig(**TINY_TRUNK))
    paths["reconstruction"] = save_model(
        root / "recon", recon, "reconstruction", str(root / "encoder")
    )
    for mode in ("metric", "relative"):
        # the 2-block encoder is too shallow for the 4-block DPT probe: linear head
        depth = MonoDepthModel(encoder, MonoDepthConfig(mode=mode, head="linear"))
        paths[mode] = save_model(root / f"depth_{mode}", depth, "depth", str(root / "encoder"))
    return paths


@pytest.fixture(scope="module")
def model(checkpoints):
    return load_model(checkpoints["reconstruction"])[0]


@pytest.fixture(scope="module")
def renders():
    spec = build_scene(5, 4, SceneConfig(texture_size=32, num_objects=(3, 4)))
    return render_scene(spec, HEIGHT, WIDTH).rgb


def _write_photos(folder, rgb):
    """4 photos (view0 twice under two extensions, one EXIF-rotated, one 2x larger) + junk."""
    folder.mkdir(exist_ok=True)
    Image.fromarray(rgb[0]).save(folder / "view0.jpg", quality=95)
    Image.fromarray(rgb[1]).save(folder / "view0.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored pixels are the upright ones turned
    rotated = Image.fromarray(rgb[2]).transpose(Image.Transpose.ROTATE_90)
    rotated.save(folder / "view1_phone.jpg", quality=95, exif=exif)
    Image.fromarray(rgb[3]).resize((2 * WIDTH, 2 * HEIGHT)).save(folder / "view2_big.jpg")
    (folder / "notes.txt").write_text("not a photo")
    data = (folder / "view0.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(data[: len(data) // 3])
    return folder


@pytest.fixture(scope="module")
def result(tmp_path_factory, renders, model):
    root = tmp_path_factory.mktemp("recon")
    photos = _write_photos(root / "photos", renders)
    summary = reconstruct_photos(
        photos,
        root / "out",
        model,
        focal_px=FOCAL,
        max_observations_per_image=500,
        original_depth=True,
        **FAST,
    )
    return photos, root / "out", summary


def test_outputs_are_readable_by_the_real_libraries(result, model):
    photos, out, summary = result
    assert summary["mode"] == "multi_view" and summary["num_views"] == 4
    assert summary["pose_solver"] == "features"
    assert all(photo["pose_support"] >= 0 for photo in summary["photos"])
    assert summary["photos"][0]["pose_support"] == 0  # the reference camera
    assert {s["path"].rsplit("/", 1)[1] for s in summary["skipped"]} == {"notes.txt", "broken.jpg"}
    assert json.loads((out / "summary.json").read_text()) == summary

    cloud = o3d.io.read_point_cloud(str(out / "points.ply"))
    written = summary["point_cloud"]["counts"]["written"]
    assert len(cloud.points) == written > 0 and cloud.has_colors()

    scene = trimesh.load(out / "scene.glb")
    assert isinstance(scene, trimesh.Scene)
    assert {f"camera_{i:03d}" for i in range(4)} | {"points"} <= set(scene.geometry)

    # an independent run of the model on the same photos gives the exported cameras and depth
    loaded = load_photos(photos, long_side=LONG_SIDE)
    given = np.array([p["intrinsics"] for p in summary["photos"]])
    # (the default precision "auto": bf16 where this CPU runs it natively, recorded)
    dtype = resolve_precision("auto", "cpu")
    assert summary["precision"] == {"requested": "auto", "network": str(dtype).split(".")[1]}
    expected = predict_views(model, loaded.images, torch.from_numpy(given), precision="auto")
    reconstruction = pycolmap.Reconstruction(out / "sparse" / "0")
    assert reconstruction.num_reg_images() == 4 and reconstruction.num_points3D() == written
    names = ["view0_jpg.png", "view0_png.png", "view1_phone.png", "view2_big.png"]
    transforms = json.loads((out / "transforms.json").read_text())
    assert transforms["ply_file_path"] == "points.ply" and (out / "points.ply").is_file()
    assert (transforms["w"], transforms["h"]) == (WIDTH, HEIGHT)
    for view, name in enumerate(names):
        frame = transforms["frames"][view]
        assert frame["file_path"] == f"images/{name}"
        opencv = np.array(frame["transform_matrix"]) @ np.diag([1.0, -1.0, -1.0, 1.0])
        np.testing.assert_allclose(opencv, expected["camera_poses"][view], atol=1e-5)
        image = reconstruction.find_image_with_name(name)
        assert (out / "images" / name).is_file()
        assert Image.open(out / "images" / name).size == (WIDTH, HEIGHT)
        cam2world = np.linalg.inv(image.cam_from_world().matrix().tolist() + [[0, 0, 0, 1]])
        np.testing.assert_allclose(cam2world, expected["camera_poses"][view], atol=1e-5)
        camera = reconstruction.cameras[image.camera_id]
        fx, fy, cx, cy = camera.params
        np.testing.assert_allclose([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], given[view])
        assert (camera.width, camera.height) == (WIDTH, HEIGHT)
        # track keypoints are the projections of their 3D points (checked on a few)
        tracked = [p for p in image.points2D if p.has_point3D()]
        assert 0 < len(tracked) <= 500
        for point2d in tracked[::50]:
            xyz = reconstruction.points3D[point2d.point3D_id].xyz
            projected = camera.img_from_cam(image.cam_from_world() * xyz)
            np.testing.assert_allclose(projected, point2d.xy, atol=1e-3)
        depth = np.load(out / summary["photos"][view]["depth"])
        assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.float32
        np.testing.assert_allclose(depth, expected["depth_z"][view], rtol=1e-5)
        confidence = np.load(out / summary["photos"][view]["confidence"])
        assert (
            confidence.shape == (HEIGHT, WIDTH)
            and (confidence >= 0).all()
            and (confidence <= 1).all()
        )
        stem = name.removesuffix(".png")
        network = np.load(out / "network_confidence" / f"{stem}.npy")
        assert network.shape == (HEIGHT, WIDTH) and (network >= 1).all()
        assert Image.open(out / "depth" / f"{stem}.png").size == (WIDTH, HEIGHT + COLOUR_BAR_ROWS)
        assert Image.open(out / "confidence" / f"{stem}.png").size == (WIDTH, HEIGHT)
    assert summary["colmap"]["observations"] > 0
    assert Image.open(out / "preview.png").size == (80, 60)
    assert "__VISER_EMBED_DATA__" in (out / "viewer.html").read_text()  # opened in test_viewer
    assert summary["outputs"] == [p.name for p in sorted(out.iterdir(), key=_entry_order)]


def _entry_order(path):
    from pixio_3d.pipeline import OUTPUT_ENTRIES

    return OUTPUT_ENTRIES.index(path.name)


def test_depth_maps_at_the_original_photo_resolution(result):
    _, out, summary = result
    by_name = {p["path"].rsplit("/", 1)[1]: p for p in summary["photos"]}
    for name, factor in [("view0.jpg", 1), ("view1_phone.jpg", 1), ("view2_big.jpg", 2)]:
        entry = by_name[name]
        working = np.load(out / entry["depth"])
        original = np.load(out / entry["depth_original"])
        assert (
            original.shape
            == (HEIGHT * factor, WIDTH * factor)
            == tuple(entry["original_size"][::-1])
        )
        # same aspect ratio, no crop: every original pixel takes the working pixel it lies in
        np.testing.assert_array_equal(original, working.repeat(factor, 0).repeat(factor, 1))
        assert (out / entry["depth_original"]).with_suffix(".png").is_file()


def test_map_to_original_undoes_a_crop():
    from pixio_3d.data.photos import PhotoTransform

    # a 10x4 photo, cropped to its middle 8 columns at scale 1
    mapped = PhotoTransform((10, 4), 1.0, 1.0, 0.0).map_to_original(
        np.arange(32.0).reshape(4, 8), fill=-1.0
    )
    assert mapped.shape == (4, 10)
    assert (mapped[:, 0] == -1).all() and (mapped[:, -1] == -1).all()
    np.testing.assert_array_equal(mapped[:, 1:-1], np.arange(32.0).reshape(4, 8))


def test_intrinsics_map_back_to_the_original_photos(result):
    _, _, summary = result
    by_name = {p["path"].rsplit("/", 1)[1]: p for p in summary["photos"]}
    for name, (width, height) in [
        ("view0.jpg", (WIDTH, HEIGHT)),
        ("view1_phone.jpg", (WIDTH, HEIGHT)),  # upright size, not the stored portrait one
        ("view2_big.jpg", (2 * WIDTH, 2 * HEIGHT)),
    ]:
        assert by_name[name]["original_size"] == [width, height]
        np.testing.assert_allclose(
            by_name[name]["intrinsics_original"],
            [[FOCAL, 0, width / 2], [0, FOCAL, height / 2], [0, 0, 1]],
            atol=1e-9,
        )


def test_exif_focal_lengths_fix_the_cameras_unless_turned_off(tmp_path, renders, model):
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, rgb in enumerate(renders[:3]):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0xA405] = 28  # FocalLengthIn35mmFilm
        Image.fromarray(rgb).save(photos / f"view{index}.jpg", quality=95, exif=exif)
    expected = 28 * math.hypot(WIDTH, HEIGHT) / math.hypot(36, 24)
    summary = reconstruct_photos(photos, tmp_path / "exif", model, **FAST)
    assert summary["intrinsics_source"].startswith("EXIF")
    for photo in summary["photos"]:
        original = np.array(photo["intrinsics_original"])
        np.testing.assert_allclose(original[[0, 1], [0, 1]], expected, rtol=1e-6)
    # without EXIF focal lengths the untrained model's own rays are used: they are no pinhole
    with pytest.raises(ValueError, match="no valid pinhole camera"):
        reconstruct_photos(
            photos, tmp_path / "fitted", model, exif_focal=False, pose_solver="head", **FAST
        )
    # the features solver starts from a centred square-pixel camera instead (COLMAP's 1.2 x
    # the longer side where the rays give no plausible one) and refines its focal length
    fitted = reconstruct_photos(photos, tmp_path / "fitted", model, exif_focal=False, **FAST)
    assert fitted["intrinsics_source"].startswith("fitted to the predicted rays")
    for photo in fitted["photos"]:
        k = np.array(photo["intrinsics"])
        assert k[0, 0] == pytest.approx(k[1, 1]) and 0.13 * WIDTH < k[0, 0] < 5.8 * WIDTH
    (photos / "view2.jpg").unlink()
    Image.fromarray(renders[2]).save(photos / "view2.png")  # no EXIF: all photos need one
    with pytest.raises(ValueError, match="no valid pinhole camera"):
        reconstruct_photos(photos, tmp_path / "mixed", model, pose_solver="head", **FAST)


def test_existing_reconstruction_kept_without_overwrite(tmp_path, renders, checkpoints, capfd):
    photos = _write_photos(tmp_path / "photos", renders)
    out = tmp_path / "out"
    out.mkdir()
    (out / "my_notes.md").write_text("mine")
    common = [str(photos), "--out", str(out), "--checkpoint", str(checkpoints["reconstruction"])]
    common += ["--focal-px", str(FOCAL), "--long-side", str(LONG_SIDE), "--no-progress"]
    with pytest.raises(SystemExit, match="--feature-settings: feature setting 'pairs=2'"):
        recon_main(common + ["--feature-settings", "pairs=2"])
    assert [p.name for p in out.iterdir()] == ["my_notes.md"]
    capfd.readouterr()
    recon_main(common + ["--voxel-size", "0", "--feature-settings", "max_pairs_per_view=2"])
    printed = capfd.readouterr()
    written = json.loads((out / "summary.json").read_text())
    listed = printed.out.split(f"wrote to {out}:")[1]  # every output, the viewer page too
    for name in written["outputs"]:
        assert name in listed, name
    assert "viewer.html" in written["outputs"]
    # the viewer's recording server logs "server listening" at INFO, which pixio-recon shows
    assert logging.getLogger("websockets").getEffectiveLevel() >= logging.WARNING
    assert written["pose_solver"] == "features"
    assert written["feature_settings"]["max_pairs_per_view"] == 2
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match="already holds a reconstruction.*--overwrite"):
        recon_main(common + ["--voxel-size", "0.05"])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left

    recon_main(common + ["--voxel-size", "0.05", "--overwrite", "--pose-solver", "head"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["point_cloud"]["voxel_size"] == 0.05
    assert summary["pose_solver"] == "head"
    assert (out / "my_notes.md").read_text() == "mine"  # other files are left alone


def test_empty_folder_and_too_small_photos_error_clearly(tmp_path, model, checkpoints):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        reconstruct_photos(empty, tmp_path / "out", model, **FAST)
    with pytest.raises(SystemExit, match="pixio-recon: photo folder .*empty"):
        recon_main([str(empty), "--out", str(tmp_path / "out"), "--checkpoint",
                    str(checkpoints["reconstruction"]), "--no-progress"])  # fmt: skip
    assert not (tmp_path / "out").exists()

    small = tmp_path / "small"
    small.mkdir()
    Image.new("RGB", (24, 20)).save(small / "thumb.png")
    (small / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"thumb.png: too small: 24x20 < 32 px"):
        reconstruct_photos(small, tmp_path / "out", model, **FAST)


def test_single_photo_falls_back_to_monocular_depth(tmp_path, renders, model, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(renders[0]).save(photos / "only.png")
    Image.new("RGB", (16, 16)).save(photos / "icon.png")
    summary = reconstruct_photos(photos, tmp_path / "out", model, focal_px=FOCAL, **FAST)
    assert summary["mode"] == "monocular" and "monocular depth" in summary["message"]
    assert "monocular depth" in caplog.text
    assert [s["reason"].split(":")[0] for s in summary["skipped"]] == ["too small"]
    reconstruction = pycolmap.Reconstruction(tmp_path / "out" / "sparse" / "0")
    assert reconstruction.num_reg_images() == 1
    pose = reconstruction.find_image_with_name("only.png").cam_from_world().matrix()
    np.testing.assert_allclose(pose, np.eye(4)[:3], atol=1e-6)
    assert np.load(tmp_path / "out" / "depth" / "only.npy").shape == (HEIGHT, WIDTH)
    assert len(o3d.io.read_point_cloud(str(tmp_path / "out" / "points.ply")).points) > 0


def test_rays_without_a_pinhole_camera_error_and_name_the_fix(tmp_path, renders, model):
    photos = _write_photos(tmp_path / "photos", renders)
    flat = copy.deepcopy(model)
    last = flat.dense_head.output_conv2[-1]
    with torch.no_grad():  # all rays along the optical axis: no focal length fits
        last.weight[:3] = 0
        last.bias[:3] = 0
    # (the features solver would start from COLMAP's default camera instead: see the EXIF test)
    with pytest.raises(ValueError, match=r"no valid pinhole camera.*view0.jpg.*--focal-px"):
        reconstruct_photos(photos, tmp_path / "out", flat, pose_solver="head", **FAST)
    assert not (tmp_path / "out").exists()


def test_colmap_observations_see_visible_points_only():
    intrinsics = np.array([[[50.0, 0, 20], [0, 50, 15], [0, 0, 1]]])
    cam2world = np.eye(4)[None]
    depth = np.full((1, 30, 40), 2.0)
    points = np.array([[0.0, 0.0, 2.0], [0.4, 0.2, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, -2.0]])
    point_index, image_index, pixels = colmap_observations(points, cam2world, intrinsics, depth)
    assert point_index.tolist() == [0, 1] and image_index.tolist() == [0, 0]  # 2: occluded
    np.testing.assert_allclose(pixels, [[20, 15], [30, 20]])


@pytest.mark.parametrize("kind", ["reconstruction", "metric", "relative"])
def test_pixio_depth_writes_png_and_npy(tmp_path, renders, checkpoints, kind, capsys):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(renders[1]).save(photo, quality=95)
    args = [str(photo), "--checkpoint", str(checkpoints[kind]), "--long-side", str(LONG_SIDE)]
    depth_main(args)
    bar = 0 if kind == "relative" else COLOUR_BAR_ROWS  # metres only for metric depth
    assert Image.open(tmp_path / "photo_depth.png").size == (WIDTH, HEIGHT + bar)
    name = "photo_depth_disparity.npy" if kind == "relative" else "photo_depth.npy"
    values = np.load(tmp_path / name)
    assert values.shape == (HEIGHT, WIDTH) and np.isfinite(values).all() and (values > 0).all()
    assert ("relative disparity" in capsys.readouterr().out) == (kind == "relative")
    with pytest.raises(SystemExit, match="--overwrite"):
        depth_main(args)
    depth_main(args + ["--overwrite", "--out", str(tmp_path / "custom.png")])
    assert (tmp_path / "custom.png").is_file()


def test_checkpoint_errors_name_the_fix(tmp_path, monkeypatch, checkpoints):
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    with pytest.raises(
        SystemExit,
        match="default outputs/recon/reconstruction/checkpoints.*--checkpoint.*pixio-recon-train",
    ):
        recon_main([str(photos), "--out", "out"])
    with pytest.raises(SystemExit, match="'depth' checkpoint.*pixio-depth"):
        recon_main([str(photos), "--out", "out", "--checkpoint", str(checkpoints["metric"])])


def test_summary_gives_the_bundle_adjustment_error_only_when_one_ran():
    from pixio_3d.pipeline.report import reprojection_error_entry as _reprojection_error

    assert _reprojection_error({}) == {}
    assert _reprojection_error({"pose_reprojection_error": np.array(np.nan)}) == {}
    assert _reprojection_error({"pose_reprojection_error": np.array(0.25)}) == {
        "bundle_adjustment_reprojection_error_px": 0.25
    }


def test_a_first_photo_outside_the_chained_group_is_reported():
    from pixio_3d.pipeline.report import degenerate_inputs

    rng = np.random.default_rng(0)
    colors = rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    cam2world = np.eye(4)[None].repeat(4, 0)
    cam2world[:, 0, 3] = np.arange(4.0)  # every camera with a baseline
    prediction = {
        "camera_poses": cam2world,
        "depth_z": np.ones((4, 8, 8)),
        "pose_support": np.array([0.0, 0.0, 40.0, 35.0]),
        "pose_chain_root": np.array(1.0),
        "pose_main_group": np.array([False, True, True, True]),
    }
    warnings = degenerate_inputs(colors, prediction, names, "features")
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("a.jpg shares too few matches with the largest group of photos")
    assert "(3, chained from b.jpg)" in warnings[0] and "guess of b.jpg's camera" in warnings[0]
    prediction["pose_chain_root"] = np.array(0.0)  # view 0 chained: b.jpg is the unplaced one
    (warning,) = degenerate_inputs(colors, prediction, names, "features")
    assert warning.startswith("1 photo(s) share too few matches") and "(b.jpg)" in warning
    # a guessed camera on top of a placed one is no "no baseline" case; two placed ones are
    prediction["camera_poses"][1, 0, 3] = 2.0
    assert len(degenerate_inputs(colors, prediction, names, "features")) == 1
    prediction["pose_support"][1] = 30.0
    (warning, other) = degenerate_inputs(colors, prediction, names, "features")
    assert warning.startswith("b.jpg has no baseline") and other.startswith("c.jpg has no")


def test_duplicate_photos_and_unplaced_views_are_reported(tmp_path, renders, model, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        Image.fromarray(renders[index]).save(photos / f"view{index}.png")
    Image.fromarray(renders[1]).save(photos / "view1_again.png")  # the same photo twice
    summary = reconstruct_photos(photos, tmp_path / "out", model, focal_px=FOCAL, **FAST)
    warnings = " ".join(summary["warnings"])
    assert "view1_again.png duplicates view1.png" in warnings
    assert summary["metric_scale"]["reliability"] in ("good", "fair", "poor", "unknown")
    fusion = summary["fusion"]
    assert fusion["mode"] == "consistent"
    assert 0 < fusion["verified"] <= fusion["consistent"] <= fusion["pixels"]
    assert summary["model"]["small"] and "only a prior" in summary["model"]["note"]
    # --fusion verified: only the pixels another view confirms enter points.ply
    strict = reconstruct_photos(
        photos, tmp_path / "verified", model, focal_px=FOCAL, fusion="verified", **FAST
    )
    assert strict["fusion"]["mode"] == "verified"
    counts, strict_counts = summary["point_cloud"]["counts"], strict["point_cloud"]["counts"]
    assert strict_counts["confident"] < counts["confident"]
    with pytest.raises(ValueError, match="fusion must be one of"):
        reconstruct_photos(photos, tmp_path / "bad", model, fusion="strict", **FAST)


@pytest.fixture(scope="module")
def known_scene(tmp_path_factory):
    """4 photos cropped off-centre (cx is not W / 2) with their true cameras."""
    spec = build_scene(7, 4, SceneConfig(texture_size=64, camera_arc_degrees=60))
    views = render_scene(spec, 2 * HEIGHT, 2 * WIDTH)
    folder = tmp_path_factory.mktemp("known") / "photos"
    folder.mkdir()
    crop = 16  # columns cut off the left: the principal point moves left by as much
    intrinsics = views.intrinsics.copy()
    intrinsics[:, 0, 2] -= crop
    names = []
    for index, rgb in enumerate(views.rgb):
        names.append(f"cam{index}.png")
        Image.fromarray(rgb[:, crop:]).save(folder / names[-1])
    world = np.linalg.inv(views.cam2world[0])  # any frame: the first camera's here
    cam2world = np.stack([world @ pose for pose in views.cam2world])
    return folder, names, intrinsics, cam2world, views


def _check_honoured(summary, out, names, intrinsics, cam2world):
    assert summary["pose_solver"] == "given" and summary["intrinsics_source"].startswith("given")
    for photo, k, pose in zip(summary["photos"], intrinsics, cam2world, strict=True):
        np.testing.assert_allclose(photo["intrinsics_original"], k, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(photo["cam2world"], pose, rtol=0, atol=1e-12)
    model = pycolmap.Reconstruction(out / "sparse" / "0")
    for name, pose in zip(names, cam2world, strict=True):
        stem = name.removesuffix(".png")
        image = model.find_image_with_name(f"{stem}.png")
        np.testing.assert_allclose(
            image.cam_from_world().matrix(), np.linalg.inv(pose)[:3], atol=1e-9
        )


def test_known_cameras_from_json_and_colmap_are_honoured_exactly(tmp_path, known_scene, model):
    folder, names, intrinsics, cam2world, views = known_scene
    cameras = {
        "intrinsics": {
            name: {"fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2]}
            for name, k in zip(names, intrinsics, strict=True)
        },
        "cam2world": {name: pose.tolist() for name, pose in zip(names, cam2world, strict=True)},
    }
    (tmp_path / "cameras.json").write_text(json.dumps(cameras))
    options = {**FAST, "long_side": 2 * LONG_SIDE}
    summary = reconstruct_photos(
        folder, tmp_path / "json", model, cameras=tmp_path / "cameras.json", **options
    )
    _check_honoured(summary, tmp_path / "json", names, intrinsics, cam2world)
    fitted = [photo["depth_fit"] for photo in summary["photos"]]
    assert summary["metric_scale"]["reliability"] == "given"
    # the untrained model's depth is ~80 % off at the points triangulated from the cameras;
    # fitted, it agrees with them
    for fit in fitted:
        assert fit["sfm_points"] > 30 and fit["error_after"] < min(0.2, fit["error_before"] / 3)
    # so the dense points are in the given frame and units (their shape is the network's: an
    # untrained one here, so only roughly near the true surface)
    points = np.asarray(o3d.io.read_point_cloud(str(tmp_path / "json" / "points.ply")).points)
    from scipy.spatial import cKDTree

    depth = views.depth
    rays = np.linalg.inv(views.intrinsics)
    rows, cols = np.mgrid[0 : depth.shape[1], 0 : depth.shape[2]]
    pixels = np.stack([cols + 0.5, rows + 0.5, np.ones_like(cols, float)], -1)
    world = []
    for v in range(len(depth)):
        local = (pixels @ rays[v].T) * depth[v][..., None]
        world.append(local[depth[v] > 0] @ cam2world[v][:3, :3].T + cam2world[v][:3, 3])
    distance, _ = cKDTree(np.concatenate(world)).query(points)
    extent = np.linalg.norm(np.concatenate(world).std(0))
    assert np.median(distance) < 0.4 * extent, (np.median(distance), extent)
    # the same cameras as a COLMAP model folder
    height, width = np.asarray(Image.open(folder / names[0])).shape[:2]
    export.write_colmap_model(tmp_path / "colmap", cam2world, intrinsics, names, (height, width))
    summary = reconstruct_photos(
        folder, tmp_path / "colmap_out", model, cameras=tmp_path / "colmap", **options
    )
    _check_honoured(summary, tmp_path / "colmap_out", names, intrinsics, cam2world)


def test_wrong_camera_files_name_the_problem(tmp_path, known_scene, model):
    folder, names, intrinsics, cam2world, _ = known_scene
    bad = {
        "missing photo": (
            {"intrinsics": {names[0]: intrinsics[0].tolist()}},
            "no entry for cam1.png",
        ),
        "cx outside": (
            {"intrinsics": {"fx": 50, "fy": 50, "cx": 1e6, "cy": 10}},
            r"principal point \(1e\+06",
        ),
        "some poses": (
            {"intrinsics": intrinsics[0].tolist(), "cam2world": {names[0]: cam2world[0].tolist()}},
            "no pose for cam1.png",
        ),
        "not rigid": (
            {
                "intrinsics": intrinsics[0].tolist(),
                "cam2world": {n: (2 * np.eye(4)).tolist() for n in names},
            },
            "rigid transform",
        ),
    }
    for label, (content, message) in bad.items():
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            reconstruct_photos(folder, tmp_path / label, model, cameras=path, **FAST)
        assert not (tmp_path / label).exists()  # refused before anything was written


def test_a_video_is_sampled_and_reconstructed_like_photos(tmp_path, known_scene, checkpoints):
    import imageio.v3 as iio

    _, _, _, _, views = known_scene
    frames = [rgb for rgb in views.rgb for _ in range(3)]  # 3 frames per view at 3 fps
    iio.imwrite(tmp_path / "clip.mp4", frames, fps=3, codec="libx264", macro_block_size=1)
    recon_main(
        [str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "out"), "--fps", "1"]
        + ["--checkpoint", str(checkpoints["reconstruction"]), "--long-side", str(2 * LONG_SIDE)]
        + ["--no-progress", "--focal-px", str(views.intrinsics[0, 0, 0])]
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_views"] == 4 and summary["video"]["fps"] == 1.0
    assert [Path(p["path"]).name for p in summary["photos"]] == [
        f"clip_{i:05d}.png" for i in range(4)
    ]
    assert (tmp_path / "out" / "images" / "clip_00003.png").is_file()
    frame = np.asarray(Image.open(tmp_path / "out" / "images" / "clip_00002.png"), float)
    view = np.asarray(Image.fromarray(views.rgb[2]).resize(frame.shape[1::-1]), float)
    assert np.abs(frame - view).mean() < 12  # the third sampled frame is the third view
