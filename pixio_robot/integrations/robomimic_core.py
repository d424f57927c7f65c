"""robomimic interop: a robomimic observation-encoder core around a frozen Pixio encoder.

Importing this module registers ``PixioCore`` with robomimic (its ``EncoderCore`` subclasses
register themselves), so a robomimic config selects it by name for RGB observations:

    import pixio_robot.integrations.robomimic_core  # noqa: F401  (registers PixioCore)

    config.observation.encoder.rgb.core_class = "PixioCore"
    config.observation.encoder.rgb.core_kwargs = {
        "encoder_source": "outputs/demo/checkpoints",  # any load_encoder source, or random:<size>
        "image_size": 224, "feature": "pooled", "feature_dimension": 64,
    }
    config.observation.encoder.rgb.obs_randomizer_class = None

robomimic hands the core float images ``(B, 3, H, W)`` in [0, 1] (its RGB processing); the core
resizes them, applies ImageNet normalization, runs the encoder without gradients (it stays in
eval mode even when robomimic calls ``train()``) and returns the pooled class tokens (the
paper's robot feature) or the mean of the patch tokens, optionally through a trainable linear
projection. robomimic's BC and BC-RNN then train their own networks on top.
"""

from __future__ import annotations

import torch
from robomimic.models.obs_core import EncoderCore
from torch import nn
from torch.nn import functional as F

from pixio_core.imaging import normalize_images
from pixio_core.loading import load_frozen_encoder


class PixioCore(EncoderCore):
    """Frozen Pixio features for one RGB observation key."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        encoder_source: str = "random:pixio_vitt16",
        encoder_seed: int = 0,
        image_size: int = 224,
        feature: str = "pooled",
        feature_dimension: int | None = None,
    ) -> None:
        super().__init__(input_shape=input_shape)
        if len(input_shape) != 3 or input_shape[0] != 3:
            raise ValueError(f"PixioCore reads RGB images (3, H, W), got input_shape {input_shape}")
        if feature not in ("pooled", "patch_mean"):
            raise ValueError(f"feature must be 'pooled' or 'patch_mean', got {feature!r}")
        self.encoder, self.encoder_id = load_frozen_encoder(encoder_source, encoder_seed)
        self.image_size, self.feature = image_size, feature
        width = self.encoder.embed_dim
        self.projection = nn.Linear(width, feature_dimension) if feature_dimension else None
        self.out_dim = feature_dimension or width

    def output_shape(self, input_shape=None) -> list[int]:
        return [self.out_dim]

    def train(self, mode: bool = True) -> PixioCore:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout / drop path, whatever robomimic asks
        return self

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if tuple(inputs.shape[-3:]) != tuple(self.input_shape):
            raise ValueError(
                f"PixioCore expected images {tuple(self.input_shape)}, got {tuple(inputs.shape[-3:])}"
            )
        images = inputs.reshape(-1, *self.input_shape).float()
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear",
                antialias=True, align_corners=False,
            )  # fmt: skip
        with torch.no_grad():
            out = self.encoder.forward_features(normalize_images(images))
        features = out["pooled"] if self.feature == "pooled" else out["patch_tokens"].mean(1)
        if self.projection is not None:
            features = self.projection(features)
        return features.reshape(*inputs.shape[:-3], self.out_dim)
