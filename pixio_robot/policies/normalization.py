"""Dataset statistics every policy normalizes with, stored as buffers (saved with the weights)."""

from __future__ import annotations

import torch
from torch import nn

STAT_KEYS = ("feature", "proprio", "action")


class Normalization(nn.Module):
    """Per-channel ``(x - mean) / std`` for frame features, proprioception and actions."""

    def __init__(self, feature_dim: int, proprio_dim: int, action_dim: int) -> None:
        super().__init__()
        dims = {"feature": feature_dim, "proprio": proprio_dim, "action": action_dim}
        for key, dim in dims.items():
            self.register_buffer(f"{key}_mean", torch.zeros(dim))
            self.register_buffer(f"{key}_std", torch.ones(dim))

    def set(self, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """``{"feature" | "proprio" | "action": (mean, std)}`` from the training set."""
        for key, (mean, std) in stats.items():
            if key not in STAT_KEYS:
                raise ValueError(f"unknown statistics {key!r}; expected {STAT_KEYS}")
            getattr(self, f"{key}_mean").copy_(torch.as_tensor(mean))
            getattr(self, f"{key}_std").copy_(torch.as_tensor(std).clamp_min(1e-6))

    def normalize(self, key: str, value: torch.Tensor) -> torch.Tensor:
        return (value - getattr(self, f"{key}_mean")) / getattr(self, f"{key}_std")

    def unnormalize(self, key: str, value: torch.Tensor) -> torch.Tensor:
        return value * getattr(self, f"{key}_std") + getattr(self, f"{key}_mean")
