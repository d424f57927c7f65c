"""Configuration of the CortexBench MLP policy (frozen embeddings of 3 stacked frames + proprio)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class MLPPolicyConfig:
    feature_dim: int  # width of one frame's embedding (encoder width for pooled tokens)
    proprio_dim: int
    action_dim: int
    frame_history: int = 3  # CortexBench stacks the embeddings of the last 3 frames
    hidden_dims: tuple[int, ...] = field(default=(256, 256, 256))
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("feature_dim", "action_dim", "frame_history"):
            if getattr(self, name) < 1:
                raise ValueError(f"MLPPolicyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.proprio_dim < 0:
            raise ValueError(f"MLPPolicyConfig.proprio_dim must be >= 0, got {self.proprio_dim}")
        if not self.hidden_dims or any(d < 1 for d in self.hidden_dims):
            raise ValueError(
                f"MLPPolicyConfig.hidden_dims must be positive widths, got {self.hidden_dims}"
            )
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))

    @property
    def action_horizon(self) -> int:
        """Actions per training target: one."""
        return 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
