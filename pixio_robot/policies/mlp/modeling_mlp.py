"""The CortexBench MLP policy on frozen encoder features.

Input: the embeddings of the last ``frame_history`` frames (concatenated, oldest first) and the
proprioception, both normalized with dataset statistics; three hidden layers of 256 with ReLU;
output: the normalized action, trained with MSE (behavior cloning). The frozen encoder is not part
of the policy: features come from :mod:`pixio_robot.features` in training and from the caller's
encoder at control time.
"""

from __future__ import annotations

import torch
from torch import nn

from pixio_robot.policies.base import Policy
from pixio_robot.policies.mlp.configuration_mlp import MLPPolicyConfig


class MLPPolicy(Policy):
    """``forward(batch) -> (loss, info)``, ``select_action(obs)``, ``reset()`` (see
    :class:`~pixio_robot.policies.base.Policy`).

    ``batch``: ``features (B, frame_history, feature_dim)``, ``proprio (B, proprio_dim)``,
    ``action (B, action_dim)``. Normalization statistics are buffers, saved with the weights.
    """

    def __init__(self, config: MLPPolicyConfig) -> None:
        super().__init__(config)  # one action per prediction
        layers: list[nn.Module] = []
        width = config.feature_dim * config.frame_history + config.proprio_dim
        for hidden in config.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, config.action_dim))
        self.net = nn.Sequential(*layers)

    def _predict(self, features: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        features = self.normalization.normalize("feature", features)
        proprio = self.normalization.normalize("proprio", proprio)
        return self.net(torch.cat([features.flatten(1), proprio], dim=1))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        expected = (self.config.frame_history, self.config.feature_dim)
        if tuple(batch["features"].shape[1:]) != expected:
            raise ValueError(
                f"features must be (B, {expected[0]}, {expected[1]}), got {tuple(batch['features'].shape)}"
            )
        prediction = self._predict(batch["features"], batch["proprio"])
        target = self.normalization.normalize("action", batch["action"])
        loss = nn.functional.mse_loss(prediction, target)
        return loss, {"mse": float(loss.detach())}

    def check_frame(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.config.feature_dim:
            raise ValueError(
                f"obs['features'] must be (B, {self.config.feature_dim}), got {tuple(features.shape)}"
            )
        return features

    def predict_chunk(self, frames: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        return self._predict(frames, proprio)[:, None]  # a chunk of one action
