"""The one image reader: every common mode comes out as the right 8-bit RGB, not clipped or
blank; the encoder's normalization round-trips."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from pixio_core.data import ImageFolderDataset, read_rgb
from pixio_core.data.folder import eval_transform
from pixio_core.imaging import denormalize_images, normalize_images, read_image

RAMP = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    Image.fromarray(RAMP).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    rgb = np.asarray(read_image(tmp_path / "gray16.png"))
    expected = np.rint(RAMP.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert rgb.shape == (48, 64, 3) and np.array_equal(rgb[..., 0], expected)
    assert rgb.min() == 0 and rgb.max() == 255  # before: every pixel read as 255


def test_16_bit_colour_palette_alpha_and_cmyk(tmp_path):
    colour = np.zeros((48, 64, 3), np.uint16)
    colour[..., 0], colour[..., 2] = RAMP, 65535 - RAMP
    cv2.imwrite(str(tmp_path / "rgb16.png"), colour[..., ::-1])  # OpenCV writes BGR
    rgb = np.asarray(read_image(tmp_path / "rgb16.png")).astype(int)
    assert (
        np.abs(rgb[..., 0] - RAMP / 257).max() <= 1
        and np.abs(rgb[..., 2] - (255 - RAMP / 257)).max() <= 1
    )
    # alpha is composited over white: a transparent pixel is white, an opaque one its colour
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out = np.asarray(read_image(tmp_path / "rgba.png"))
    assert out[0, 0].tolist() == [10, 20, 30] and out[1, 1].tolist() == [255, 255, 255]
    Image.fromarray(rgba[..., [0, 3]], mode="LA").save(tmp_path / "la.png")
    assert np.asarray(read_image(tmp_path / "la.png"))[1, 1].tolist() == [255, 255, 255]
    palette = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = palette.getpixel((1, 1))
    palette.save(tmp_path / "palette.png", transparency=palette.getpixel((1, 1)))
    out = np.asarray(read_image(tmp_path / "palette.png"))
    assert out[0, 0].tolist() == [10, 20, 30] and out[1, 1].tolist() == [255, 255, 255]
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    assert (
        np.abs(np.asarray(read_image(tmp_path / "cmyk.jpg"))[0, 0].astype(int) - [255, 0, 0]).max()
        < 8
    )
    Image.fromarray(np.full((4, 4), 0.5, np.float32), mode="F").save(tmp_path / "float.tiff")
    assert np.asarray(read_image(tmp_path / "float.tiff"))[0, 0].tolist() == [128, 128, 128]


def test_exif_orientation_and_clear_errors(tmp_path):
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :10] = 255  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(wide).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = np.asarray(read_image(tmp_path / "rotated.jpg"))
    assert upright.shape == (40, 20, 3) and upright[:10].mean() > 200 > upright[-10:].mean() + 150
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    assert read_rgb(tmp_path / "broken.png") is None  # datasets skip and count


def test_pretraining_reads_16_bit_images_too(tmp_path):
    Image.fromarray(RAMP).save(tmp_path / "gray16.png")
    item = ImageFolderDataset(tmp_path, eval_transform(32))[0]
    pixels = denormalize_images(item["image"])
    assert item["skipped"] == 0 and 0.3 < float(pixels.mean()) < 0.7  # not a white image


def test_normalization_round_trips_and_checks_its_input():
    images = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(denormalize_images(normalize_images(images)), images)
    with pytest.raises(ValueError, match="float images"):
        normalize_images(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        normalize_images(torch.zeros(1, 4, 4, 4))


def test_fast_jpeg_decode_gives_the_pixels_pil_gives():
    import io

    import numpy as np
    import torch
    from PIL import Image

    from pixio_core.data.folder import decode_rgb, pretrain_transform, read_rgb

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
    rotated = Image.Exif()
    rotated[0x0112] = 6  # EXIF orientation: rotate 90 degrees
    cases = {
        "rgb": (image, {}),
        "exif": (image, {"exif": rotated}),
        "gray": (image.convert("L"), {}),
        "cmyk": (image.convert("CMYK"), {}),
    }
    for name, (picture, options) in cases.items():
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=90, **options)
        data = buffer.getvalue()
        fast = decode_rgb(data)
        assert isinstance(fast, torch.Tensor) and fast.dtype == torch.uint8, name
        reference = torch.from_numpy(np.array(read_rgb(data))).permute(2, 0, 1)
        assert torch.equal(fast, reference), name
        transform = pretrain_transform(32)
        torch.manual_seed(0)
        a = transform(fast)
        torch.manual_seed(0)
        assert torch.equal(a, transform(read_rgb(data))), name
    assert decode_rgb(data[: len(data) // 2]) is None  # truncated: skipped, as with PIL
    png = io.BytesIO()
    image.save(png, "PNG")
    assert isinstance(decode_rgb(png.getvalue()), Image.Image)  # other formats: PIL
