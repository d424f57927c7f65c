"""Self-describing, atomic checkpoints: ``model.safetensors`` + ``config.json`` (+ ``train_state.pt``).

A run directory holds ``step_XXXXXXXX/`` checkpoint folders and a ``last`` file naming the newest.
Every write goes to a temporary sibling first and is then renamed, so a crash never leaves a
half-written checkpoint where a complete one is expected.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pixio_core.io import atomic_directory, atomic_write_text

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAIN_STATE_FILE = "train_state.pt"
LAST_POINTER = "last"
FORMAT_KEY = "pixio_checkpoint"
FORMAT_VERSION = 1

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit what loads it: another architecture or model config
    (missing, unexpected or mis-shaped keys), or an optimizer state of other parameter groups."""


def clean_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes from every key."""
    cleaned = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        cleaned[key] = value
    return cleaned


def save_checkpoint(
    directory: str | os.PathLike,
    state_dict: dict[str, torch.Tensor],
    config: dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically and return its path.

    ``config`` is stored as JSON (plain values only) with a format marker; ``train_state`` holds
    tensors and plain Python values and is read back with ``torch.load(weights_only=True)``.
    """
    directory = Path(directory)
    tensors = {k: v.detach().contiguous().cpu() for k, v in clean_state_dict(state_dict).items()}
    with atomic_directory(directory, overwrite=True) as tmp:
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        payload = {FORMAT_KEY: FORMAT_VERSION, **config}
        (tmp / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE_FILE)
    return directory


def is_checkpoint_dir(path: Path) -> bool:
    config = path / CONFIG_FILE
    if not (config.is_file() and (path / MODEL_FILE).is_file()):
        return False
    try:
        return FORMAT_KEY in json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def write_last_pointer(run_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike) -> None:
    """Point ``run_dir/last`` at ``checkpoint_dir`` (a name relative to ``run_dir``)."""
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / LAST_POINTER, Path(checkpoint_dir).name + "\n")


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """A checkpoint folder itself, or a run folder whose ``last`` file names one."""
    path = Path(path)
    if is_checkpoint_dir(path):
        return path
    pointer = path / LAST_POINTER
    if pointer.is_file():
        target = path / pointer.read_text().strip()
        if is_checkpoint_dir(target):
            return target
        raise FileNotFoundError(
            f"{pointer} names {target}, which is not a complete checkpoint folder"
        )
    raise FileNotFoundError(
        f"{path} is not a Pixio checkpoint folder (expected {MODEL_FILE} + {CONFIG_FILE} with a "
        f"'{FORMAT_KEY}' entry, or a '{LAST_POINTER}' file naming such a folder)"
    )


def load_checkpoint(
    path: str | os.PathLike, with_train_state: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
    """Read ``(state_dict, config, train_state)`` from a checkpoint or run folder."""
    directory = resolve_checkpoint_dir(path)
    model_file = directory / MODEL_FILE
    try:
        state_dict = load_file(str(model_file))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"cannot read {model_file}: {error}") from error
    config = json.loads((directory / CONFIG_FILE).read_text())
    train_state = None
    if with_train_state:
        state_file = directory / TRAIN_STATE_FILE
        if not state_file.is_file():
            raise FileNotFoundError(
                f"{state_file} is missing: this checkpoint cannot resume training"
            )
        train_state = torch.load(state_file, map_location="cpu", weights_only=True)
    return state_dict, config, train_state


def list_step_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete ``step_*`` checkpoint folders of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.glob("step_*") if is_checkpoint_dir(p))


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` step checkpoints (never the one ``last`` names)."""
    run_dir = Path(run_dir)
    pointer = run_dir / LAST_POINTER
    protected = pointer.read_text().strip() if pointer.is_file() else None
    removed = []
    checkpoints = list_step_checkpoints(run_dir)
    for path in checkpoints[: max(0, len(checkpoints) - keep_last)]:
        if path.name != protected:
            shutil.rmtree(path)
            removed.append(path)
    return removed


SHARDED_DIR = "dcp"


def is_sharded_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / SHARDED_DIR).is_dir()


def save_sharded_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: dict[str, Any],
    train_state: dict[str, Any],
    is_main: bool,
) -> Path:
    """An FSDP checkpoint, called on every rank: model + optimizer shards in ``dcp/``
    (torch.distributed.checkpoint, loadable on any number of processes), plus a consolidated
    ``model.safetensors`` + ``config.json`` + ``train_state.pt`` written by the main rank, so that
    ``load_encoder`` reads it like any other checkpoint. Atomic: written to a temporary sibling
    folder, renamed when complete."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_state_dict,
    )

    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp / SHARDED_DIR))
    full = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    if is_main:
        tensors = {k: v.detach().contiguous().cpu() for k, v in full.items()}
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(
            json.dumps({FORMAT_KEY: FORMAT_VERSION, **config}, indent=2, sort_keys=True)
        )
        torch.save(train_state, tmp / TRAIN_STATE_FILE)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    dist.barrier()
    return directory


def load_sharded_checkpoint(
    directory: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Load ``dcp/`` shards into a (sharded or plain) model and its optimizer; returns train_state."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    directory = Path(directory)
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(directory / SHARDED_DIR))
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
    )
    return torch.load(directory / TRAIN_STATE_FILE, map_location="cpu", weights_only=True)
