"""Software GL (Mesa llvmpipe/lavapipe) next to torch: load triton before the first context.

Mesa's software renderers load their LLVM; triton, which torch imports lazily (e.g. through
torch._dynamo), bundles another. Importing triton *after* a software GL/Vulkan context exists
crashed the process here (segfault; torch 2.14, Mesa 22.3). Call :func:`load_triton_first` before
making the first MuJoCo renderer or open3d offscreen renderer. (``pixio_envs`` keeps its own copy:
the envs depend on nothing of Pixio.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def load_triton_first() -> None:
    """Import triton if it is installed and not imported yet; otherwise do nothing."""
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")
