"""Loading the released MapAnything-with-Pixio weights (and this project's own checkpoints).

Two published layouts hold the same architecture (:class:`~pixio_3d.models.mapanything.MapAnythingModel`):

* **MapAnything's** ``pixio`` model (facebookresearch/map-anything ``configs/model/pixio.yaml``),
  saved with ``PyTorchModelHubMixin``: ``config.json`` (the ``MapAnything`` class's init kwargs)
  and ``model.safetensors`` (written by safetensors' ``save_model``: tensors shared between
  modules are stored under one of their names only).
* **the Pixio repository's** ``map_anything`` package, which loads
  ``facebook/pixio-vith16-mapanything``: ``config.json`` (``name: mapanything_pixio``,
  ``encoder_config`` with ``size``, ``n_cls_tokens``, ...) and ``model.pth`` (a plain state dict,
  read here with ``torch.load(..., weights_only=True)``; the reference loads it with
  ``strict=False``, this loader strictly, naming any key it knowingly skips).

:func:`load_reconstruction_model` takes a hub repo id, a local folder of either layout, or a
pixio_3d checkpoint folder (:func:`pixio_3d.checkpoint.load_model`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pixio_3d.models.mapanything import (
    MAPANYTHING_REPRESENTATION,
    MapAnythingConfig,
    MapAnythingModel,
    UnsupportedReconstructionConfig,
)
from pixio_3d.models.mapanything_heads import released_pose_head_width
from pixio_core.checkpoint import CheckpointMismatchError
from pixio_core.loading import mismatch_report
from pixio_core.models.encoder import EncoderConfig

__all__ = [
    "RELEASED_REPO",
    "config_from_reference",
    "load_reconstruction_model",
    "load_released_folder",
    "reference_config",
    "save_hub_folder",
    "unique_state_dict",
]

RELEASED_REPO = "facebook/pixio-vith16-mapanything"
WEIGHT_FILES = ("model.safetensors", "model.pth")
# Pixio-repo encoder sizes (its map_anything/encoders/pixio_encoder.py): width, depth
PIXIO_SIZES = {"base": (1024, 24), "huge": (1280, 32), "1b": (1536, 48)}
PIXIO_DEFAULT_CLASS_TOKENS = {"base": 1, "huge": 4, "1b": 4}
# UniCeption's PixioEncoder defaults (MapAnything's flavour)
UNICEPTION_PIXIO = {"embed_dim": 1280, "depth": 32, "num_heads": 16, "n_cls_tokens": 8}
# buffers that are a fixed function of the config: rebuilt when a file lacks them
DERIVED_BUFFERS = ("info_sharing.view_pos_table",)


# ------------------------------------------------------------------------------ configs
def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UnsupportedReconstructionConfig(message)


def config_from_reference(
    init_kwargs: dict[str, Any], source: str = "config.json"
) -> MapAnythingConfig:
    """Our :class:`MapAnythingConfig` from a released ``config.json`` (either flavour).

    Raises :class:`UnsupportedReconstructionConfig` naming the value for anything this
    implementation does not build (another encoder, another scene representation, ...).
    """
    if not isinstance(init_kwargs, dict):
        raise UnsupportedReconstructionConfig(f"{source}: expected a JSON object of init kwargs")
    for key in ("encoder_config", "info_sharing_config", "pred_head_config"):
        _require(
            isinstance(init_kwargs.get(key), dict),
            f"{source} is not a MapAnything config: no {key!r} object "
            f"(found keys {sorted(init_kwargs)})",
        )
    encoder = init_kwargs["encoder_config"]
    encoder_name = str(encoder.get("encoder_str", encoder.get("name", "pixio")))
    _require(
        "pixio" in encoder_name.lower(),
        f"{source}: the encoder of this MapAnything model is {encoder_name!r}; pixio_3d builds "
        "MapAnything with a Pixio encoder only (encoder_str 'pixio')",
    )
    if "size" in encoder:  # the Pixio repo's flavour
        size = encoder["size"]
        _require(
            size in PIXIO_SIZES,
            f"{source}: unknown Pixio encoder size {size!r}; known: {sorted(PIXIO_SIZES)}",
        )
        width, depth = PIXIO_SIZES[size]
        cls_tokens = encoder.get("n_cls_tokens") or PIXIO_DEFAULT_CLASS_TOKENS[size]
        heads = encoder.get("num_heads", 16)
    else:  # MapAnything / UniCeption: ViT-H/16 unless the kwargs say otherwise
        width = encoder.get("embed_dim", UNICEPTION_PIXIO["embed_dim"])
        depth = encoder.get("depth", UNICEPTION_PIXIO["depth"])
        heads = encoder.get("num_heads", UNICEPTION_PIXIO["num_heads"])
        cls_tokens = encoder.get("n_cls_tokens", UNICEPTION_PIXIO["n_cls_tokens"])
    encoder_config = EncoderConfig(
        embed_dim=int(width),
        depth=int(depth),
        num_heads=int(heads),
        mlp_ratio=float(encoder.get("mlp_ratio", 4.0)),
        patch_size=int(encoder.get("patch_size", 16)),
        image_size=int(encoder.get("img_size", 256)),
        num_class_tokens=int(cls_tokens),
    )

    info = init_kwargs["info_sharing_config"]
    _require(
        info.get("model_type", "alternating_attention") == "alternating_attention",
        f"{source}: info_sharing model_type {info.get('model_type')!r} is not supported "
        "(only 'alternating_attention')",
    )
    _require(
        info.get("model_return_type", "intermediate_features") == "intermediate_features",
        f"{source}: info_sharing model_return_type {info.get('model_return_type')!r} is not "
        "supported (only 'intermediate_features')",
    )
    _require(
        info.get("custom_positional_encoding") is None,
        f"{source}: custom_positional_encoding {info.get('custom_positional_encoding')!r} is not supported",
    )
    _require(
        init_kwargs.get("info_sharing_mlp_layer_str", "mlp") == "mlp",
        f"{source}: info_sharing_mlp_layer_str {init_kwargs.get('info_sharing_mlp_layer_str')!r} "
        "is not supported (only 'mlp')",
    )
    _require(
        not init_kwargs.get("use_register_tokens_from_encoder", False),
        f"{source}: use_register_tokens_from_encoder is not supported",
    )
    args = info.get("module_args", {})
    _require(
        not args.get("use_pe_for_non_reference_views", False),
        f"{source}: use_pe_for_non_reference_views (random view embeddings) is not supported",
    )
    _require(
        not args.get("use_scalable_softmax", False) and not args.get("use_entropy_scaling", False),
        f"{source}: scalable softmax / entropy scaling attention is not supported",
    )
    indices = args.get("indices", [11, 17])
    _require(
        isinstance(indices, list) and len(indices) == 2,
        f"{source}: info_sharing indices {indices!r}: only 2 intermediate layers (DPT on the "
        "encoder features + 2 intermediate + final) are supported",
    )

    head = init_kwargs["pred_head_config"]
    _require(
        head.get("type") == "dpt+pose",
        f"{source}: pred_head type {head.get('type')!r} is not supported (only 'dpt+pose')",
    )
    representation = head.get("adaptor_type")
    _require(
        representation == MAPANYTHING_REPRESENTATION,
        f"{source}: scene representation {representation!r} is not supported; pixio_3d builds "
        f"{MAPANYTHING_REPRESENTATION!r} (+ metric scale), the released model's",
    )
    dense = head.get("dpt_adaptor", {})
    _require(
        dense.get("ray_directions_mode", "linear") == "linear"
        and dense.get("ray_directions_normalize_to_unit_sphere", True)
        and not dense.get("ray_directions_clamp_min_of_z_dir", False),
        f"{source}: ray direction adaptor settings {dense} are not supported "
        "(linear, normalized to the unit sphere)",
    )
    _require(
        dense.get("confidence_type", "exp") == "exp",
        f"{source}: confidence_type {dense.get('confidence_type')!r} is not supported (only 'exp')",
    )
    pose = head.get("pose_adaptor", {})
    _require(
        pose.get("cam_trans_mode", "linear") == "linear"
        and pose.get("quaternions_mode", "linear") == "linear"
        and pose.get("quaternions_normalize", True),
        f"{source}: pose adaptor settings {pose} are not supported (linear, normalized quaternions)",
    )
    _require(
        head.get("pose_head", {}).get("rot_representation_dim", 4) == 4,
        f"{source}: only quaternion rotations (rot_representation_dim 4) are supported",
    )
    scale = head.get("scale_adaptor", {})
    feature = head.get("feature_head", {})
    _require(
        list(feature.get("hooks", [0, 1, 2, 3])) == [0, 1, 2, 3],
        f"{source}: DPT hooks {feature.get('hooks')!r} are not supported (only [0, 1, 2, 3])",
    )
    regressor = head.get("regressor_head", {})
    _require(
        regressor.get("output_dim", 6) == 6,
        f"{source}: the DPT regressor has {regressor.get('output_dim')} outputs; the "
        f"{MAPANYTHING_REPRESENTATION!r} representation has 6",
    )
    geometric = init_kwargs.get("geometric_input_config", {})

    def dims(key: str, default: list[int]) -> tuple[int, ...]:
        return tuple(geometric.get(key, {}).get("intermediate_dims", default))

    dense_dims = dims("ray_dirs_encoder_config", [588, 768, 1024])
    global_dims = dims("cam_rot_encoder_config", [128, 256, 512])
    for key, want in (("depth_encoder_config", dense_dims), ("cam_trans_encoder_config", global_dims),
                      ("scale_encoder_config", global_dims)):  # fmt: skip
        _require(
            dims(key, list(want)) == want,
            f"{source}: {key} intermediate_dims differ from the other inputs' ({want})",
        )
    for key in ("ray_dirs_encoder_config", "depth_encoder_config"):
        _require(
            not geometric.get(key, {}).get("apply_pe", False),
            f"{source}: {key} apply_pe is not supported",
        )
    return MapAnythingConfig(
        encoder=encoder_config,
        encoder_checkpoint_wrapper=bool(encoder.get("gradient_checkpointing", True)),
        dim=int(args.get("dim", 768)),
        depth=int(args.get("depth", 12)),
        num_heads=int(args.get("num_heads", 12)),
        mlp_ratio=float(args.get("mlp_ratio", 4.0)),
        qkv_bias=bool(args.get("qkv_bias", True)),
        qk_norm=bool(args.get("qk_norm", False)),
        layer_scale=args.get("init_values"),
        intermediate_layers=tuple(int(i) for i in indices),  # type: ignore[arg-type]
        norm_intermediate=bool(args.get("norm_intermediate", True)),
        distinguish_reference_view=bool(args.get("distinguish_ref_and_non_ref_views", True)),
        dpt_feature_dim=int(feature.get("feature_dim", 256)),
        dpt_layer_dims=tuple(feature.get("layer_dims", [96, 192, 384, 768])),  # type: ignore[arg-type]
        regressor_hidden_dims=(
            tuple(regressor["hidden_dims"]) if regressor.get("hidden_dims") else None  # type: ignore[arg-type]
        ),
        pose_resconv_blocks=int(head.get("pose_head", {}).get("num_resconv_block", 2)),
        scale_hidden_dim=int(head.get("scale_head", {}).get("hidden_dim", 196)),
        scale_mlp_layers=int(head.get("scale_head", {}).get("num_mlp_layers", 2)),
        dense_input_dims=dense_dims,
        global_input_dims=global_dims,
        depth_mode=str(dense.get("depth_mode", "exp")),
        confidence_vmin=float(dense.get("confidence_vmin", 1.0)),
        scale_mode=str(scale.get("mode", "exp")),
        scale_vmin=float(scale.get("vmin", 1e-8)),
    )


def reference_config(config: MapAnythingConfig) -> dict[str, Any]:
    """MapAnything's ``config.json`` (init kwargs of its ``MapAnything`` class, ``pixio`` model)
    for ``config``: what :func:`save_hub_folder` writes and :func:`config_from_reference` reads."""
    if config.pose_matching:
        raise UnsupportedReconstructionConfig(
            "a model with pose_matching (this project's extra) has no MapAnything config; save "
            "it as a pixio_3d checkpoint (pixio_3d.checkpoint.save_model)"
        )
    released_width = released_pose_head_width(config.encoder.patch_size)
    if config.pose_head_width not in (None, released_width):
        raise UnsupportedReconstructionConfig(
            f"pose_head_width={config.pose_head_width} (released: {released_width}, 4 x patch "
            "size^2) has no MapAnything config; save it as a pixio_3d checkpoint "
            "(pixio_3d.checkpoint.save_model)"
        )
    enc = config.encoder
    name = "raydirs+depth+pose+confidence+mask+scale"
    dense_dims, global_dims = list(config.dense_input_dims), list(config.global_input_dims)
    inf = float("inf")
    return {
        "name": "pixio",
        "encoder_config": {
            "encoder_str": "pixio",
            "name": "pixio",
            "data_norm_type": "pixio",
            "gradient_checkpointing": config.encoder_checkpoint_wrapper,
            "uses_torch_hub": False,
            "embed_dim": enc.embed_dim,
            "depth": enc.depth,
            "num_heads": enc.num_heads,
            "mlp_ratio": enc.mlp_ratio,
            "patch_size": enc.patch_size,
            "img_size": enc.image_size,
            "n_cls_tokens": enc.num_class_tokens,
        },
        "info_sharing_config": {
            "model_type": "alternating_attention",
            "model_return_type": "intermediate_features",
            "custom_positional_encoding": None,
            "module_args": {
                "name": f"aat_{config.depth}_layers_ifr",
                "indices": list(config.intermediate_layers),
                "norm_intermediate": config.norm_intermediate,
                "size": f"{config.depth}_layers",
                "depth": config.depth,
                "dim": config.dim,
                "num_heads": config.num_heads,
                "mlp_ratio": config.mlp_ratio,
                "qkv_bias": config.qkv_bias,
                "qk_norm": config.qk_norm,
                "init_values": config.layer_scale,
                "distinguish_ref_and_non_ref_views": config.distinguish_reference_view,
                "gradient_checkpointing": False,
            },
        },
        "pred_head_config": {
            "type": "dpt+pose",
            "feature_head": {
                "feature_dim": config.dpt_feature_dim,
                "hooks": [0, 1, 2, 3],
                "layer_dims": list(config.dpt_layer_dims),
                "checkpoint_gradient": False,
            },
            "regressor_head": {
                "output_dim": 6,
                "checkpoint_gradient": False,
                **(
                    {"hidden_dims": list(config.regressor_hidden_dims)}
                    if config.regressor_hidden_dims
                    else {}
                ),
            },
            "pose_head": {
                "num_resconv_block": config.pose_resconv_blocks,
                "rot_representation_dim": 4,
            },
            "scale_head": {
                "output_dim": 1,
                "hidden_dim": config.scale_hidden_dim,
                "num_mlp_layers": config.scale_mlp_layers,
            },
            "adaptor_type": MAPANYTHING_REPRESENTATION,
            "dpt_adaptor": {
                "name": name,
                "ray_directions_mode": "linear",
                "ray_directions_normalize_to_unit_sphere": True,
                "ray_directions_normalize_to_unit_image_plane": False,
                "ray_directions_vmin": -inf,
                "ray_directions_vmax": inf,
                "ray_directions_clamp_min_of_z_dir": False,
                "ray_directions_z_dir_min": -inf,
                "depth_mode": config.depth_mode,
                "depth_vmin": 0,
                "depth_vmax": inf,
                "confidence_type": "exp",
                "confidence_vmin": config.confidence_vmin,
                "confidence_vmax": inf,
            },
            "pose_adaptor": {
                "name": name,
                "cam_trans_mode": "linear",
                "cam_trans_vmin": -inf,
                "cam_trans_vmax": inf,
                "quaternions_mode": "linear",
                "quaternions_normalize": True,
                "quaternions_vmin": -inf,
                "quaternions_vmax": inf,
            },
            "scale_adaptor": {
                "name": name,
                "mode": config.scale_mode,
                "vmin": config.scale_vmin,
                "vmax": inf,
            },
            "gradient_checkpointing": False,
        },
        "geometric_input_config": {
            "overall_prob": 0,
            "dropout_prob": 1,
            "ray_dirs_prob": 0,
            "depth_prob": 0,
            "cam_prob": 0,
            "sparse_depth_prob": 0,
            "sparsification_removal_percent": 0,
            "depth_scale_norm_all_prob": 0,
            "pose_scale_norm_all_prob": 0,
            "ray_dirs_encoder_config": {
                "name": "ray_dirs_encoder",
                "in_chans": 3,
                "encoder_str": "dense_rep_encoder",
                "apply_pe": False,
                "intermediate_dims": dense_dims,
            },
            "depth_encoder_config": {
                "name": "depth_encoder",
                "in_chans": 1,
                "encoder_str": "dense_rep_encoder",
                "apply_pe": False,
                "intermediate_dims": dense_dims,
            },
            "cam_rot_encoder_config": {
                "name": "cam_rot_quats_encoder",
                "in_chans": 4,
                "encoder_str": "global_rep_encoder",
                "intermediate_dims": global_dims,
            },
            "cam_trans_encoder_config": {
                "name": "cam_trans_encoder",
                "in_chans": 3,
                "encoder_str": "global_rep_encoder",
                "intermediate_dims": global_dims,
            },
            "scale_encoder_config": {
                "name": "scale_encoder",
                "in_chans": 1,
                "encoder_str": "global_rep_encoder",
                "intermediate_dims": global_dims,
            },
        },  # fmt: skip
    }


# ------------------------------------------------------------------------------ weights
def alias_groups(module: nn.Module) -> list[list[str]]:
    """The state-dict names of each tensor, shared tensors grouped (one group per tensor)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def unique_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with each shared tensor under its first name only (the name
    ``named_parameters`` gives it): what safetensors can write."""
    state = module.state_dict()
    return {group[0]: state[group[0]] for group in alias_groups(module)}


def load_strict_with_aliases(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    source: str,
    derived: tuple[str, ...] = DERIVED_BUFFERS,
) -> list[str]:
    """Load every tensor of ``model`` from ``state_dict``, where a shared tensor may appear under
    any one of its names (safetensors ``save_model`` keeps one). Raises
    :class:`CheckpointMismatchError` listing missing, unexpected and mis-shaped keys; returns the
    ``derived`` keys the file lacked (kept as built: fixed functions of the config)."""
    groups = alias_groups(model)
    expected = model.state_dict(keep_vars=True)
    known = {name for group in groups for name in group}
    full: dict[str, torch.Tensor] = {}
    missing, skipped, wrong = [], [], []
    for group in groups:
        present = [name for name in group if name in state_dict]
        if not present:
            if all(name in derived for name in group):
                skipped.extend(group)
                for name in group:
                    full[name] = expected[name].detach()
                continue
            missing.append(group[0])
            continue
        tensor = state_dict[present[0]]
        target = expected[group[0]]
        if tuple(tensor.shape) != tuple(target.shape):
            wrong.append(
                f"{present[0]}: checkpoint {tuple(tensor.shape)} vs model {tuple(target.shape)}"
            )
        elif tensor.is_floating_point() != target.is_floating_point():
            wrong.append(f"{present[0]}: checkpoint dtype {tensor.dtype} vs model {target.dtype}")
        for name in group:
            full[name] = tensor
    unexpected = sorted(set(state_dict) - known)
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(
            mismatch_report(f"{source} does not fit MapAnythingModel:", missing, unexpected, wrong)
        )
    dtype = {name: t.dtype for name, t in expected.items()}
    model.load_state_dict({k: v.to(dtype[k]) for k, v in full.items()}, strict=True, assign=True)
    return skipped


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointMismatchError(
                f"{path} is not a readable safetensors file (truncated or corrupt?): {error}"
            ) from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets one clear message
            raise CheckpointMismatchError(
                f"{path} is not a readable PyTorch state dict: {error}"
            ) from None
    except Exception as error:  # noqa: BLE001
        raise CheckpointMismatchError(
            f"{path} is not a readable PyTorch state dict: {error}"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointMismatchError(f"{path} does not hold a state dict of tensors")
    return data


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UnsupportedReconstructionConfig(f"{path} is not valid JSON: {error}") from None


def load_released_folder(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> MapAnythingModel:
    """A :class:`MapAnythingModel` (eval mode) from a folder of either released layout."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json (expected config.json + one of {WEIGHT_FILES})"
        )
    init_kwargs = _read_json(config_path)
    config = config_from_reference(init_kwargs, str(config_path))
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(
            f"{folder} has config.json but no weights (expected one of {WEIGHT_FILES})"
        )
    state_dict = _read_weights(weights)
    with torch.device("meta"):
        model = MapAnythingModel(config)
    # derived buffers are rebuilt on the CPU (meta tensors hold no values)
    model.info_sharing.to_empty(device="cpu", recurse=False)
    if config.distinguish_reference_view:
        from pixio_3d.models.mapanything import view_embedding_table

        model.info_sharing.view_pos_table = view_embedding_table(1, config.dim)
    skipped = load_strict_with_aliases(model, state_dict, str(weights))
    leftover = [n for n, t in model.state_dict().items() if t.is_meta]
    if leftover:  # pragma: no cover - every key is loaded or derived above
        raise CheckpointMismatchError(f"{weights}: no values for {leftover[:5]}")
    model.load_report = {
        "source": str(weights),
        "skipped_derived": skipped,
        "reference_config": init_kwargs,
    }
    return model.to(device).eval()


def save_hub_folder(model: MapAnythingModel, folder: str | os.PathLike) -> Path:
    """Write ``model`` as MapAnything's hub layout (``config.json`` + ``model.safetensors``, shared
    tensors once) into a new or empty ``folder``."""
    from safetensors.torch import save_model

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; choose a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(reference_config(model.config), indent=2))
    save_model(model, str(folder / "model.safetensors"))
    return folder


# ---------------------------------------------------------------------------- any source
def _looks_like_repo_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def _download(repo_id: str, revision: str | None) -> Path:
    """The hub files of ``repo_id`` in the local cache (downloaded when online)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    def fetch(name: str) -> Path:
        return Path(hf_hub_download(repo_id, name, revision=revision))

    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # one clear message below, not a retry log per file
    try:
        config = fetch("config.json")
        for name in WEIGHT_FILES:
            try:
                fetch(name)
                break
            except EntryNotFoundError:
                continue
        else:
            raise FileNotFoundError(f"the hub repo {repo_id} has none of {WEIGHT_FILES}")
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"could not download {repo_id} (offline or no access). Download it on a machine "
            f"with access (accept its licence on huggingface.co first), e.g. "
            f"`huggingface-cli download {repo_id} --local-dir DIR`, so that DIR holds "
            f"config.json and model.pth (or model.safetensors), and pass DIR instead"
        ) from None
    return config.parent


def load_reconstruction_model(
    source: str | os.PathLike, device: str | torch.device = "cpu", revision: str | None = None
) -> nn.Module:
    """A reconstruction model in eval mode from ``source``:

    * a pixio_3d checkpoint folder (or a ``pixio-recon-train`` output folder);
    * a local folder of MapAnything's or the Pixio repo's layout (``config.json`` +
      ``model.safetensors`` / ``model.pth``);
    * a hub repo id such as ``facebook/pixio-vith16-mapanything`` (downloaded with
      huggingface_hub when online; offline a clear error says which files to place where).

    Every model returned has ``infer(images (B, V, 3, H, W), intrinsics=None)`` with the same
    output keys.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            config = _read_json(path / "config.json")
            if isinstance(config, dict) and "encoder_config" in config:
                return load_released_folder(path, device)
        from pixio_3d.checkpoint import load_model

        model, _ = load_model(path, device=device)
        return model
    text = str(source)
    if path.exists():
        raise ValueError(f"{source} is a file; pass the folder that holds it")
    if _looks_like_repo_id(text):
        return load_released_folder(_download(text, revision), device)
    raise FileNotFoundError(
        f"{source} is neither a folder nor a hub repo id (owner/name, e.g. {RELEASED_REPO})"
    )
