"""Procedural textures and their MJCF for the scene generator (:mod:`pixio_3d.data.scenes`):
photo-like images (value noise in a random palette, strokes, grain), MuJoCo builtins or flat
colours."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

MATERIAL = 'specular="0.1" shininess="0.2" reflectance="0"'


def photo_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A photo-like ``(size, size, 3)`` uint8 texture: 4-octave value noise in a random
    two-color palette, 30-80 translucent rectangles/ellipses/strokes in related colors, grain."""
    noise = np.zeros((size, size), np.float32)
    for cells, weight in ((4, 0.4), (16, 0.3), (64, 0.2), (size // 4, 0.1)):
        cells = max(2, min(cells, size // 2))
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        smooth = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
        noise += weight * np.asarray(smooth)
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    low, high = rng.random(3) * 0.6, 0.35 + rng.random(3) * 0.65
    image = Image.fromarray(np.uint8(255 * (low + (high - low) * noise[..., None])))
    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(int(rng.integers(30, 81))):
        if rng.random() < 0.2:  # an odd one out
            color = rng.random(3)
        else:  # a shade of the palette
            color = np.clip(low + (high - low) * rng.random() + rng.normal(0, 0.12, 3), 0, 1)
        fill = (*(int(255 * c) for c in color), int(rng.integers(90, 256)))
        x0, y0 = rng.random(2) * size
        w, h = (0.01 + 0.14 * rng.random(2)) * size
        box = (float(x0), float(y0), float(x0 + w), float(y0 + h))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle(box, fill=fill)
        elif kind == 1:
            draw.ellipse(box, fill=fill)
        else:
            draw.line(box, fill=fill, width=int(1 + rng.integers(max(2, size // 64))))
    grain = rng.normal(0.0, 5.0, (size, size, 3))
    return np.clip(np.asarray(image, np.float64) + grain, 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer, format="PNG", compress_level=0
    )  # in memory: speed over size
    return buffer.getvalue()


def mjcf_floats(values: Any) -> str:
    return " ".join(f"{float(v):.9g}" for v in np.ravel(values))


def room_material(
    rng, name: str, texture_mode: str, texture_size: int, assets: dict[str, bytes]
) -> str:
    """MJCF for a room material (2D texture repeating per metre; photo textures of
    ``2 * texture_size`` pixels); ``texture_mode``: photo | builtin | flat."""
    repeat = 1.0 / rng.uniform(2.0, 4.0)  # one texture tile covers 2-4 m
    if texture_mode == "photo":
        assets[f"{name}.png"] = png_bytes(photo_texture(rng, 2 * texture_size))
        texture = f'<texture name="{name}" type="2d" file="{name}.png"/>'
    elif texture_mode == "builtin":
        pattern = rng.choice(["checker", "gradient"])
        texture = (
            f'<texture name="{name}" type="2d" builtin="{pattern}" rgb1="{mjcf_floats(rng.random(3))}" '
            f'rgb2="{mjcf_floats(rng.random(3))}" mark="random" random="{rng.uniform(0.1, 0.4):.3f}" '
            f'markrgb="{mjcf_floats(rng.random(3))}" width="256" height="256"/>'
        )
    else:
        rgba = mjcf_floats([*(0.3 + 0.7 * rng.random(3)), 1])
        return f'<material name="{name}" rgba="{rgba}" {MATERIAL}/>'
    return texture + (
        f'<material name="{name}" texture="{name}" texrepeat="{repeat:.4f} {repeat:.4f}" '
        f'texuniform="true" {MATERIAL}/>'
    )


def object_textures(
    rng, texture_mode: str, texture_size: int, count: int, assets: dict[str, bytes]
) -> list[str]:
    """MJCF for a pool of ``count`` cube textures shared (with different tints) by the objects
    (``texture_mode`` photo: images of ``texture_size`` pixels; otherwise MuJoCo builtins)."""
    textures = []
    for k in range(count):
        name = f"obj_tex{k}"
        if texture_mode == "photo":
            assets[f"{name}.png"] = png_bytes(photo_texture(rng, texture_size))
            textures.append(f'<texture name="{name}" type="cube" file="{name}.png"/>')
        else:
            pattern, mark = (
                rng.choice(["checker", "gradient"]),
                rng.choice(["edge", "cross", "random"]),
            )
            textures.append(
                f'<texture name="{name}" type="cube" builtin="{pattern}" mark="{mark}" '
                f'rgb1="{mjcf_floats(rng.random(3))}" rgb2="{mjcf_floats(rng.random(3))}" '
                f'markrgb="{mjcf_floats(rng.random(3))}" random="0.2" width="64" height="64"/>'
            )
    return textures
