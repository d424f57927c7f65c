"""Conversion between the official key names and Hugging Face transformers' ``PixioModel`` names."""

from __future__ import annotations

import re
from typing import Any

import torch

from pixio_core.models.encoder import EncoderConfig

_HF_PREFIXES = ("pixio.", "model.")
# Two layouts exist: the serialized one that transformers writes to ``model.safetensors`` and the
# hub holds (ViT-style ``encoder.layer.i.attention.attention.query``, ``intermediate.dense``, ...),
# and the in-memory module names of transformers >= 5 (``layers.i.attention.q_proj``, ...).
_HF_LAYER = re.compile(r"^(?:layers|encoder\.layer)\.(\d+)\.(.+)$")
_HF_TO_OFFICIAL_LAYER = {
    "norm1": "norm1",
    "norm2": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.o_proj": "attn.proj",
    "attention.output.dense": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HF_QKV = {
    "attention.q_proj": 0,
    "attention.k_proj": 1,
    "attention.v_proj": 2,
    "attention.attention.query": 0,
    "attention.attention.key": 1,
    "attention.attention.value": 2,
}
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def is_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(key.removeprefix("pixio.").startswith("embeddings.") for key in state_dict)


def hf_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers ``PixioModel`` state dict to the official names (q, k, v fused)."""
    converted: dict[str, torch.Tensor] = {}
    qkv_parts: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        for prefix in _HF_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if key in _HF_TOP:
            converted[_HF_TOP[key]] = value
            continue
        match = _HF_LAYER.match(key)
        if match is None:
            unknown.append(key)
            continue
        index, rest = int(match.group(1)), match.group(2)
        module, _, param = rest.rpartition(".")
        if module in _HF_TO_OFFICIAL_LAYER:
            converted[f"blocks.{index}.{_HF_TO_OFFICIAL_LAYER[module]}.{param}"] = value
        elif module in _HF_QKV:
            qkv_parts.setdefault((index, param), {})[_HF_QKV[module]] = value
        else:
            unknown.append(key)
    for (index, param), parts in qkv_parts.items():
        if sorted(parts) != [0, 1, 2]:
            raise ValueError(
                f"Hugging Face Pixio layer {index} lacks some of query/key/value {param}"
            )
        converted[f"blocks.{index}.attn.qkv.{param}"] = torch.cat(
            [parts[0], parts[1], parts[2]], dim=0
        )
    # Keys we do not understand are kept so that strict loading reports them as unexpected.
    for key in unknown:
        converted[key] = state_dict.get(key, state_dict.get(f"pixio.{key}"))
    return converted


def official_to_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official names -> the serialized transformers layout (what ``save_pretrained`` writes)."""
    top = {official: hf for hf, official in _HF_TOP.items()}
    layer_names = {
        "norm1": "norm1",
        "norm2": "norm2",
        "attn.proj": "attention.output.dense",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
    }
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key in top:
            converted[top[key]] = value
            continue
        match = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        if match is None:
            raise ValueError(f"cannot convert key {key!r} to the Hugging Face layout")
        index, module, param = match.groups()
        prefix = f"encoder.layer.{index}"
        if module == "attn.qkv":
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                converted[f"{prefix}.attention.attention.{name}.{param}"] = part.contiguous()
        elif module in layer_names:
            converted[f"{prefix}.{layer_names[module]}.{param}"] = value
        else:
            raise ValueError(f"cannot convert key {key!r} to the Hugging Face layout")
    return converted


def hf_config_to_encoder_config(hf_config: dict[str, Any]) -> EncoderConfig:
    """A transformers ``PixioConfig`` (as a dict from ``config.json``) -> :class:`EncoderConfig`."""
    image_size = hf_config.get("image_size", 256)
    patch_size = hf_config.get("patch_size", 16)
    for name, value in (("image_size", image_size), ("patch_size", patch_size)):
        if isinstance(value, list | tuple):
            if len(set(value)) != 1:
                raise ValueError(f"only square {name} is supported in Pixio configs, got {value}")
            value = value[0]
        if name == "image_size":
            image_size = int(value)
        else:
            patch_size = int(value)
    if hf_config.get("hidden_act", "gelu") != "gelu" or not hf_config.get("qkv_bias", True):
        raise ValueError(
            f"unsupported Pixio config: hidden_act={hf_config.get('hidden_act')!r}, "
            f"qkv_bias={hf_config.get('qkv_bias')!r} (expected 'gelu' and true)"
        )
    return EncoderConfig(
        embed_dim=int(hf_config["hidden_size"]),
        depth=int(hf_config["num_hidden_layers"]),
        num_heads=int(hf_config["num_attention_heads"]),
        mlp_ratio=float(hf_config.get("mlp_ratio", 4)),
        patch_size=patch_size,
        image_size=image_size,
        num_class_tokens=int(hf_config.get("n_cls_tokens", 8)),
        layer_norm_eps=float(hf_config.get("layer_norm_eps", 1e-6)),
    )


def encoder_config_to_hf_config(config: EncoderConfig) -> dict[str, Any]:
    mlp_ratio = config.mlp_ratio
    return {
        "model_type": "pixio",
        "architectures": ["PixioModel"],
        "hidden_size": config.embed_dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "mlp_ratio": int(mlp_ratio) if float(mlp_ratio).is_integer() else mlp_ratio,
        "hidden_act": "gelu",
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "num_channels": 3,
        "n_cls_tokens": config.num_class_tokens,
        "layer_norm_eps": config.layer_norm_eps,
        "qkv_bias": True,
    }
