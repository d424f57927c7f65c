"""MapAnything on a Pixio encoder: the architecture of the released ``pixio_vith16`` 3D model.

This is our implementation of the model that MapAnything (facebookresearch/map-anything,
``configs/model/pixio.yaml``) and the Pixio repository (``map_anything/``) build from UniCeption
modules. Module and parameter names follow theirs exactly (wrappers included), so the released
checkpoints load strictly:

* ``encoder``: the Pixio ViT (:class:`pixio_core.models.encoder.PixioEncoder`); with
  ``encoder_checkpoint_wrapper`` each block sits in a wrapper, so its keys read
  ``encoder.blocks.N.inner.*`` as in the released files (their encoder had gradient
  checkpointing on). Its final-normed patch tokens are the image features.
* optional geometric inputs, each encoded and *added* to the image features: ray directions
  (``ray_dirs_encoder``: pixel-unshuffle + convs), depth along the ray (``depth_encoder``;
  normalized by its mean, log-scaled), the depth's scale (``depth_scale_encoder``), the
  cameras' rotations and translations relative to view 0 (``cam_rot_encoder``,
  ``cam_trans_encoder``; translations normalized by their mean norm) and the translations'
  scale (``cam_trans_scale_encoder``). The two scale inputs are only added for metric inputs.
  ``fusion_norm_layer`` (LayerNorm) follows the sum.
* ``info_sharing``: ``depth`` transformer blocks of width ``dim`` on the projected features of
  all views plus a learnable ``scale_token``: even blocks attend over all views (global, with
  the scale token), odd blocks within each view (frame); a fixed embedding (``view_pos_table``)
  marks view 0. The outputs of blocks ``intermediate_layers`` and of the last block are
  LayerNorm-ed (``norm``).
* heads: a DPT (``dpt_feature_head`` + ``dpt_regressor_head``, also reachable as
  ``dense_head.0`` / ``dense_head.1``) on [fused image features, the two intermediate outputs,
  the final output] regresses, per pixel, a ray direction (unit), depth along the ray
  (``exp``), confidence (``1 + exp``) and a non-ambiguity mask (``sigmoid``); the ``pose_head``
  (1x1 residual convs, average pooling, MLP) on the final features gives each view's camera
  translation and quaternion (x, y, z, w; normalized); the ``scale_head`` (MLP) on the scale
  token gives the metric scaling factor (``exp``), which multiplies depths, points and
  translations (the heads: :mod:`~pixio_3d.models.mapanything_heads`).

Poses are camera-to-world (OpenCV cameras) in the frame MapAnything was trained in: that of
view 0 (given camera poses are first expressed relative to view 0). :meth:`MapAnythingModel.infer`
returns this project's reconstruction keys with world = the camera of view 0 exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from pixio_3d.geometry import (
    invert_pose,
    matrix_to_quaternion,
    pose_from_quaternion_translation,
    ray_directions,
)
from pixio_3d.models.heads import soft_matches
from pixio_3d.models.mapanything_heads import (
    POSITIVE_MODES,
    DPTFeatureHead,
    DPTRegressor,
    PoseRegressionHead,
    ScaleMLPHead,
    UnsupportedReconstructionConfig,
    dense_adaptor,
    positive,
)
from pixio_3d.models.reconstruction import MATCH_TEMPERATURE_LR_SCALE, _chunks, compose_geometry
from pixio_core.models.encoder import EncoderConfig, PixioEncoder
from pixio_core.precision import autocast_dtype

__all__ = [
    "MAPANYTHING_REPRESENTATION",
    "MapAnythingConfig",
    "MapAnythingModel",
    "UnsupportedReconstructionConfig",
    "mapanything_sizes",
]

# the scene representation of the released model (MapAnything's ``adaptor_type``)
MAPANYTHING_REPRESENTATION = "raydirs+depth+pose+confidence+mask"
LAYER_NORM = partial(nn.LayerNorm, eps=1e-6)


@dataclass
class MapAnythingConfig:
    """Sizes and options of :class:`MapAnythingModel`; the defaults are the released model."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # ViT-H/16, 8 class tokens
    encoder_checkpoint_wrapper: bool = True  # keys ``encoder.blocks.N.inner.*``
    dim: int = 768
    depth: int = 24
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_norm: bool = False
    layer_scale: float | None = None
    intermediate_layers: tuple[int, int] = (11, 17)
    norm_intermediate: bool = True
    distinguish_reference_view: bool = True
    dpt_feature_dim: int = 256
    dpt_layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    regressor_hidden_dims: tuple[int, int] | None = None  # default: 2 x dpt_feature_dim // 2
    pose_resconv_blocks: int = 2
    pose_head_width: int | None = None  # default: 4 * patch_size^2 (1024), as released
    scale_hidden_dim: int = 196
    scale_mlp_layers: int = 2
    dense_input_dims: tuple[int, ...] = (588, 768, 1024)
    global_input_dims: tuple[int, ...] = (128, 256, 512)
    depth_mode: str = "exp"
    confidence_vmin: float = 1.0
    scale_mode: str = "exp"
    scale_vmin: float = 1e-8
    views_per_chunk: int = 8  # views through the encoder and the dense heads at once in infer
    # this project's extra (off in the released model): the pose head also sees each patch's
    # soft match in view 0 (a flow field), supervised by the loss's ``match`` term
    pose_matching: bool = False
    architecture: str = "mapanything"  # tells a saved model config from ReconstructionConfig's

    def __post_init__(self) -> None:
        if self.architecture != "mapanything":
            raise ValueError(f"architecture must be 'mapanything', got {self.architecture!r}")
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig.from_dict(self.encoder)
        self.intermediate_layers = tuple(self.intermediate_layers)  # type: ignore[assignment]
        self.dpt_layer_dims = tuple(self.dpt_layer_dims)  # type: ignore[assignment]
        self.dense_input_dims = tuple(self.dense_input_dims)
        self.global_input_dims = tuple(self.global_input_dims)
        if self.regressor_hidden_dims is not None:
            self.regressor_hidden_dims = tuple(self.regressor_hidden_dims)  # type: ignore[assignment]
        if self.pose_head_width is not None and (
            not isinstance(self.pose_head_width, int) or self.pose_head_width < 1
        ):
            raise ValueError(
                f"pose_head_width must be a positive int or None, got {self.pose_head_width!r}"
            )
        for name in ("dim", "depth", "num_heads", "dpt_feature_dim", "views_per_chunk"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MapAnythingConfig.{name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        first, second = (self.intermediate_layers + (-1, -1))[:2]
        if len(self.intermediate_layers) != 2 or not 0 <= first < second < self.depth - 1:
            raise UnsupportedReconstructionConfig(
                "intermediate_layers must be 2 increasing block indices below the last of "
                f"{self.depth} blocks (the DPT also reads the image features), "
                f"got {self.intermediate_layers!r}"
            )
        if len(self.dpt_layer_dims) != 4:
            raise ValueError(f"dpt_layer_dims must be 4 ints, got {self.dpt_layer_dims!r}")
        for name, value in (("depth_mode", self.depth_mode), ("scale_mode", self.scale_mode)):
            if value not in POSITIVE_MODES:
                raise UnsupportedReconstructionConfig(
                    f"{name} must be one of {POSITIVE_MODES}, got {value!r}"
                )

    @property
    def use_intrinsics_input(self) -> bool:
        """Known intrinsics always condition the network (as ray directions)."""
        return True

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["encoder"] = self.encoder.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MapAnythingConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MapAnythingConfig keys {unknown}; known: {sorted(known)}")
        return cls(**values)


def mapanything_sizes() -> dict[str, MapAnythingConfig]:
    """Named sizes: ``pixio_vith16`` (the released model, ~896 M parameters) and ``tiny`` (tests
    and CPU training)."""
    tiny_encoder = EncoderConfig(embed_dim=64, depth=2, num_heads=4, image_size=64)
    return {
        "pixio_vith16": MapAnythingConfig(),
        "tiny": MapAnythingConfig(
            encoder=tiny_encoder,
            dim=64,
            depth=4,
            num_heads=4,
            intermediate_layers=(1, 2),
            dpt_feature_dim=32,
            dpt_layer_dims=(16, 32, 64, 64),
            scale_hidden_dim=32,
            dense_input_dims=(32, 48),
            global_input_dims=(16, 32),
        ),
    }


# ---------------------------------------------------------------------------------- modules
class CheckpointWrapper(nn.Module):
    """Holds a block as ``inner`` (the released key names); recomputes it in the backward pass
    (gradient checkpointing) when training with gradients, runs it plainly otherwise."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and torch.is_grad_enabled():
            return checkpoint(self.inner, *args, use_reentrant=False, **kwargs)
        return self.inner(*args, **kwargs)


class _ResidualConvBlock(nn.Module):
    """3x3 conv, GELU, 3x3 conv, plus a (1x1 conv) shortcut, GELU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))) + self.shortcut(x))


class DenseInputEncoder(nn.Module):
    """A dense input map ``(N, C, H, W)`` (ray directions, depth) to patch features
    ``(N, dim, H/p, W/p)``: pixel-unshuffle by the patch size, a 3x3 conv, residual conv blocks,
    a 1x1 conv to ``dim`` and a LayerNorm over channels."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.unshuffle = nn.PixelUnshuffle(patch_size)
        self.conv_in = nn.Conv2d(in_channels * patch_size**2, hidden[0], 3, padding=1)
        layers: list[nn.Module] = [
            _ResidualConvBlock(a, b) for a, b in zip(hidden[:-1], hidden[1:], strict=True)
        ]
        layers.append(nn.Conv2d(hidden[-1], dim, 1))
        self.encoder = nn.Sequential(*layers)
        self.norm_layer = LAYER_NORM(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(self.conv_in(self.unshuffle(x)))
        return self.norm_layer(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GlobalInputEncoder(nn.Module):
    """A per-view vector ``(N, C)`` (quaternion, translation, log scale) to ``(N, dim)``: an MLP
    with GELUs and a final LayerNorm. The linears nest as the released keys do
    (``encoder.0.0.0.0``, ``encoder.0.0.1``, ..., ``encoder.1``)."""

    def __init__(self, in_channels: int, dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        act = nn.GELU()
        mlp: nn.Module = nn.Sequential(nn.Linear(in_channels, hidden[0]), act)
        for a, b in zip(hidden[:-1], hidden[1:], strict=True):
            mlp = nn.Sequential(mlp, nn.Linear(a, b), act)
        self.encoder = nn.Sequential(mlp, nn.Linear(hidden[-1], dim))
        self.norm_layer = LAYER_NORM(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_layer(self.encoder(x))


def view_embedding_table(positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """``(positions, dim)``: sin on even channels, cos on odd ones, frequencies ``base^(-2i/dim)``."""
    position = torch.arange(positions, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(dim) // 2).to(torch.float64) / dim
    angles = position / torch.pow(torch.tensor(base, dtype=torch.float64), exponent)
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angles), torch.cos(angles))
    return table.float()


class AlternatingAttentionIFR(nn.Module):
    """Multi-view transformer with intermediate feature return (MapAnything's info sharing).

    Input: per-view features ``(B, V, C_in, h, w)`` and global extra tokens ``(B, T, C_in)``
    (the scale token). Block ``i`` attends over all views and the extra tokens when ``i`` is
    even and within each view when odd.
    """

    def __init__(self, config: MapAnythingConfig, input_dim: int) -> None:
        super().__init__()
        self.dim = config.dim
        self.depth = config.depth
        self.indices = tuple(config.intermediate_layers)
        self.norm_intermediate = config.norm_intermediate
        self.distinguish_reference_view = config.distinguish_reference_view
        self.proj_embed = (
            nn.Linear(input_dim, config.dim) if input_dim != config.dim else nn.Identity()
        )
        self.self_attention_blocks = nn.ModuleList(
            Block(
                config.dim,
                config.num_heads,
                config.mlp_ratio,
                qkv_bias=config.qkv_bias,
                qk_norm=config.qk_norm,
                init_values=config.layer_scale,
                norm_layer=LAYER_NORM,
            )
            for _ in range(config.depth)
        )
        self.norm = LAYER_NORM(config.dim)
        if config.distinguish_reference_view:
            self.register_buffer("view_pos_table", view_embedding_table(1, config.dim))

    def forward(
        self, features: torch.Tensor, extra_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Returns the final view features ``(B, V, dim, h, w)``, the final extra tokens
        ``(B, T, dim)`` and the view features after each of ``indices`` (normed like the last
        when ``norm_intermediate``)."""
        batch, views, _, height, width = features.shape
        n = height * width
        tokens = features.flatten(3).transpose(2, 3)  # (B, V, n, C_in)
        tokens = self.proj_embed(tokens)
        extra = self.proj_embed(extra_tokens)
        if self.distinguish_reference_view:
            marker = torch.zeros(1, views, 1, self.dim, dtype=tokens.dtype, device=tokens.device)
            marker[0, 0, 0] = self.view_pos_table[0].to(tokens.dtype)
            tokens = tokens + marker
        n_extra = extra.shape[1]
        sequence = torch.cat([tokens.reshape(batch, views * n, self.dim), extra], dim=1)
        kept: list[torch.Tensor] = []
        for index, block in enumerate(self.self_attention_blocks):
            if index % 2 == 0:
                sequence = block(sequence)
            else:
                view_tokens = sequence[:, : views * n].reshape(batch * views, n, self.dim)
                view_tokens = block(view_tokens).reshape(batch, views * n, self.dim)
                sequence = torch.cat([view_tokens, sequence[:, views * n :]], dim=1)
            if index in self.indices:
                kept.append(self.norm(sequence) if self.norm_intermediate else sequence)
        final = self.norm(sequence)

        def to_maps(seq: torch.Tensor) -> torch.Tensor:
            grid = seq[:, : views * n].reshape(batch, views, height, width, self.dim)
            return grid.permute(0, 1, 4, 2, 3)

        return to_maps(final), final[:, views * n :][:, :n_extra], [to_maps(s) for s in kept]


def quaternion_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (w, x, y, z) quaternions ``(..., 4)``."""
    w1, x1, y1, z1 = a.unbind(-1)
    w2, x2, y2, z2 = b.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def xyzw_to_wxyz(quats: torch.Tensor) -> torch.Tensor:
    return torch.cat([quats[..., 3:], quats[..., :3]], dim=-1)


def wxyz_to_xyzw(quats: torch.Tensor) -> torch.Tensor:
    return torch.cat([quats[..., 1:], quats[..., :1]], dim=-1)


# ------------------------------------------------------------------------------------ model
class MapAnythingModel(nn.Module):
    """MapAnything with a Pixio encoder (see the module docstring); strict-loads the released
    weights (:func:`pixio_3d.models.loading.load_reconstruction_model`)."""

    def __init__(
        self, config: MapAnythingConfig | None = None, encoder: PixioEncoder | None = None
    ) -> None:
        """``encoder``: an existing (e.g. frozen, pre-trained) Pixio encoder to build on; its
        config must be ``config.encoder``. Default: a new one of ``config.encoder``."""
        super().__init__()
        config = config or MapAnythingConfig()
        if encoder is not None and encoder.config != config.encoder:
            raise ValueError(
                f"the encoder's config {encoder.config} differs from config.encoder {config.encoder}"
            )
        self.config = config
        self.encoder = encoder if encoder is not None else PixioEncoder(config.encoder)
        if config.encoder_checkpoint_wrapper:
            for i, block in enumerate(self.encoder.blocks):
                self.encoder.blocks[i] = CheckpointWrapper(block)
        dim = config.encoder.embed_dim
        patch = config.encoder.patch_size
        self.patch_size = patch
        dense, glob = config.dense_input_dims, config.global_input_dims
        self.ray_dirs_encoder = DenseInputEncoder(3, dim, patch, dense)
        self.depth_encoder = DenseInputEncoder(1, dim, patch, dense)
        self.depth_scale_encoder = GlobalInputEncoder(1, dim, glob)
        self.cam_rot_encoder = GlobalInputEncoder(4, dim, glob)
        self.cam_trans_encoder = GlobalInputEncoder(3, dim, glob)
        self.cam_trans_scale_encoder = GlobalInputEncoder(1, dim, glob)
        self.fusion_norm_layer = LAYER_NORM(dim)
        self.scale_token = nn.Parameter(torch.zeros(dim))
        self.info_sharing = AlternatingAttentionIFR(config, input_dim=dim)
        self.dpt_feature_head = DPTFeatureHead(
            [dim, config.dim, config.dim, config.dim], config.dpt_layer_dims, config.dpt_feature_dim
        )
        self.dpt_regressor_head = DPTRegressor(
            config.dpt_feature_dim, 6, config.regressor_hidden_dims
        )
        self.dense_head = nn.Sequential(self.dpt_feature_head, self.dpt_regressor_head)
        self.pose_head = PoseRegressionHead(
            config.dim, patch, config.pose_resconv_blocks, config.pose_head_width
        )
        self.scale_head = ScaleMLPHead(config.dim, config.scale_hidden_dim, config.scale_mlp_layers)
        if config.pose_matching:  # as ReconstructionModel's: identity projection at init
            self.match_proj = nn.Linear(config.dim, config.dim)
            self.match_embed = nn.Linear(3, config.dim)
            self.match_logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))
        self.reset_parameters()

    @property
    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers by parameter name (read by the optimizer set-up)."""
        return (
            {"match_logit_scale": MATCH_TEMPERATURE_LR_SCALE} if self.config.pose_matching else {}
        )

    def reset_parameters(self) -> None:
        """Random init: the encoder's own, xavier linears in the transformer, N(0, 0.02) scale
        token, PyTorch defaults for the convolutions but a ray-z bias of 1 in the last one."""
        nn.init.trunc_normal_(self.scale_token, std=0.02)
        # an untrained dense head starts from forward rays (+z, the optical axis), as the
        # ReconstructionModel's does: training from scratch otherwise spends its first hundreds
        # of steps turning the rays around; loaded weights replace it
        with torch.no_grad():
            self.dpt_regressor_head.conv2[-1].bias[2] = 1.0
        for module in self.info_sharing.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.config.pose_matching:
            nn.init.eye_(self.match_proj.weight)
            nn.init.zeros_(self.match_proj.bias)

    # ------------------------------------------------------------------ inputs
    def _geometric_features(
        self,
        batch: int,
        views: int,
        size: tuple[int, int],
        rays: torch.Tensor | None,
        depth_along_ray: torch.Tensor | None,
        poses: torch.Tensor | None,
        is_metric_scale: torch.Tensor,
    ) -> torch.Tensor | None:
        """The sum of the encoded optional inputs ``(B*V, D, h, w)`` (None without inputs)."""
        total: torch.Tensor | None = None
        metric = is_metric_scale.reshape(batch * views, 1).float()

        def add(x: torch.Tensor) -> None:
            nonlocal total
            total = x if total is None else total + x

        if rays is not None:
            maps = rays.reshape(batch * views, *size, 3).permute(0, 3, 1, 2)
            add(self.ray_dirs_encoder(maps))
        if depth_along_ray is not None:
            depth = depth_along_ray.reshape(batch * views, 1, *size).clamp(min=0)
            valid = depth > 0
            norm = (depth * valid).sum(dim=(1, 2, 3)) / (valid.sum(dim=(1, 2, 3)) + 1e-8)
            norm = norm.clamp(min=1e-8)
            scaled = torch.log1p(depth / norm[:, None, None, None])
            add(self.depth_encoder(scaled))
            scale = self.depth_scale_encoder(torch.log(norm + 1e-8)[:, None]) * metric
            add(scale[:, :, None, None])
        if poses is not None:
            relative = invert_pose(poses[:, :1]) @ poses  # (B, V, 4, 4) in view 0's frame
            # as the released model saw them in training: conj(q_0) * q_i of the standardized
            # (w >= 0) absolute quaternions, not standardized again
            absolute = matrix_to_quaternion(poses[..., :3, :3])
            conjugate = absolute[:, :1] * torch.tensor([1.0, -1.0, -1.0, -1.0]).to(absolute)
            quats = wxyz_to_xyzw(quaternion_product(conjugate, absolute))
            trans = relative[..., :3, 3]
            distance = trans.norm(dim=-1)
            norm = distance.sum(dim=1) / ((distance > 0).sum(dim=1) + 1e-8)
            norm = norm.clamp(min=1e-8)
            trans = trans / norm[:, None, None]
            rot_features = self.cam_rot_encoder(quats.reshape(-1, 4).float())
            trans_features = self.cam_trans_encoder(trans.reshape(-1, 3).float())
            log_norm = torch.log(norm + 1e-8).repeat_interleave(views)[:, None].float()
            scale = self.cam_trans_scale_encoder(log_norm) * metric
            add((rot_features + trans_features + scale)[:, :, None, None])
        return total

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        *,
        depth_z: torch.Tensor | None = None,
        camera_poses: torch.Tensor | None = None,
        is_metric_scale: bool | torch.Tensor = True,
        views_per_chunk: int | None = None,
        autocast_dtype: torch.dtype | None = None,
        dense_head_autocast: bool = False,
        progress: Any = None,
    ) -> dict[str, torch.Tensor]:
        """The raw prediction of ``B`` scenes of ``V`` views ``(B, V, 3, H, W)``
        (ImageNet-normalized, H and W multiples of the patch size).

        Optional inputs, all views of all scenes: ``intrinsics (B, V, 3, 3)`` (pixel centres at
        ``+0.5``), ``depth_z (B, V, H, W)`` (needs intrinsics; 0 = unknown), camera-to-world
        ``camera_poses (B, V, 4, 4)``; ``is_metric_scale`` says whether depths and poses are
        in metres (bool or ``(B,)``), which lets the scale inputs through.

        Returns per view ``ray_directions (B, V, H, W, 3)``, ``depth_along_ray (B, V, H, W)``,
        ``cam_trans (B, V, 3)``, ``cam_quats (B, V, 4)`` (w, x, y, z: the network regresses
        x, y, z, w, reordered here to this project's convention), ``conf``,
        ``non_ambiguous_mask_logits (B, V, H, W)`` (all before the metric scale) and
        ``metric_scaling_factor (B,)``: MapAnything's outputs before its post-processing, and
        the prediction :class:`~pixio_3d.training.losses.ReconstructionLoss` trains.

        ``autocast_dtype`` covers the encoder and the transformer; the dense (DPT) heads run in
        fp32 as MapAnything's do, unless ``dense_head_autocast`` (a CPU's bf16 runs them ~3x
        faster, moving the depth by ~0.5 %).
        """
        if images.ndim != 5:
            raise ValueError(f"images must be (B, V, 3, H, W), got shape {tuple(images.shape)}")
        batch, views, _, height, width = images.shape
        size = (height, width)
        self.encoder.check_input(images[:, 0])
        chunk = views_per_chunk or self.config.views_per_chunk
        rays = None
        if intrinsics is not None:
            if tuple(intrinsics.shape) != (batch, views, 3, 3):
                raise ValueError(
                    f"intrinsics must be ({batch}, {views}, 3, 3), got {tuple(intrinsics.shape)}"
                )
            rays = ray_directions(intrinsics.float(), height, width)
        depth_along_ray = None
        if depth_z is not None:
            if rays is None:
                raise ValueError(
                    "a depth input needs intrinsics (depth along the ray needs the rays)"
                )
            if tuple(depth_z.shape) != (batch, views, height, width):
                raise ValueError(
                    f"depth_z must be ({batch}, {views}, {height}, {width}), got {tuple(depth_z.shape)}"
                )
            depth_along_ray = depth_z.float() / rays[..., 2]
        if camera_poses is not None and tuple(camera_poses.shape) != (batch, views, 4, 4):
            raise ValueError(
                f"camera_poses must be ({batch}, {views}, 4, 4), got {tuple(camera_poses.shape)}"
            )
        metric = torch.as_tensor(is_metric_scale, device=images.device).expand(batch)
        metric = metric[:, None].expand(batch, views)
        device_type = images.device.type
        amp = partial(
            torch.autocast, device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        )

        # image features, a chunk of views at a time: (B*V, D, h, w) scene-major
        flat = images.reshape(batch * views, 3, height, width)
        grid = (height // self.patch_size, width // self.patch_size)
        features = []
        with amp():
            for part in _chunks(batch * views, chunk):
                tokens = self.encoder.forward_features(flat[part])["patch_tokens"]
                features.append(tokens.float().transpose(1, 2).reshape(-1, tokens.shape[-1], *grid))
                if progress is not None:
                    progress.update(part.stop - part.start)
        image_features = torch.cat(features)
        extra = self._geometric_features(
            batch, views, size,
            rays,
            depth_along_ray,
            None if camera_poses is None else camera_poses.float(),
            metric,
        )  # fmt: skip
        if extra is not None:
            image_features = image_features + extra
        fused = self.fusion_norm_layer(image_features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        per_view = fused.reshape(batch, views, *fused.shape[1:])
        scale_token = self.scale_token.expand(batch, 1, -1)
        with amp():
            final, extra_tokens, (first, second) = self.info_sharing(per_view, scale_token)
        final, first, second = final.float(), first.float(), second.float()
        maps = [
            fused,
            first.flatten(0, 1),
            second.flatten(0, 1),
            final.flatten(0, 1),
        ]
        pose_maps = maps[3]
        match_logits = None
        if self.config.pose_matching:
            tokens = final.flatten(3).transpose(2, 3)  # (B, V, h*w, dim)
            match, match_logits = soft_matches(
                self.match_proj(tokens), self.match_logit_scale, grid
            )
            match = self.match_embed(match).transpose(2, 3).reshape(batch * views, -1, *grid)
            pose_maps = pose_maps + match
        dense_parts, pose_parts = [], []
        for part in _chunks(batch * views, chunk):
            with amp(enabled=dense_head_autocast and autocast_dtype is not None):
                decoded = self.dpt_feature_head([m[part] for m in maps])
                decoded = self.dpt_regressor_head(decoded, size).float()
            dense_parts.append(
                dense_adaptor(decoded, self.config.depth_mode, self.config.confidence_vmin)
            )
            pose_parts.append(self.pose_head(pose_maps[part]))
        dense = {key: torch.cat([p[key] for p in dense_parts]) for key in dense_parts[0]}
        pose = torch.cat(pose_parts)
        quats = pose[:, 3:] / pose[:, 3:].norm(dim=-1, keepdim=True).clamp(min=1e-8)
        scale = positive(
            self.scale_head(extra_tokens.float()), self.config.scale_mode, self.config.scale_vmin
        )[:, 0, 0]
        out = {key: value.reshape(batch, views, *value.shape[1:]) for key, value in dense.items()}
        out["cam_trans"] = pose[:, :3].reshape(batch, views, 3)
        out["cam_quats"] = xyzw_to_wxyz(quats).reshape(batch, views, 4)
        out["metric_scaling_factor"] = scale
        if match_logits is not None:
            out["match_logits"] = match_logits
        return out

    @torch.no_grad()
    def infer(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        keep_match_logits: bool = False,
        **inputs: Any,
    ) -> dict[str, torch.Tensor]:
        """Metric reconstruction (this project's keys; world = the camera of view 0).

        ``images (B, V, 3, H, W)`` ImageNet-normalized; known ``intrinsics (B, V, 3, 3)``
        condition the network and are returned as given (with their rays). Further keyword
        inputs of :meth:`forward` (``depth_z``, ``camera_poses``, ``is_metric_scale``,
        ``views_per_chunk``, ``autocast_dtype``, ``dense_head_autocast``) pass through.
        Defaults: bf16 autocast of the encoder and the transformer where bf16 is native (CUDA;
        CPUs with AMX or AVX512-BF16 for a real-size model), the heads in fp32 as MapAnything
        does; fp32 elsewhere; ``progress`` (a tqdm bar over the views' encoding) on for a
        real-size model on a CPU.
        ``keep_match_logits``: also return ``match_logits`` (models with ``pose_matching``).

        Returns ``pts3d``, ``pts3d_cam (B, V, H, W, 3)``, ``ray_directions``,
        ``depth_along_ray``, ``depth_z (B, V, H, W)``, ``camera_poses (B, V, 4, 4)``,
        ``cam_quats (B, V, 4)`` (w, x, y, z; w >= 0), ``cam_trans (B, V, 3)``,
        ``intrinsics (B, V, 3, 3)``, ``conf``, ``non_ambiguous_mask (B, V, H, W)`` and
        ``metric_scaling_factor (B,)``.
        """
        real_size = self.config.encoder.embed_dim >= 768
        if "autocast_dtype" not in inputs and (images.device.type == "cuda" or real_size):
            # bf16 where it is native: CUDA, and CPUs with AMX / AVX512-BF16 (measured 2x faster
            # than fp32 for the released size here); tiny models stay fp32 (tests compare them)
            inputs["autocast_dtype"] = autocast_dtype("auto", images.device)
        show = inputs.pop("progress", None)
        if show is None:  # a bar where a view takes seconds: a real-size model on a CPU
            show = images.device.type == "cpu" and real_size
        if show is True:
            from tqdm.auto import tqdm

            with tqdm(total=images.shape[0] * images.shape[1], desc="views", unit="view") as bar:
                raw = self.forward(images, intrinsics, progress=bar, **inputs)
        else:
            raw = self.forward(images, intrinsics, progress=show or None, **inputs)
        # world = view 0's camera exactly: rebase the (unscaled) poses, then compose as
        # ReconstructionModel does (scaling commutes with the rigid rebase)
        poses = pose_from_quaternion_translation(raw["cam_quats"], raw["cam_trans"])
        poses = invert_pose(poses[:, :1]) @ poses
        raw["cam_quats"] = matrix_to_quaternion(poses[..., :3, :3])
        raw["cam_trans"] = poses[..., :3, 3]
        if intrinsics is not None:
            height, width = images.shape[-2:]
            raw["ray_directions"] = ray_directions(intrinsics.to(raw["conf"]), height, width)
        return {
            **compose_geometry(raw, intrinsics),
            "non_ambiguous_mask": raw["non_ambiguous_mask_logits"] > 0,
            **(
                {"match_logits": raw["match_logits"]}
                if keep_match_logits and "match_logits" in raw
                else {}
            ),
        }
