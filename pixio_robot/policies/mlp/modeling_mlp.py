"""The CortexBench MLP policy on frozen encoder features.

Input: the embeddings of the last ``frame_history`` frames (concatenated, oldest first) and the
proprioception, both normalized with dataset statistics; three hidden layers of 256 with ReLU;
output: the normalized action, trained with MSE (behavior cloning). The frozen encoder is not part
of the policy: features come from :mod:`pixio_robot.features` in training and from the caller's
encoder at control time.

On patch tokens with ``keypoints=K`` a spatial softmax comes first (Levine et al. 2016; robomimic's
``SpatialSoftmax``): a linear map gives K logits per patch, a softmax over the patch grid per
keypoint, and the expected (x, y) of each is the frame's embedding (2K numbers). Small objects
barely move a pooled embedding; a keypoint follows them.
"""

from __future__ import annotations

import torch
from torch import nn

from pixio_robot.policies.base import Policy
from pixio_robot.policies.mlp.configuration_mlp import MLPPolicyConfig


class SpatialSoftmax(nn.Module):
    """``(..., h*w, D)`` patch tokens -> ``(..., 2K)``: the expected (x, y) in [-1, 1] of each
    of K learned softmax maps over the ``h x w`` grid (a learned temperature). The maps' logits
    are a linear function of each token, or with ``hidden > 0`` a one-hidden-layer MLP of it."""

    def __init__(self, width: int, tokens: int, keypoints: int, hidden: int = 0) -> None:
        super().__init__()
        side = round(tokens**0.5)
        self.logits = (
            nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, keypoints))
            if hidden
            else nn.Linear(width, keypoints)
        )
        self.log_temperature = nn.Parameter(torch.zeros(()))
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij"
        )
        self.register_buffer(
            "grid", torch.stack([xs.flatten(), ys.flatten()], dim=-1), persistent=False
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        weights = (self.logits(tokens) / self.log_temperature.exp()).softmax(dim=-2)  # (..., N, K)
        points = weights.transpose(-1, -2) @ self.grid  # (..., K, 2)
        return points.flatten(-2)


class MLPPolicy(Policy):
    """``forward(batch) -> (loss, info)``, ``select_action(obs)``, ``reset()`` (see
    :class:`~pixio_robot.policies.base.Policy`).

    ``batch``: ``features (B, frame_history, feature_dim)``, ``proprio (B, proprio_dim)``,
    ``action (B, action_dim)``. Normalization statistics are buffers, saved with the weights.
    """

    def __init__(self, config: MLPPolicyConfig) -> None:
        super().__init__(config)  # one action per prediction
        layers: list[nn.Module] = []
        self.keypoints = (
            SpatialSoftmax(
                config.feature_dim,
                config.tokens_per_frame,
                config.keypoints,
                config.keypoint_hidden,
            )
            if config.keypoints
            else None
        )
        frame_width = (
            2 * config.keypoints
            if config.keypoints
            else config.feature_dim * config.tokens_per_frame
        )
        width = frame_width * config.frame_history + config.proprio_dim
        for hidden in config.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, config.action_dim))
        self.net = nn.Sequential(*layers)

    def _predict(self, features: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        features = self.normalization.normalize("feature", features)
        if self.keypoints is not None:
            features = self.keypoints(features)  # (B, T, 2K)
        proprio = self.normalization.normalize("proprio", proprio)
        return self.net(torch.cat([features.flatten(1), proprio], dim=1))

    def _frame_shape(self) -> tuple[int, ...]:
        c = self.config
        return (c.feature_dim,) if c.tokens_per_frame == 1 else (c.tokens_per_frame, c.feature_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        expected = (self.config.frame_history, *self._frame_shape())
        if tuple(batch["features"].shape[1:]) != expected:
            raise ValueError(
                f"features must be (B, {', '.join(map(str, expected))}), "
                f"got {tuple(batch['features'].shape)}"
            )
        prediction = self._predict(batch["features"], batch["proprio"])
        target = self.normalization.normalize("action", batch["action"])
        loss = nn.functional.mse_loss(prediction, target)
        return loss, {"mse": float(loss.detach())}

    def check_frame(self, features: torch.Tensor) -> torch.Tensor:
        expected = self._frame_shape()
        if tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"obs['features'] must be (B, {', '.join(map(str, expected))}), "
                f"got {tuple(features.shape)}"
            )
        return features

    def predict_chunk(self, frames: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        return self._predict(frames, proprio)[:, None]  # a chunk of one action
