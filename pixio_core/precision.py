"""Mixed precision: bf16 autocast where the hardware runs it fast, fp32 elsewhere.

torch is imported where it is used, so command lines can offer :data:`PRECISIONS` in their
``--help`` without importing it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "bf16", "fp32")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matmul units (AMX or AVX512-BF16).

    Without them oneDNN emulates bf16 and is slower than fp32 (measured here on an AVX512 Xeon
    without AMX: 0.05 vs 0.17 TFLOP/s for a 2048^3 matmul), so ``auto`` picks fp32 there.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = cpuinfo.read_text(errors="ignore")
        return "amx_bf16" in flags or "avx512_bf16" in flags
    return False


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """``auto`` -> bf16 on CUDA with bf16 support or on CPUs with AMX/AVX512-BF16, else fp32."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return torch.float32


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """:func:`resolve_precision` as the ``autocast_dtype`` the 3D networks take: None for fp32
    (no autocast), else the dtype."""
    import torch

    dtype = resolve_precision(precision, device)
    return None if dtype == torch.float32 else dtype


@contextlib.contextmanager
def autocast(device: torch.device | str, dtype: torch.dtype) -> Iterator[None]:
    """``torch.autocast`` for bf16; a no-op for fp32."""
    import torch

    device = torch.device(device)
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
