"""viewer.html (viser's offline export) and pixio-view, opened in headless Chromium."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixio_3d.cli.view import main as view_main
from pixio_3d.export import write_colmap_model, write_ply
from pixio_3d.export.viewer import write_viewer_html

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser import VISER_PROBE, probe_page  # noqa: E402

HEIGHT, WIDTH = 48, 64


def scene(views=3, points=3000):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(points, 3)) * [1.0, 0.6, 0.3] + [0, 0, 4]
    colors = rng.integers(0, 255, (points, 3), dtype=np.uint8)
    poses = np.stack([np.eye(4)] * views)
    poses[:, 0, 3] = np.linspace(-0.6, 0.6, views)
    intrinsics = np.stack(
        [np.array([[60.0, 0, WIDTH / 2], [0, 60.0, HEIGHT / 2], [0, 0, 1]])] * views
    )
    photos = [np.full((HEIGHT, WIDTH, 3), 60 * (v + 1), np.uint8) for v in range(views)]
    return xyz, colors, poses, intrinsics, photos, rng.random(points)


def not_blank(shot: Path) -> float:
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    return float((np.abs(pixels - np.median(pixels)) > 30).mean())


def test_viewer_page_draws_points_frusta_and_confidence_bins(tmp_path):
    xyz, colors, poses, intrinsics, photos, confidence = scene()
    page = write_viewer_html(
        tmp_path / "viewer.html", xyz, colors, poses, intrinsics, (HEIGHT, WIDTH),
        images=photos, confidence=confidence,
    )  # fmt: skip
    text = page.read_text()
    assert "__VISER_EMBED_DATA__" in text and "http://" not in text.split("</head>")[0][-4000:]
    probe, shot = probe_page(page, VISER_PROBE, tmp_path)
    assert probe is not None, "the page never drew a scene"
    assert probe["points"] == 3000 and probe["objects"] == 4  # four confidence quartiles
    assert sorted(n for n in probe["nodes"] if n.startswith("/cameras/")) == [
        "/cameras/view_000", "/cameras/view_001", "/cameras/view_002",
    ]  # fmt: skip
    assert not_blank(shot) > 0.005  # points and frusta on the canvas, not an empty page
    with pytest.raises(ValueError, match="one of each per view"):
        write_viewer_html(tmp_path / "x.html", xyz, colors, poses, intrinsics[:2], (HEIGHT, WIDTH))


def test_pixio_view_opens_a_colmap_model_from_another_tool(tmp_path, capsys):
    xyz, colors, poses, intrinsics, photos, _ = scene(views=4)
    names = [f"frame_{i}.jpg" for i in range(4)]
    model = write_colmap_model(
        tmp_path / "colmap" / "sparse" / "0", poses, intrinsics, names, (HEIGHT, WIDTH),
        points3D=xyz, colors=colors,
    )  # fmt: skip
    (tmp_path / "colmap" / "images").mkdir()
    for name, photo in zip(names[:3], photos, strict=False):  # one photo is missing
        Image.fromarray(photo).save(tmp_path / "colmap" / "images" / name)
    view_main([str(tmp_path / "colmap"), "--no-open"])
    printed = capsys.readouterr().out
    assert "3000 points, 4 cameras (1 of 4 photos not found" in printed
    page = tmp_path / "colmap" / "viewer.html"
    probe, _ = probe_page(page, VISER_PROBE, tmp_path, screenshot=False)
    assert probe["points"] == 3000 and probe["objects"] == 1  # COLMAP points carry no confidence
    assert len([n for n in probe["nodes"] if n.startswith("/cameras/")]) == 4
    # a pixio-recon style folder: points.ply (with confidence) beside sparse/0
    write_ply(tmp_path / "colmap" / "points.ply", xyz[:500], colors[:500], np.arange(500.0))
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        view_main([str(tmp_path / "colmap"), "--no-open", "--output", str(page)])
    view_main([str(tmp_path / "colmap"), "--no-open", "--overwrite"])
    probe, _ = probe_page(page, VISER_PROBE, tmp_path, screenshot=False)
    assert probe["points"] == 500 and probe["objects"] == 4
    assert str(model).endswith("0")
    with pytest.raises(SystemExit, match="holds no reconstruction"):
        view_main([str(tmp_path / "colmap" / "images"), "--no-open"])
