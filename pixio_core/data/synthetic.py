"""A procedural, labelled image set that any fresh machine can make: no download needed.

Each image shows one shape class (disc, square, triangle, ring, cross, stripes, checker, star) in
random colors, size, position and rotation over a random textured background (gradient + noise).
Written as ``root/<class>/<index>.png``, the layout of an image-classification folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm.auto import tqdm

from pixio_core.io import atomic_file

SHAPE_CLASSES = ("disc", "square", "triangle", "ring", "cross", "stripes", "checker", "star")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:size, 0:size] / size
    t = (np.cos(angle) * xs + np.sin(angle) * ys + 1.0) / 2.0
    image = c0 * (1 - t[..., None]) + c1 * t[..., None]
    noise_scale = rng.uniform(5, 40)
    coarse = rng.normal(0, noise_scale, (size // 8 + 1, size // 8 + 1, 3))
    coarse = np.kron(coarse, np.ones((8, 8, 1)))[:size, :size]
    image = image + coarse + rng.normal(0, noise_scale / 4, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(1)
    )


def _polygon(cx: float, cy: float, radius: float, points: list[tuple[float, float]], rot: float):
    cos, sin = math.cos(rot), math.sin(rot)
    return [
        (cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in points
    ]


def draw_shape(rng: np.random.Generator, label: str, size: int) -> Image.Image:
    """One image of class ``label`` at ``size x size`` pixels."""
    image = _background(rng, size)
    draw = ImageDraw.Draw(image)
    color = tuple(int(v) for v in rng.uniform(0, 255, 3))
    other = tuple(int(v) for v in rng.uniform(0, 255, 3))
    radius = rng.uniform(0.2, 0.4) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    rot = rng.uniform(0, 2 * math.pi)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if label == "disc":
        draw.ellipse(box, fill=color)
    elif label == "ring":
        draw.ellipse(box, outline=color, width=max(2, int(radius * 0.3)))
    elif label == "square":
        draw.polygon(
            _polygon(cx, cy, radius, [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)], rot),
            fill=color,
        )
    elif label == "triangle":
        corners = [(math.cos(a), math.sin(a)) for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
        draw.polygon(_polygon(cx, cy, radius, corners, rot), fill=color)
    elif label == "star":
        corners = [
            (
                (1.0 if k % 2 == 0 else 0.45) * math.cos(k * math.pi / 5),
                (1.0 if k % 2 == 0 else 0.45) * math.sin(k * math.pi / 5),
            )
            for k in range(10)
        ]
        draw.polygon(_polygon(cx, cy, radius, corners, rot), fill=color)
    elif label == "cross":
        arm = [(-1, -0.25), (1, -0.25), (1, 0.25), (-1, 0.25)]
        draw.polygon(_polygon(cx, cy, radius, arm, rot), fill=color)
        draw.polygon(_polygon(cx, cy, radius, arm, rot + math.pi / 2), fill=color)
    elif label == "stripes":
        period = rng.uniform(0.06, 0.15) * size
        for k in range(-size, 2 * size, int(max(2, period * 2))):
            line = [(k, -size), (k + period, -size), (k + period, 2 * size), (k, 2 * size)]
            draw.polygon(
                _polygon(
                    size / 2, size / 2, 1.0, [(x - size / 2, y - size / 2) for x, y in line], rot
                ),
                fill=color,
            )
    elif label == "checker":
        cell = int(rng.uniform(0.08, 0.2) * size)
        for i in range(0, size, cell):
            for j in range(0, size, cell):
                draw.rectangle(
                    (i, j, i + cell, j + cell), fill=color if (i // cell + j // cell) % 2 else other
                )
    else:
        raise ValueError(f"unknown shape class {label!r}; expected one of {SHAPE_CLASSES}")
    return image


def make_shapes_dataset(
    root: str | Path,
    images_per_class: int = 32,
    image_size: int = 128,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write ``root/<class>/<i>.png`` for every class in :data:`SHAPE_CLASSES`; deterministic in ``seed``.

    Existing files are kept (never overwritten), so a re-run only adds what is missing.
    """
    root = Path(root)
    jobs = [(label, index) for label in SHAPE_CLASSES for index in range(images_per_class)]
    for label, index in tqdm(
        jobs, desc=f"synthetic shapes -> {root}", disable=not progress, leave=False
    ):
        path = root / label / f"{index:05d}.png"
        if path.exists():
            continue
        rng = np.random.default_rng([seed, SHAPE_CLASSES.index(label), index])
        with atomic_file(path) as tmp:
            draw_shape(rng, label, image_size).save(tmp)
    return root
