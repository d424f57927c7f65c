"""Action chunking with a small transformer (ACT) on frozen encoder features.

A transformer encoder reads one token per frame feature (the last ``frame_history`` frames;
pooled class tokens or patch tokens) plus a proprioception token; a transformer decoder turns
``chunk_size`` learned queries into a chunk of future actions, trained with an L1 loss on
normalized actions (padded steps past the end of a demo are masked out). At control time the
policy executes ``n_action_steps`` actions of each chunk, or, with ``temporal_ensemble_coeff``,
predicts every step and averages all chunks' predictions for the current step with weights
``exp(-m * i)`` (``i = 0`` the oldest), as in the ACT paper. The CVAE of the original ACT is
left out: scripted experts give unimodal demonstrations.
"""

from __future__ import annotations

import torch
from torch import nn

from pixio_robot.policies.act.configuration_act import ACTPolicyConfig
from pixio_robot.policies.base import Policy


class ACTPolicy(Policy):
    """``forward(batch) -> (loss, info)``, ``select_action(obs)``, ``reset()`` (see
    :class:`~pixio_robot.policies.base.Policy`, which queues or ensembles the chunks).

    ``batch``: ``features (B, frame_history, feature_dim)`` (pooled) or ``(B, frame_history,
    tokens_per_frame, feature_dim)`` (patch tokens), ``proprio (B, proprio_dim)``,
    ``action_chunk (B, chunk_size, action_dim)``, ``action_is_pad (B, chunk_size)`` bool.
    """

    def __init__(self, config: ACTPolicyConfig) -> None:
        super().__init__(
            config, config.chunk_size, config.n_action_steps, config.temporal_ensemble_coeff
        )
        d = config.dim_model
        self.feature_proj = nn.Linear(config.feature_dim, d)
        self.proprio_proj = nn.Linear(config.proprio_dim, d) if config.proprio_dim else None
        n_tokens = config.frame_history * config.tokens_per_frame + int(config.proprio_dim > 0)
        self.encoder_pos = nn.Parameter(torch.zeros(1, n_tokens, d))
        self.queries = nn.Parameter(torch.zeros(1, config.chunk_size, d))
        nn.init.trunc_normal_(self.encoder_pos, std=0.02)
        nn.init.trunc_normal_(self.queries, std=0.02)

        def encoder_layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(
                d, config.n_heads, config.dim_feedforward, config.dropout,
                batch_first=True, norm_first=True,
            )  # fmt: skip

        self.encoder = nn.TransformerEncoder(
            encoder_layer(), config.n_encoder_layers, enable_nested_tensor=False
        )
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(
                d, config.n_heads, config.dim_feedforward, config.dropout,
                batch_first=True, norm_first=True,
            ),
            config.n_decoder_layers,
        )  # fmt: skip
        self.norm = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, config.action_dim)

    def _check_features(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` or ``(B, T, N, D)`` -> ``(B, T * N, D)``."""
        c = self.config
        shape = tuple(features.shape)
        expected = (
            (c.frame_history, c.feature_dim)
            if c.tokens_per_frame == 1
            else (c.frame_history, c.tokens_per_frame, c.feature_dim)
        )
        if shape[1:] != expected:
            raise ValueError(f"features must be (B, {', '.join(map(str, expected))}), got {shape}")
        return features.reshape(shape[0], c.frame_history * c.tokens_per_frame, c.feature_dim)

    def _predict(self, features: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Normalized action chunk ``(B, chunk_size, action_dim)``."""
        tokens = self.feature_proj(self.normalization.normalize("feature", features))
        if self.proprio_proj is not None:
            proprio = self.normalization.normalize("proprio", proprio)
            tokens = torch.cat([tokens, self.proprio_proj(proprio).unsqueeze(1)], dim=1)
        memory = self.encoder(tokens + self.encoder_pos)
        queries = self.queries.expand(len(tokens), -1, -1)
        return self.action_head(self.norm(self.decoder(queries, memory)))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if "action_chunk" not in batch:
            raise ValueError(
                "ACT trains on action chunks: the batch needs 'action_chunk' and 'action_is_pad' "
                f"(DemoFeatureDataset(action_horizon={self.config.chunk_size}))"
            )
        features = self._check_features(batch["features"])
        prediction = self._predict(features, batch["proprio"])
        target = self.normalization.normalize("action", batch["action_chunk"])
        if target.shape != prediction.shape:
            raise ValueError(
                f"action_chunk must be {tuple(prediction.shape)}, got {tuple(target.shape)}"
            )
        keep = (~batch["action_is_pad"]).unsqueeze(-1).float()
        l1 = (prediction - target).abs() * keep
        loss = l1.sum() / (keep.sum() * prediction.shape[-1]).clamp_min(1.0)
        return loss, {"l1": float(loss.detach())}

    def predict_chunk(self, frames: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        return self._predict(self._check_features(frames), proprio)
