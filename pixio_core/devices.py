"""Device choice, once for the whole project: ``auto`` is the local GPU when there is one."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cpu``, ``cuda``,
    ``cuda:N`` (or any torch device string) as given. A CUDA device on a machine without CUDA
    is a ``ValueError`` that says so."""
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for CUDA, but this machine has no CUDA device")
    return device
