"""Per-view maps as files: colour-mapped depth PNGs with the raw ``.npy`` values, grey-scale
confidence PNGs, and the ``images/ depth/ confidence/ depth_original/`` folders of a
reconstruction."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pixio_3d.export.arrays import ArrayLike, as_numpy
from pixio_core.io import atomic_file

if TYPE_CHECKING:
    from pixio_3d.data.photos import PhotoTransform

__all__ = ["save_confidence_png", "save_depth_map", "write_view_maps"]


def save_depth_map(
    path_png: str | os.PathLike,
    depth: ArrayLike,
    confidence: ArrayLike | None = None,
    min_confidence: float | None = None,
    colormap: str = "turbo",
    overwrite: bool = False,
    colour_bar: bool = True,
) -> dict[str, Path]:
    """A colour-mapped PNG of ``depth (H, W)`` plus the raw values as ``.npy`` next to it.

    The PNG maps inverse depth (near = the high end of ``colormap``) between its 2nd and 98th
    percentiles over valid pixels; invalid pixels (non-finite, ``<= 0``, or confidence below
    ``min_confidence``) are black. With ``colour_bar`` a strip below the map shows the colours
    with the depths they stand for, in metres (the PNG is then ``COLOUR_BAR_ROWS`` taller; the
    map itself is its top ``H`` rows). Writes ``<stem>.npy`` (float32 depth) and, with
    ``confidence (H, W)``, ``<stem>_confidence.npy``. Returns the written paths.
    """
    import matplotlib

    values = as_numpy(depth, "depth")
    if values.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {values.shape}")
    valid = np.isfinite(values) & (values > 0)
    conf = None
    if confidence is not None:
        conf = as_numpy(confidence, "confidence")
        if conf.shape != values.shape:
            raise ValueError(f"confidence {conf.shape} must match depth {values.shape}")
        if min_confidence is not None:
            valid &= conf >= min_confidence
    rgb = np.zeros(values.shape + (3,), dtype=np.uint8)
    low = high = None
    if valid.any():
        inverse = 1.0 / values[valid]
        low, high = np.percentile(inverse, [2, 98])
        scaled = np.clip((inverse - low) / max(high - low, 1e-12), 0, 1)
        rgb[valid] = (matplotlib.colormaps[colormap](scaled)[:, :3] * 255).round().astype(np.uint8)
    if colour_bar and low is not None:
        rgb = np.concatenate([rgb, _colour_bar(values.shape[1], low, high, colormap)])
    path_png = Path(path_png)
    outputs = {"png": path_png, "depth": path_png.with_suffix(".npy")}
    if conf is not None:
        outputs["confidence"] = path_png.with_name(f"{path_png.stem}_confidence.npy")
    with contextlib.ExitStack() as stack:
        tmp = {key: stack.enter_context(atomic_file(p, overwrite)) for key, p in outputs.items()}
        Image.fromarray(rgb).save(tmp["png"], format="PNG")
        with open(tmp["depth"], "wb") as handle:
            np.save(handle, values.astype(np.float32))
        if conf is not None:
            with open(tmp["confidence"], "wb") as handle:
                np.save(handle, conf.astype(np.float32))
    return outputs


COLOUR_BAR_ROWS = 22  # a gradient of 8 rows and a line of labels


def _colour_bar(width: int, low: float, high: float, colormap: str) -> np.ndarray:
    """``(COLOUR_BAR_ROWS, width, 3)`` uint8: the colour map from far (left, inverse depth
    ``low``) to near (right, ``high``), labelled with the depths in metres."""
    import matplotlib
    from PIL import ImageDraw, ImageFont

    gradient = matplotlib.colormaps[colormap](np.linspace(0, 1, width))[:, :3]
    bar = np.zeros((COLOUR_BAR_ROWS, width, 3), np.uint8)
    bar[1:9] = np.round(gradient * 255).astype(np.uint8)[None]
    image = Image.fromarray(bar)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    labels = [(0.0, 1.0 / low), (1.0, 1.0 / max(high, 1e-12))]
    if width >= 160:
        labels.insert(1, (0.5, 2.0 / (low + high)))
    for position, metres in labels:
        text = f"{metres:.3g} m"
        text_width = draw.textlength(text, font=font)
        x = min(max(0.0, position * width - text_width / 2), max(0.0, width - text_width))
        draw.text((x, 10), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def save_confidence_png(
    path: Path, confidence: np.ndarray, value_range: tuple[float, float] | None = None
) -> None:
    """Grey-scale PNG of ``confidence (H, W)``: ``value_range`` (e.g. ``(0, 1)``) mapped to
    0..255, or by default its 2nd..98th percentile stretched to 0..255."""
    low, high = value_range or np.percentile(confidence, [2, 98])
    scaled = np.clip((confidence - low) / max(high - low, 1e-12), 0, 1)
    Image.fromarray(np.round(scaled * 255).astype(np.uint8)).save(path, format="PNG")


def write_view_maps(
    folder: Path,
    stems: list[str],
    colors: np.ndarray,
    depth_z: np.ndarray,
    confidence: np.ndarray,
    network_confidence: np.ndarray | None = None,
    originals: list[PhotoTransform] | None = None,
    confidence_range: tuple[float, float] | None = None,
) -> None:
    """``images/``, ``depth/`` (z-depth ``(V, H, W)``) and ``confidence/`` (``(V, H, W)``) of
    every view into ``folder``; with ``network_confidence`` also ``network_confidence/``
    (``.npy``), with ``originals`` (each view's :class:`PhotoTransform`) also
    ``depth_original/``. ``confidence_range`` fixes the confidence PNGs' grey scale."""
    names = ["images", "depth", "confidence"]
    names += ["network_confidence"] if network_confidence is not None else []
    names += ["depth_original"] if originals else []
    for name in names:
        (folder / name).mkdir()
    for view, stem in enumerate(stems):
        Image.fromarray(colors[view]).save(folder / "images" / f"{stem}.png")
        depth = depth_z[view]
        save_depth_map(folder / "depth" / f"{stem}.png", depth)
        if originals:
            original = originals[view].map_to_original(depth)
            save_depth_map(folder / "depth_original" / f"{stem}.png", original)
        np.save(folder / "confidence" / f"{stem}.npy", confidence[view].astype(np.float32))
        save_confidence_png(
            folder / "confidence" / f"{stem}.png", confidence[view], confidence_range
        )
        if network_confidence is not None:
            values = network_confidence[view].astype(np.float32)
            np.save(folder / "network_confidence" / f"{stem}.npy", values)
