"""Self-contained checkpoints of the 3D models (reconstruction, monocular depth, segmentation).

A checkpoint folder (written atomically by :func:`pixio_core.checkpoint.save_checkpoint`):

    model.safetensors   the model's weights; the encoder's too only when it was fine-tuned
    config.json         {"kind": "pixio_3d_model", "task": "reconstruction" | "depth" |
                         "segmentation", "model_config": {...}, "encoder": {"source", "seed",
                         "config"}, "encoder_in_checkpoint": bool, "train": {...}}

With a frozen encoder the weights stay where they are (``encoder.source``, any
:func:`pixio_core.load_encoder` source or ``random:<size>``; a local path is also stored
absolutely and relative to the checkpoint, :func:`pixio_core.loading.encoder_reference`); a
fine-tuned encoder is saved in the checkpoint and rebuilt from ``encoder.config``. The task
names a row of :data:`pixio_3d.tasks.TASKS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pixio_3d.models.released import unique_state_dict
from pixio_3d.tasks import get_task
from pixio_core.checkpoint import (
    LAST_POINTER,
    is_checkpoint_dir,
    load_checkpoint,
    resolve_checkpoint_dir,
    save_checkpoint,
)
from pixio_core.loading import encoder_reference, load_frozen_encoder, resolve_encoder_source
from pixio_core.models.encoder import EncoderConfig, PixioEncoder

KIND = "pixio_3d_model"
ENCODER_PREFIXES = ("encoder.", "predictor.encoder.")


def build_model(task: str, encoder: PixioEncoder, model_config: dict[str, Any]) -> nn.Module:
    """A 3D model of ``task`` (a :data:`pixio_3d.tasks.TASKS` name) on ``encoder`` from plain
    config values."""
    return get_task(task).build_model(encoder, model_config)


def saved_model_config(config: dict[str, Any]) -> dict[str, Any]:
    """The model config of a checkpoint's ``config.json``, completed for checkpoints saved before
    the reconstruction options ``position_embedding``, ``pose_matching`` and ``match_features``
    existed."""
    model_config = dict(config["model_config"])
    if config.get("task") == "reconstruction" and "architecture" not in model_config:
        legacy = {"position_embedding": "none", "pose_matching": False, "match_features": "encoder"}
        model_config = {**legacy, **model_config}
    return model_config


def _is_encoder_key(key: str) -> bool:
    return key.startswith(ENCODER_PREFIXES)


def save_model(
    directory: str | os.PathLike,
    model: nn.Module,
    task: str,
    encoder_source: str,
    encoder_seed: int = 0,
    train: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``; its encoder's weights go in only if any of them is trainable.

    ``train_state`` (tensors and plain values: step, optimizer, RNG) goes to ``train_state.pt``
    in the same atomic write, for exact resume."""
    encoder = _encoder_of(model)
    fine_tuned = any(p.requires_grad for p in encoder.parameters())
    state = {
        k: v for k, v in unique_state_dict(model).items() if fine_tuned or not _is_encoder_key(k)
    }
    config = {
        "kind": KIND,
        "task": task,
        "model_config": model.config.to_dict()
        if hasattr(model.config, "to_dict")
        else dict(vars(model.config)),
        "encoder": encoder_reference(
            encoder_source, encoder_seed, directory, config=encoder.config.to_dict()
        ),
        "encoder_in_checkpoint": fine_tuned,
        "train": dict(train or {}),
    }
    return save_checkpoint(directory, state, config, train_state)


def _encoder_of(model: nn.Module) -> PixioEncoder:
    encoder = getattr(model, "encoder", None) or model.predictor.encoder
    if not isinstance(encoder, PixioEncoder):
        raise TypeError(f"expected a model with a PixioEncoder, got {type(encoder).__name__}")
    return encoder


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode, its config.json)`` from a checkpoint folder, a folder with a
    ``last`` pointer, or a ``pixio-recon-train`` output folder (its ``checkpoints/``)."""
    candidate = Path(path)
    if (
        not is_checkpoint_dir(candidate)
        and not (candidate / LAST_POINTER).is_file()
        and (candidate / "checkpoints" / LAST_POINTER).is_file()
    ):
        path = candidate / "checkpoints"
    directory = resolve_checkpoint_dir(path)
    state, config, _ = load_checkpoint(directory)
    if config.get("kind") != KIND:
        raise ValueError(
            f"{path} is not a pixio_3d model checkpoint (config kind {config.get('kind')!r}, "
            f"expected {KIND!r})"
        )
    reference = config["encoder"]
    if config.get("encoder_in_checkpoint"):
        encoder = PixioEncoder(EncoderConfig.from_dict(reference["config"]))
    else:
        source = resolve_encoder_source(reference, directory)
        encoder, _ = load_frozen_encoder(source, reference.get("seed", 0))
        if encoder.config.to_dict() != reference["config"]:
            raise ValueError(
                f"{path} was trained on an encoder with config {reference['config']}, but "
                f"{source} now holds {encoder.config.to_dict()}"
            )
    model = build_model(config["task"], encoder, saved_model_config(config))
    result = model.load_state_dict(state, strict=False)
    stored = set(unique_state_dict(model))  # one name per tensor (shared modules, MapAnything)
    missing = [
        k
        for k in result.missing_keys
        if k in stored and (config.get("encoder_in_checkpoint") or not _is_encoder_key(k))
    ]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not fit the {config['task']} model "
            f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    encoder.requires_grad_(False)
    return model.to(device).eval(), config
