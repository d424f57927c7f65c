"""pixio_3d.data.photos: EXIF orientation and focal length, mixed sizes, skipped files, errors, the resize mapping."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from pixio_3d.data.photos import PhotoTransform, load_photos, target_size


def _upright_pattern(width: int = 64, height: int = 48) -> Image.Image:
    """Left half red, right half blue, a green band along the top: any rotation shows."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = (255, 0, 0)
    array[:, width // 2 :] = (0, 0, 255)
    array[: height // 4] = (0, 255, 0)
    return Image.fromarray(array)


def _blob_image(width: int, height: int, centre: tuple[float, float], radius: float) -> Image.Image:
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    inside = (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 < radius**2
    return Image.fromarray(np.repeat((inside * 255).astype(np.uint8)[..., None], 3, axis=2))


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    upright = _upright_pattern()
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # portrait pixels on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": exif_transpose applies ROTATE_270
    stored.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    images, paths, skipped, transforms = load_photos(tmp_path, long_side=64)
    assert skipped == [] and paths == [tmp_path / "phone.jpg"]
    assert images.shape == (1, 3, 48, 64)
    assert transforms[0].original_size == (64, 48)
    expected = torch.from_numpy(np.asarray(upright)).permute(2, 0, 1).float() / 255
    assert (images[0] - expected).abs().mean() < 0.03
    # without the EXIF tag the same pixels would come out portrait-shaped and wrong
    stored.save(tmp_path / "phone.jpg", quality=95)
    assert load_photos(tmp_path, long_side=64).images.shape == (1, 3, 64, 48)


@pytest.mark.parametrize(
    ("tag", "expected_mm"), [(28, 28.0), (0, None), ("junk", None), (None, None)]
)
def test_exif_focal_length_in_pixels(tmp_path, tag, expected_mm):
    stored = _upright_pattern().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated on disk: the diagonal, and so the focal length, is the same
    if tag is not None:
        exif.get_ifd(0x8769)[0xA405] = tag  # FocalLengthIn35mmFilm
    stored.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    transform = load_photos(tmp_path, long_side=64).transforms[0]
    if expected_mm is None:
        assert transform.exif_focal_px is None
    else:  # 28 mm on a 36x24 mm frame (diagonal 43.27 mm) over a 64x48 px photo (80 px)
        assert transform.exif_focal_px == pytest.approx(expected_mm * 80 / math.hypot(36, 24))


def test_mixed_sizes_bad_files_skipped_and_listed(tmp_path):
    for name, size in [
        ("a.png", (64, 48)),
        ("b.png", (128, 96)),
        ("c.png", (48, 64)),
        ("d.png", (100, 100)),
    ]:
        _upright_pattern(*size).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    buffer = tmp_path / "full.jpg"
    _upright_pattern(256, 192).save(buffer, quality=90)
    data = buffer.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])  # header intact
    buffer.unlink()
    _upright_pattern(20, 20).save(tmp_path / "tiny.png")
    (tmp_path / ".hidden").write_text("ignored")
    images, paths, skipped, transforms = load_photos(tmp_path, long_side=80, multiple_of=16)
    assert [p.name for p in paths] == ["a.png", "b.png", "c.png", "d.png"]
    # the 4:3 landscape aspect is the most common one: 80 x 60 -> 80 x 64 (multiples of 16)
    assert images.shape == (4, 3, 64, 80) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    reasons = {p.name: reason for p, reason in skipped}
    assert set(reasons) == {"notes.txt", "truncated.jpg", "tiny.png"}
    assert "unreadable" in reasons["notes.txt"] and "unreadable" in reasons["truncated.jpg"]
    assert "too small" in reasons["tiny.png"]
    assert [t.original_size for t in transforms] == [(64, 48), (128, 96), (48, 64), (100, 100)]


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="empty"):
        load_photos(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_photos(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("still not an image")
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_photos(tmp_path)


@pytest.mark.parametrize("long_side", [64, 32])  # 32 also exercises the memory reduction path
def test_transform_maps_original_pixels_to_working_pixels(tmp_path, long_side):
    for name in ("a.png", "b.png"):
        _blob_image(200, 100, (60.0, 40.0), 12).save(tmp_path / name)
    centre = (200.5, 50.5)
    _blob_image(300, 100, centre, 16).save(tmp_path / "wide.png")
    images, paths, _, transforms = load_photos(tmp_path, long_side=long_side)
    assert images.shape[-2:] == (long_side // 2, long_side)
    wide = transforms[[p.name for p in paths].index("wide.png")]
    assert wide.left == pytest.approx(50.0) and wide.top == pytest.approx(0.0)
    weights = images[paths.index(tmp_path / "wide.png"), 0].double()
    rows, cols = torch.meshgrid(
        torch.arange(weights.shape[0]) + 0.5, torch.arange(weights.shape[1]) + 0.5, indexing="ij"
    )
    found = ((weights * cols).sum() / weights.sum(), (weights * rows).sum() / weights.sum())
    expected = wide.matrix() @ np.array([*centre, 1.0])
    assert float(found[0]) == pytest.approx(expected[0], abs=0.1)
    assert float(found[1]) == pytest.approx(expected[1], abs=0.1)


def test_intrinsics_round_trip_and_projection():
    transform = PhotoTransform(original_size=(300, 100), scale=0.32, left=50.0, top=0.0)
    original_k = np.array([[250.0, 0, 150.0], [0, 250.0, 50.0], [0, 0, 1]])
    working_k = transform.intrinsics_from_original(original_k)
    np.testing.assert_allclose(transform.intrinsics_to_original(working_k), original_k)
    point = np.array([0.3, -0.1, 2.0])
    u_orig = original_k @ point
    u_work = working_k @ point
    np.testing.assert_allclose(
        u_work[:2] / u_work[2], 0.32 * (u_orig[:2] / u_orig[2] - [50.0, 0.0])
    )


def test_target_size_rule():
    assert target_size(4032, 3024, long_side=512) == (512, 384)
    assert target_size(3024, 4032, long_side=518) == (384, 512)
    assert target_size(1000, 10, long_side=512) == (512, 16)
    with pytest.raises(ValueError, match="long_side"):
        target_size(10, 10, long_side=8)


def test_crop_box_stays_inside_every_photo_at_every_long_side():
    from pixio_3d.data.photos import _box_in_reduced, crop_box

    rng = np.random.default_rng(0)
    sizes = [(741, 500), (6000, 4000), (3000, 2000), (4032, 3024), (1920, 1080), (500, 741)]
    sizes += [tuple(int(v) for v in rng.integers(32, 9000, 2)) for _ in range(60)]
    checked = 0
    for width, height in sizes:
        for long_side in range(64, 2049, 16):
            out = target_size(width, height, long_side)
            scale, left, top, box = crop_box((width, height), out)
            assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height
            assert (left, top) == box[:2]
            # the box maps onto the view: one scale for both axes, no distortion
            assert abs((box[2] - box[0]) * scale - out[0]) < 1e-6 * out[0]
            assert abs((box[3] - box[1]) * scale - out[1]) < 1e-6 * out[1]
            factor = max(1, min(width, height) // long_side)
            reduced = (-(-width // factor), -(-height // factor))
            small = _box_in_reduced(box, factor, reduced)
            assert 0 <= small[0] < small[2] <= reduced[0] and 0 <= small[1] < small[3] <= reduced[1]
            checked += 1
    assert checked == len(sizes) * 125


@pytest.mark.parametrize(
    "size, long_side",
    [((741, 500), 512), ((741, 500), 256), ((741, 500), 416), ((741, 500), 864),
     ((6000, 4000), 256), ((6000, 4000), 1024), ((3000, 2000), 256), ((3000, 2000), 1024)],
)  # fmt: skip
def test_ordinary_photo_sizes_load(tmp_path, size, long_side):
    """These crashed with "box offset can't be negative" before the crop box was clamped."""
    ramp = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :, None]
    Image.fromarray(np.broadcast_to(ramp, (size[1], size[0], 3)).copy()).save(
        tmp_path / "photo.jpg", quality=80
    )
    loaded = load_photos(tmp_path, long_side=long_side)
    width, height = target_size(*size, long_side)
    assert tuple(loaded.images.shape) == (1, 3, height, width)
    assert loaded.transforms[0].left >= 0 and loaded.transforms[0].top >= 0
