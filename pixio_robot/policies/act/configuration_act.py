"""Configuration of the action-chunking transformer policy (ACT, Zhao et al. 2023) on frozen features."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ACTPolicyConfig:
    feature_dim: int  # width of one frame token (encoder width)
    proprio_dim: int
    action_dim: int
    frame_history: int = 3  # frames whose tokens the transformer encoder sees
    tokens_per_frame: int = 1  # 1 for pooled class tokens, h*w for patch tokens
    chunk_size: int = 16  # actions predicted per query (the ACT paper uses 100 at 50 Hz)
    n_action_steps: int = 8  # actions executed from a chunk before predicting again
    temporal_ensemble_coeff: float | None = None  # ACT's m (paper: 0.01): predict every step
    dim_model: int = 128  # CPU-sized; the ACT paper uses 512 wide, 4 encoder layers
    n_heads: int = 4
    dim_feedforward: int = 512
    n_encoder_layers: int = 2
    n_decoder_layers: int = 1
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in (
            "feature_dim",
            "action_dim",
            "frame_history",
            "tokens_per_frame",
            "chunk_size",
            "n_action_steps",
            "dim_model",
            "n_heads",
            "dim_feedforward",
            "n_encoder_layers",
            "n_decoder_layers",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ACTPolicyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.proprio_dim < 0:
            raise ValueError(f"ACTPolicyConfig.proprio_dim must be >= 0, got {self.proprio_dim}")
        if self.n_action_steps > self.chunk_size:
            raise ValueError(
                f"ACTPolicyConfig.n_action_steps ({self.n_action_steps}) cannot exceed "
                f"chunk_size ({self.chunk_size})"
            )
        if self.temporal_ensemble_coeff is not None and self.n_action_steps != 1:
            raise ValueError(
                "temporal ensembling predicts a chunk at every step: set n_action_steps=1 "
                f"(got {self.n_action_steps})"
            )
        if self.dim_model % self.n_heads:
            raise ValueError(
                f"ACTPolicyConfig.dim_model ({self.dim_model}) must be divisible by n_heads ({self.n_heads})"
            )

    @property
    def action_horizon(self) -> int:
        """Actions per training target (the dataset yields chunks of this length)."""
        return self.chunk_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
