"""Self-describing, atomic checkpoints: ``model.safetensors`` + ``config.json`` (+ ``train_state.pt``).

A run directory holds ``step_XXXXXXXX/`` checkpoint folders and a ``last`` file naming the newest.
Every write goes to a temporary sibling first and is then renamed, so a crash never leaves a
half-written checkpoint where a complete one is expected.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
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
FILES_KEY = "files"  # config.json: {file name: SHA-256} of the checkpoint's other files
CONFIG_HASH_KEY = "config_sha256"  # config.json: SHA-256 of the rest of config.json
STEP_PATTERN = re.compile(r"^step_\d+$")
# what atomic writes of step checkpoints leave when a run is killed mid-write
# leftovers of killed writes: checkpoint folders (.step_N.<random>.tmp / .old, .step_N.tmp) and
# the `last` pointer's temporary file (.last.<random>.tmp, pixio_core.io.atomic_write_text)
STALE_PATTERN = re.compile(r"^\.step_\d+\..*\.(tmp|old)$|^\.step_\d+\.tmp$|^\.last\.[^.]+\.tmp$")

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class NonFiniteCheckpointError(ValueError):
    """Weights or optimizer state hold NaN/inf: nothing is written (the last good checkpoint
    stays the newest)."""


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

    ``config`` is stored as JSON (plain values only) with a format marker and the SHA-256 of
    every other file (``files``), which :func:`load_checkpoint` verifies; ``train_state`` holds
    tensors and plain Python values and is read back with ``torch.load(weights_only=True)``.
    Non-finite weights or optimizer state raise :class:`NonFiniteCheckpointError` before anything
    is written.
    """
    directory = Path(directory)
    tensors = {k: v.detach().contiguous().cpu() for k, v in clean_state_dict(state_dict).items()}
    check_finite(tensors, f"the weights of {directory}")
    if train_state is not None and "optimizer" in train_state:
        check_finite(_optimizer_tensors(train_state["optimizer"]), f"the optimizer of {directory}")
    with atomic_directory(directory, overwrite=True) as tmp:
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE_FILE)
        _write_config(tmp, config)
    return directory


def _write_config(folder: Path, config: dict[str, Any]) -> None:
    """``config.json`` of a checkpoint folder: ``config`` with the format marker, the SHA-256 of
    every other file in ``folder`` and its own hash (what :func:`load_checkpoint` verifies)."""
    files = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}
    payload = {FORMAT_KEY: FORMAT_VERSION, **config, FILES_KEY: files}
    payload[CONFIG_HASH_KEY] = config_sha256(payload)
    (folder / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))


def check_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    """Raise :class:`NonFiniteCheckpointError` naming the first floating tensor of ``tensors``
    that holds NaN or inf."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            raise NonFiniteCheckpointError(
                f"{what}: {name} holds {count} non-finite value(s); not written (the last good "
                "checkpoint is kept)"
            )


def _optimizer_tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    found = {}
    for index, values in state.get("state", {}).items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                found[f"state[{index}].{key}"] = value
    return found


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def config_sha256(config: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint config's canonical JSON, without its own hash entry."""
    plain = {key: value for key, value in config.items() if key != CONFIG_HASH_KEY}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def verify_files(directory: Path, config: dict[str, Any], names: tuple[str, ...]) -> None:
    """Check the SHA-256 the checkpoint recorded of its ``config.json`` and of each of ``names``
    (checkpoints written before hashes were recorded pass); a ``ValueError`` names a changed or
    damaged file."""
    if CONFIG_HASH_KEY in config and config_sha256(config) != config[CONFIG_HASH_KEY]:
        raise ValueError(
            f"{directory / CONFIG_FILE} does not match the SHA-256 it recorded: it was edited "
            "after it was written (a changed architecture or setting would build a wrong model)"
        )
    recorded = config.get(FILES_KEY) or {}
    for name in names:
        if name in recorded and file_sha256(directory / name) != recorded[name]:
            raise ValueError(
                f"{directory / name} does not match the SHA-256 its checkpoint recorded: the "
                "file was changed or damaged after it was written (flipped bits, a cut copy)"
            )


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
    """A checkpoint folder itself, or a run folder whose ``last`` file names one. A run folder
    whose ``last`` is missing or names no complete checkpoint falls back to its newest complete
    ``step_*`` checkpoint, with a warning."""
    path = Path(path)
    if is_checkpoint_dir(path):
        return path
    pointer = path / LAST_POINTER
    newest = list_step_checkpoints(path)
    if pointer.is_file():
        target = path / pointer.read_text().strip()
        if is_checkpoint_dir(target):
            return target
        if not newest:
            raise FileNotFoundError(
                f"{pointer} names {target}, which is not a complete checkpoint folder"
            )
        warnings.warn(
            f"{pointer} names {target.name}, which is not a complete checkpoint; using the newest "
            f"complete one, {newest[-1].name}",
            stacklevel=2,
        )
        return newest[-1]
    if newest:
        warnings.warn(
            f"{path} has no '{LAST_POINTER}' pointer; using its newest complete checkpoint, "
            f"{newest[-1].name}",
            stacklevel=2,
        )
        return newest[-1]
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
    config = json.loads((directory / CONFIG_FILE).read_text())
    verify_files(directory, config, (MODEL_FILE,))
    try:
        state_dict = load_file(str(model_file))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"cannot read {model_file}: {error}") from error
    train_state = None
    if with_train_state:
        state_file = directory / TRAIN_STATE_FILE
        if not state_file.is_file():
            raise FileNotFoundError(
                f"{state_file} is missing: this checkpoint cannot resume training"
            )
        verify_files(directory, config, (TRAIN_STATE_FILE,))
        train_state = torch.load(state_file, map_location="cpu", weights_only=True)
    return state_dict, config, train_state


def list_step_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete ``step_*`` checkpoint folders of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(
        p for p in run_dir.iterdir() if STEP_PATTERN.match(p.name) and is_checkpoint_dir(p)
    )


def remove_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Delete what killed checkpoint writes left in ``run_dir`` (``.step_*...tmp`` / ``.old``
    folders of our atomic writes and ``.last.*.tmp`` pointer files, nothing else); returns what
    was removed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    stale = [p for p in run_dir.iterdir() if STALE_PATTERN.match(p.name)]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return stale


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
    ``load_encoder`` reads it like any other checkpoint (with the SHA-256 of each of those files,
    verified at load). Atomic: written to a temporary sibling folder, renamed when complete.
    Every rank checks its shards finite first; a NaN or inf anywhere raises
    :class:`NonFiniteCheckpointError` on all ranks and nothing is written."""
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
    _check_finite_on_every_rank(model_state, optim_state, directory, tmp, is_main)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp / SHARDED_DIR))
    full = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    if is_main:
        tensors = {k: v.detach().contiguous().cpu() for k, v in full.items()}
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        torch.save(train_state, tmp / TRAIN_STATE_FILE)
        _write_config(tmp, config)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    dist.barrier()
    return directory


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor  # DTensor shard


def _check_finite_on_every_rank(
    model_state: dict[str, Any],
    optim_state: dict[str, Any],
    directory: Path,
    tmp: Path,
    is_main: bool,
) -> None:
    """Each rank checks its own shards; all ranks raise :class:`NonFiniteCheckpointError` (the
    first bad tensor named) when any holds NaN or inf, before a file is written."""
    import torch.distributed as dist

    message = ""
    try:
        check_finite({k: _local(v) for k, v in model_state.items()}, f"the weights of {directory}")
        optim = {k: _local(v) for k, v in _optimizer_tensors(optim_state).items()}
        check_finite(optim, f"the optimizer of {directory}")
    except NonFiniteCheckpointError as error:
        message = str(error)
    first = next(iter(model_state.values()), None)
    device = _local(first).device if first is not None else torch.device("cpu")
    flag = torch.tensor([float(bool(message))], device=device)  # NCCL reduces CUDA tensors
    dist.all_reduce(flag)
    if flag.item():
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise NonFiniteCheckpointError(
            message
            or f"another rank found non-finite values for {directory}; not written "
            "(the last good checkpoint is kept)"
        )


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
