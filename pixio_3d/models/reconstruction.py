"""Feed-forward multi-view reconstruction on a (frozen) Pixio encoder, MapAnything-style.

Pipeline for ``V`` views of ``B`` scenes:

1. The encoder turns every view into patch tokens (the final-normed output of ``encoder_layers``,
   concatenated over blocks when several are given) and, optionally, its class tokens; both are
   projected to ``width``.
2. Known intrinsics (optional) are turned into per-pixel ray directions, pixel-unshuffled to the
   patch grid, embedded by an MLP and added to the patch tokens; a LayerNorm follows either way.
   A fixed 2D sin-cos embedding of each token's (row, column) is then added
   (``position_embedding="sincos"``): frozen patch tokens need not say where they are (those of
   ``pixio-demo``'s encoder give row and column a linear-probe R^2 of about 0), and relative pose
   needs to know where matching content lies in each view. It is the same for every view.
3. A learnable reference-view embedding is added to the tokens of view 0, and one learnable scale
   token per scene is appended to the global sequence.
4. ``depth`` pairs of blocks alternate frame attention (the tokens of one view) and global
   attention (the tokens of all views + the scale token). Nothing distinguishes views 1..V-1, so
   their outputs are equivariant to their order (only view 0 is special).
5. Heads: a DPT head per view on [encoder tokens, two intermediate outputs, final output] gives
   ray directions (unit), depth along ray (``exp``) and confidence (``1 + exp``); a pose head
   (residual convs + average pooling + MLP) gives a quaternion and a translation per view; an MLP
   on the scale token gives the metric scale factor (``exp``).
6. With ``pose_matching`` (the default) the pose head's input also gets, per patch, an embedding
   of its soft match in view 0: each view's final trunk tokens (``match_features="trunk"``, the
   default) or frozen encoder tokens (``"encoder"``, checkpoints from before the option) are
   projected (identity at init),
   centred over the view and compared by cosine with view 0's; a softmax gives the expected
   matching position, whose offset from the patch's own position (a flow field) and the match
   peak are embedded and added. Without it, pose regression from pooled trunk tokens did not
   learn at all here (not even a horizontal roll of one image), because frozen tokens share a
   common component that makes all patches look alike (mean cosine 0.87 between patches of an
   image, 0.03 once centred); with it a roll is learned in ~300 steps.

Poses are camera-to-world in the frame of view 0 (OpenCV cameras, quaternions scalar-first with
w >= 0). **View 0's pose is the identity by construction**, not predicted: the scene frame is
view 0's camera. Geometry (depth, translations) is predicted up to scale in the normalized frame
of the training loss; ``metric = metric_scaling_factor * normalized``.

Images are ImageNet mean/std normalized, as the encoder contract requires.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp, build_sincos2d_pos_embed
from torch import nn

from pixio_3d.geometry import (
    intrinsics_from_rays,
    pose_from_quaternion_translation,
    ray_directions,
    transform_points,
)
from pixio_3d.models.heads import PoseHead, soft_matches
from pixio_3d.models.trunk import alternating_attention, attention_blocks
from pixio_core.models.dpt import DPTHead, tokens_to_feature_map
from pixio_core.models.encoder import FrozenEncoderEval

MAX_LOG = 20.0  # clamp for exp activations: keeps exp finite in float32
# Adam moves a scalar by about lr per step: at lr 5e-4 the matching temperature (a log-scale
# scalar) would change by < 1 in 2,000 steps, far too slow for the match loss; it learns 10x faster
MATCH_TEMPERATURE_LR_SCALE = 10.0
POSITION_EMBEDDINGS = ("sincos", "none")
MATCH_FEATURES = ("encoder", "trunk")


@dataclass
class ReconstructionConfig:
    """Architecture of the multi-view model (the encoder is passed separately).

    ``depth`` counts (frame, global) block pairs. ``frames_chunk_size`` bounds how many views the
    encoder and the DPT head process at once in :meth:`ReconstructionModel.infer`.
    """

    encoder_layers: tuple[int, ...] = (-1,)
    use_class_tokens: bool = True
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    use_intrinsics_input: bool = True
    dpt_features: int = 256
    dpt_out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    pose_hidden_dim: int = 256
    frames_chunk_size: int = 8
    position_embedding: str = "sincos"  # sincos | none (checkpoints from before it: none)
    pose_matching: bool = True  # flow-to-view-0 features for the pose head (older: False)
    match_features: str = "trunk"  # trunk (final trunk tokens) | encoder (frozen patch tokens)

    def __post_init__(self) -> None:
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(
                f"position_embedding must be one of {POSITION_EMBEDDINGS}, "
                f"got {self.position_embedding!r}"
            )
        if self.match_features not in MATCH_FEATURES:
            raise ValueError(
                f"match_features must be one of {MATCH_FEATURES}, got {self.match_features!r}"
            )
        self.encoder_layers = tuple(self.encoder_layers)
        self.dpt_out_channels = tuple(self.dpt_out_channels)  # type: ignore[assignment]
        if not self.encoder_layers or not all(isinstance(i, int) for i in self.encoder_layers):
            raise ValueError(
                "encoder_layers must be a non-empty tuple of block indices, "
                f"got {self.encoder_layers!r}"
            )
        for name in ("width", "depth", "num_heads", "dpt_features", "pose_hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"ReconstructionConfig.{name} must be a positive int, got {value!r}"
                )
        if self.width % self.num_heads:
            raise ValueError(
                f"ReconstructionConfig.width={self.width} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        if self.dpt_features < 2:
            raise ValueError(f"dpt_features must be >= 2, got {self.dpt_features}")
        if len(self.dpt_out_channels) != 4 or min(self.dpt_out_channels) < 1:
            raise ValueError(
                f"dpt_out_channels must be 4 positive ints, got {self.dpt_out_channels!r}"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        if not isinstance(self.frames_chunk_size, int) or self.frames_chunk_size < 1:
            raise ValueError(
                f"frames_chunk_size must be a positive int, got {self.frames_chunk_size!r}"
            )

    @property
    def hook_pairs(self) -> tuple[int, int]:
        """The two intermediate block pairs fed to the DPT head (the last pair is always fed)."""
        first, second = (max(0, round(self.depth * k / 3) - 1) for k in (1, 2))
        return first, second

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReconstructionModel(FrozenEncoderEval, nn.Module):
    """Encoder + alternating-attention transformer + DPT/pose/scale heads (see the module doc)."""

    def __init__(self, encoder: nn.Module, config: ReconstructionConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config
        self.patch_size: int = encoder.patch_size
        encoder_dim: int = encoder.embed_dim
        width = config.width
        token_dim = encoder_dim * len(config.encoder_layers)
        self.patch_proj = nn.Linear(token_dim, width)
        self.class_proj = nn.Linear(encoder_dim, width) if config.use_class_tokens else None
        self.ray_embed = (
            Mlp(3 * self.patch_size**2, width, width) if config.use_intrinsics_input else None
        )
        self.input_norm = nn.LayerNorm(width)
        self.reference_embed = nn.Parameter(torch.zeros(1, 1, width))
        self.scale_token = nn.Parameter(torch.zeros(1, 1, width))

        self.frame_blocks = attention_blocks(
            width, config.num_heads, config.mlp_ratio, config.depth
        )
        self.global_blocks = attention_blocks(
            width, config.num_heads, config.mlp_ratio, config.depth
        )
        self.norm = nn.LayerNorm(width)
        self.dense_head = DPTHead(
            in_channels=(token_dim, width, width, width),
            output_dim=5,
            features=config.dpt_features,
            out_channels=config.dpt_out_channels,
        )
        self.pose_head = PoseHead(width, config.pose_hidden_dim)
        if config.pose_matching:
            # matching starts from the matched tokens' own similarity (identity projection)
            match_dim = token_dim if config.match_features == "encoder" else width
            self.match_proj = nn.Linear(match_dim, match_dim)
            nn.init.eye_(self.match_proj.weight)
            nn.init.zeros_(self.match_proj.bias)
            self.match_embed = nn.Linear(3, width)
            self.match_logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))
        self.scale_head = Mlp(width, config.pose_hidden_dim, 1)
        nn.init.normal_(self.reference_embed, std=0.02)
        nn.init.normal_(self.scale_token, std=0.02)

    @property
    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers by parameter name (read by the optimizer set-up)."""
        if self.config.pose_matching:
            return {"match_logit_scale": MATCH_TEMPERATURE_LR_SCALE}
        return {}

    # ----------------------------------------------------------------- inputs
    def _check_images(self, images: torch.Tensor) -> tuple[int, int, int, int]:
        if not isinstance(images, torch.Tensor) or images.ndim != 5 or images.shape[2] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"expected images of shape (B, V, 3, H, W), got {shape}")
        batch, views, _, height, width = images.shape
        if views < 1 or height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"need at least one view and H, W multiples of {self.patch_size}, "
                f"got {views} views of {height}x{width}"
            )
        return batch, views, height, width

    def _encode(
        self, images: torch.Tensor, chunk: int | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(N, 3, H, W)`` -> patch tokens ``(N, h*w, L*D)``, class tokens ``(N, n_cls, D)``."""
        frozen = not any(p.requires_grad for p in self.encoder.parameters())
        patches, classes = [], []
        for part in images.split(chunk or images.shape[0]):
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                outputs = self.encoder.forward_intermediates(
                    part, list(self.config.encoder_layers), norm=True
                )
            patches.append(torch.cat([o["patch_tokens"] for o in outputs], dim=-1))
            classes.append(outputs[-1]["cls_tokens"])
        return torch.cat(patches), torch.cat(classes) if self.class_proj is not None else None

    def _ray_tokens(self, intrinsics: torch.Tensor, batch: int, views: int, size: tuple[int, int]):
        if intrinsics.shape != (batch, views, 3, 3):
            raise ValueError(
                f"expected intrinsics of shape ({batch}, {views}, 3, 3), "
                f"got {tuple(intrinsics.shape)}"
            )
        if self.ray_embed is None:
            raise ValueError("this model was built with use_intrinsics_input=False")
        rays = ray_directions(intrinsics.to(self.reference_embed.dtype), *size)  # (B, V, H, W, 3)
        rays = rays.reshape(batch * views, *size, 3).permute(0, 3, 1, 2)
        rays = F.pixel_unshuffle(rays, self.patch_size)  # (N, 3*p*p, h, w)
        return self.ray_embed(rays.flatten(2).transpose(1, 2))

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        frames_chunk_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Raw predictions (geometry up to scale, in the frame of view 0).

        Args:
            images: ``(B, V, 3, H, W)`` ImageNet-normalized, ``H, W`` multiples of 16.
            intrinsics: optional ``(B, V, 3, 3)`` pinhole intrinsics of every view (pixels).
            frames_chunk_size: views run through the encoder / DPT head at once (all if None).

        Returns a dict: ``ray_directions (B, V, H, W, 3)`` unit, camera frame;
        ``depth_along_ray (B, V, H, W)`` up to scale; ``conf (B, V, H, W)`` >= 1;
        ``cam_quats (B, V, 4)`` and ``cam_trans (B, V, 3)`` camera-to-world (view 0 = identity);
        ``metric_scaling_factor (B,)``; with ``pose_matching`` also ``match_logits
        (B, V, h*w, h*w)``, each view's patches against view 0's.
        """
        batch, views, height, width = self._check_images(images)
        grid = (height // self.patch_size, width // self.patch_size)
        frames = images.reshape(batch * views, 3, height, width)
        encoder_patches, encoder_classes = self._encode(frames, frames_chunk_size)

        patches = self.patch_proj(encoder_patches)
        if intrinsics is not None:
            patches = patches + self._ray_tokens(intrinsics, batch, views, (height, width))
        tokens = self.input_norm(patches)
        if self.config.position_embedding == "sincos":
            tokens = tokens + build_sincos2d_pos_embed(
                list(grid), tokens.shape[-1], device=tokens.device, dtype=tokens.dtype
            )
        if self.class_proj is not None:
            tokens = torch.cat([self.class_proj(encoder_classes), tokens], dim=1)
        n_prefix = tokens.shape[1] - grid[0] * grid[1]
        n_tokens, channels = tokens.shape[1], tokens.shape[2]
        tokens = tokens.reshape(batch, views, n_tokens, channels)
        is_reference = torch.zeros(views, 1, 1, device=tokens.device, dtype=tokens.dtype)
        is_reference[0] = 1.0
        tokens = tokens + is_reference * self.reference_embed
        scale = self.scale_token.expand(batch, 1, channels)

        tokens, scale, hooks = alternating_attention(
            tokens, scale, self.frame_blocks, self.global_blocks, self.config.hook_pairs
        )
        hooks = [*hooks, tokens]

        def patch_map(x: torch.Tensor) -> torch.Tensor:
            x = x.reshape(batch * views, n_tokens, -1)[:, n_prefix:]
            return tokens_to_feature_map(x, grid)

        level_maps = [tokens_to_feature_map(encoder_patches, grid)]
        level_maps += [patch_map(self.norm(h)) for h in hooks]
        dense = torch.cat(
            [
                self.dense_head([m[i] for m in level_maps], (height, width))
                for i in _chunks(batch * views, frames_chunk_size)
            ]
        )  # (N, 5, H, W)
        dense = dense.permute(0, 2, 3, 1).reshape(batch, views, height, width, 5)

        pose_input = level_maps[-1]
        if self.config.pose_matching:
            if self.config.match_features == "encoder":
                per_view = encoder_patches
            else:  # the final trunk tokens, which have seen every view and their positions
                per_view = level_maps[-1].flatten(2).transpose(1, 2)
            per_view = per_view.reshape(batch, views, grid[0] * grid[1], -1)
            match, match_logits = self._match_to_reference(per_view, grid)  # (B, V, h*w, 3)
            match = self.match_embed(match).reshape(batch * views, *grid, channels)
            pose_input = pose_input + match.permute(0, 3, 1, 2)
        quats, trans = self.pose_head(pose_input)
        quats = quats.reshape(batch, views, 4)
        trans = trans.reshape(batch, views, 3)
        # view 0 is the scene frame: identity by construction
        is_first = (torch.arange(views, device=quats.device) == 0).reshape(1, views, 1)
        identity = quats.new_tensor([1.0, 0.0, 0.0, 0.0])
        quats = torch.where(is_first, identity, quats)
        trans = torch.where(is_first, torch.zeros_like(trans), trans)

        log_scale = self.scale_head(self.norm(scale[:, 0])).squeeze(-1)
        extra = {"match_logits": match_logits} if self.config.pose_matching else {}
        return {
            **extra,
            # biased toward the optical axis so an untrained head starts from forward rays
            "ray_directions": F.normalize(
                dense[..., :3] + dense.new_tensor([0.0, 0.0, 1.0]), dim=-1
            ),
            "depth_along_ray": torch.exp(dense[..., 3].clamp(-MAX_LOG, MAX_LOG)),
            "conf": 1.0 + torch.exp(dense[..., 4].clamp(max=MAX_LOG)),
            "cam_quats": quats,
            "cam_trans": trans,
            "metric_scaling_factor": torch.exp(log_scale.clamp(-MAX_LOG, MAX_LOG)),
        }

    def _match_to_reference(
        self, tokens: torch.Tensor, grid: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft matches of every view's patch tokens ``(B, V, h*w, D)`` (the encoder's or the
        trunk's, see ``match_features``) in view 0, through a learnable projection that starts as
        the identity.

        Returns per token the expected position of its match in view 0 minus its own position
        (normalized coordinates in [-1, 1]) and the match probability's peak, ``(B, V, h*w, 3)``,
        and the match logits ``(B, V, h*w, h*w)`` (the loss's ``match`` term supervises them with
        the true correspondences). A flow field is what relative pose is read from; regressing
        pose from pooled tokens alone did not learn."""
        return soft_matches(self.match_proj(tokens), self.match_logit_scale, grid)

    @torch.no_grad()
    def infer(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        keep_match_logits: bool = False,
        autocast_dtype: torch.dtype | None = None,
    ) -> dict[str, torch.Tensor]:
        """Metric reconstruction of ``B`` scenes of ``V`` views each from the network alone (no
        gradients); poses are the pose head's. :func:`pixio_3d.pipeline.predict` adds the
        classical pose solvers (:mod:`pixio_3d.sfm`) on top.

        Args:
            images: ``(B, V, 3, H, W)`` ImageNet-normalized, ``H, W`` multiples of 16, ``V >= 1``.
            intrinsics: optional known ``(B, V, 3, 3)``; they condition the network and replace the
                predicted rays (the returned rays and intrinsics are exactly the given ones).
            keep_match_logits: also return ``match_logits (B, V, h*w, h*w)`` (models with
                ``pose_matching``; the ``matches`` pose solver reads them).
            autocast_dtype: run the network under autocast to this dtype (e.g.
                ``torch.bfloat16``; None: fp32). The outputs are fp32 either way: the geometry
                is composed from the network's outputs cast back to fp32.

        Returns (MapAnything's key names; metric units; world = camera of view 0):
        ``pts3d (B, V, H, W, 3)`` world points, ``pts3d_cam (B, V, H, W, 3)`` camera-frame points,
        ``ray_directions (B, V, H, W, 3)``, ``depth_along_ray (B, V, H, W)``,
        ``depth_z (B, V, H, W)``, ``camera_poses (B, V, 4, 4)`` camera-to-world,
        ``cam_quats (B, V, 4)``, ``cam_trans (B, V, 3)``, ``intrinsics (B, V, 3, 3)``,
        ``conf (B, V, H, W)`` and ``metric_scaling_factor (B,)``.
        """
        with torch.autocast(
            images.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        ):
            raw = self.forward(images, intrinsics, frames_chunk_size=self.config.frames_chunk_size)
        raw = {key: value.float() for key, value in raw.items()}
        height, width = images.shape[-2:]
        if intrinsics is not None:
            raw["ray_directions"] = ray_directions(intrinsics.to(raw["conf"]), height, width)
        out = compose_geometry(raw, intrinsics)
        if keep_match_logits and "match_logits" in raw:
            out["match_logits"] = raw["match_logits"]
        return out


def compose_geometry(
    prediction: dict[str, torch.Tensor], intrinsics: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Metric points, depths, poses and intrinsics from the factored prediction of ``forward``.

    ``X_world = R (m * d * r) + m * t`` with ``m`` the metric scale, ``d`` depth along the unit
    ray ``r`` and ``(R, t)`` the camera-to-world pose. Intrinsics are fitted to the rays unless
    given.
    """
    metric = prediction["metric_scaling_factor"]
    rays = prediction["ray_directions"]
    depth = prediction["depth_along_ray"] * metric[:, None, None, None]
    trans = prediction["cam_trans"] * metric[:, None, None]
    poses = pose_from_quaternion_translation(prediction["cam_quats"], trans)
    points_cam = rays * depth.unsqueeze(-1)
    if intrinsics is None:
        intrinsics = intrinsics_from_rays(rays)
    return {
        "pts3d": transform_points(poses, points_cam),
        "pts3d_cam": points_cam,
        "ray_directions": rays,
        "depth_along_ray": depth,
        "depth_z": points_cam[..., 2],
        "camera_poses": poses,
        "cam_quats": prediction["cam_quats"],
        "cam_trans": trans,
        "intrinsics": intrinsics.to(rays),
        "conf": prediction["conf"],
        "metric_scaling_factor": metric,
    }


def _chunks(total: int, size: int | None) -> list[slice]:
    size = size or total
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]
