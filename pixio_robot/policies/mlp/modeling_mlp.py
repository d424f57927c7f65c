"""The CortexBench MLP policy on frozen encoder features.

Input: the embeddings of the last ``frame_history`` frames (concatenated, oldest first) and the
proprioception, both normalized with dataset statistics; three hidden layers of 256 with ReLU;
output: the normalized action, trained with MSE (behavior cloning). The frozen encoder is not part
of the policy: features come from :mod:`pixio_robot.features` in training and from the caller's
encoder at control time.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import nn

from pixio_robot.policies.mlp.configuration_mlp import MLPPolicyConfig
from pixio_robot.policies.normalization import Normalization


class MLPPolicy(nn.Module):
    """``forward(batch) -> (loss, info)``, ``select_action(obs)``, ``reset()``.

    ``batch``: ``features (B, frame_history, feature_dim)``, ``proprio (B, proprio_dim)``,
    ``action (B, action_dim)``. Normalization statistics are buffers, saved with the weights.
    """

    def __init__(self, config: MLPPolicyConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.feature_dim * config.frame_history + config.proprio_dim
        for hidden in config.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, config.action_dim))
        self.net = nn.Sequential(*layers)
        self.normalization = Normalization(
            config.feature_dim, config.proprio_dim, config.action_dim
        )
        self._history: deque[torch.Tensor] = deque(maxlen=config.frame_history)

    def set_normalization(self, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """``{"feature" | "proprio" | "action": (mean, std)}`` from the training set."""
        self.normalization.set(stats)

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

    def reset(self) -> None:
        """Forget the frame history (call at the start of every episode)."""
        self._history.clear()

    @torch.no_grad()
    def select_action(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One control step for a batch of environments -> actions ``(B, action_dim)``.

        ``obs``: ``features (B, feature_dim)`` of the newest frame, ``proprio (B, proprio_dim)``.
        At the start of an episode the first frame is repeated to fill the history.
        """
        features = obs["features"].float()
        if features.ndim != 2 or features.shape[1] != self.config.feature_dim:
            raise ValueError(
                f"obs['features'] must be (B, {self.config.feature_dim}), got {tuple(features.shape)}"
            )
        if not self._history:
            for _ in range(self.config.frame_history - 1):
                self._history.append(features)
        self._history.append(features)
        stacked = torch.stack(list(self._history), dim=1)
        action = self._predict(stacked, obs["proprio"].float().reshape(len(features), -1))
        return self.normalization.unnormalize("action", action)
