"""Offscreen MuJoCo rendering shared by every task: one place for the fixed, fast settings."""

from __future__ import annotations

import importlib.util
import sys

import mujoco


def _load_triton_first() -> None:
    """Import triton (if installed) before the first GL context exists.

    Mesa's software renderer (llvmpipe, used with MUJOCO_GL=egl on machines without a GPU) loads
    its LLVM; triton bundles another LLVM. When triton is imported *after* a Mesa context was
    made, the process segfaults (seen with torch 2.14 / Mesa 22.3). torch imports triton lazily
    (e.g. through torch._dynamo when timm loads), so rendering first and importing a model later
    would crash. Loading triton first avoids the clash; without triton this does nothing.
    """
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")


def fast_render_flags(renderer: mujoco.Renderer) -> None:
    """Shadows, reflections and skybox off: ~10x faster on software GL; applied identically at
    demo collection and evaluation so the images do not shift distribution."""
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False


def make_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """An offscreen renderer with the fixed fast settings: no shadow maps, no multisampling."""
    _load_triton_first()
    model.vis.quality.shadowsize = 0  # must be set before the GL context is made
    model.vis.quality.offsamples = 0
    renderer = mujoco.Renderer(model, height, width)
    fast_render_flags(renderer)
    return renderer
