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
    tokens_per_frame: int = 1  # 1 for pooled/grid features, h*w for patch tokens
    # > 0 (patch tokens only): a spatial softmax turns each frame's patch tokens into this many
    # learned keypoints (expected x, y of a softmax over the patch grid, as in robomimic's
    # visuomotor policies) and the MLP reads those instead of the flattened tokens
    keypoints: int = 0
    # > 0: the keypoints' logits come from a per-token MLP with one hidden layer this wide
    # (GELU) instead of one linear map of the token
    keypoint_hidden: int = 0

    def __post_init__(self) -> None:
        for name in ("feature_dim", "action_dim", "frame_history", "tokens_per_frame"):
            if getattr(self, name) < 1:
                raise ValueError(f"MLPPolicyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.proprio_dim < 0:
            raise ValueError(f"MLPPolicyConfig.proprio_dim must be >= 0, got {self.proprio_dim}")
        if not self.hidden_dims or any(d < 1 for d in self.hidden_dims):
            raise ValueError(
                f"MLPPolicyConfig.hidden_dims must be positive widths, got {self.hidden_dims}"
            )
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        if self.keypoints < 0 or self.keypoint_hidden < 0:
            raise ValueError(
                "MLPPolicyConfig.keypoints and keypoint_hidden must be >= 0, got "
                f"{self.keypoints}, {self.keypoint_hidden}"
            )
        if self.keypoints and (
            self.tokens_per_frame == 1
            or round(self.tokens_per_frame**0.5) ** 2 != self.tokens_per_frame
        ):
            raise ValueError(
                "MLPPolicyConfig.keypoints needs patch tokens of a square grid "
                f"(encoder.feature=patch), got tokens_per_frame={self.tokens_per_frame}"
            )

    @property
    def action_horizon(self) -> int:
        """Actions per training target: one."""
        return 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
