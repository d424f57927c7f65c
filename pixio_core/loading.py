"""``load_encoder``: one entry point for every way a Pixio encoder is stored.

Sources, tried in this order:

* a folder of this project (``model.safetensors`` + ``config.json``, or a run folder with ``last``);
* a Hugging Face transformers ``PixioModel`` folder (``config.json`` with ``model_type: pixio``);
* an official ``.pth`` state dict (or ``.safetensors``), sizes inferred from the tensor shapes;
* ``hf://<repo_id>/<filename>``: a file of a Hugging Face repo, fetched with huggingface_hub;
* a registered official name such as ``pixio_vith16``: the released ``.pth`` from the hub;
* a shipped name such as ``pixio_sim_vitt16``: weights this project trained, inside the package
  (:data:`~pixio_core.models.registry.SHIPPED_ENCODERS`; no download).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pixio_core.checkpoint import (
    CONFIG_FILE,
    LAST_POINTER,
    MODEL_FILE,
    CheckpointMismatchError,
    clean_state_dict,
    is_checkpoint_dir,
    load_checkpoint,
    resolve_checkpoint_dir,
    save_checkpoint,
)
from pixio_core.convert import (
    encoder_config_to_hf_config,
    hf_config_to_encoder_config,
    hf_to_official,
    is_hf_state_dict,
    official_to_hf,
)
from pixio_core.io import atomic_file
from pixio_core.models.encoder import EncoderConfig, PixioEncoder
from pixio_core.models.mae import PixioMAE
from pixio_core.models.registry import (
    ENCODER_SIZES,
    OFFICIAL_ENCODERS,
    SHIPPED_ENCODERS,
    create_encoder,
)
from pixio_core.quantization import ENCODER_PRECISIONS, quantize_linear_int8

WEIGHTS_DIR = Path(__file__).parent / "weights"

HUB_ORG = "facebook"
# Keys of training-time heads that are not part of the encoder: the MAE decoder (official
# pre-training checkpoints) and the distillation projection head.
_NON_ENCODER = re.compile(r"^(decoder_|mask_token|last_proj\.)")


def official_hub_file(name: str) -> tuple[str, str]:
    """``(repo_id, filename)`` of a released checkpoint, e.g. ``facebook/pixio-vith16``."""
    variant = name.removeprefix("pixio_")
    return f"{HUB_ORG}/pixio-{variant}", f"pixio_{variant}.pth"


# ----------------------------------------------------------------------------- state dicts
def shipped_encoder_dir(name: str) -> Path:
    """The folder of a shipped encoder (``config.json``, ``model.safetensors``, its model card,
    training log and the command that made it); a clear error when the package lacks it."""
    if name not in SHIPPED_ENCODERS:
        raise ValueError(
            f"{name!r} is not a shipped encoder; shipped: {', '.join(SHIPPED_ENCODERS)}"
        )
    path = WEIGHTS_DIR / name
    if not (path / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"the shipped encoder {name!r} is missing from this installation ({path / MODEL_FILE}); "
            f"reinstall pixio or pass a checkpoint path"
        )
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file or a ``torch.save``d state dict (``weights_only=True``).

    A ``{"model": state_dict}`` wrapper (official training checkpoints) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a broken file raises many kinds (KeyError, EOFError, ...)
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupted, or not a state "
            f"dict saved with torch.save; only tensors and plain values are loaded): {error}"
        ) from error
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (got {type(obj).__name__})")
    return clean_state_dict(obj)


def infer_encoder_config(
    state_dict: dict[str, torch.Tensor], source: str = "state dict", num_heads: int | None = None
) -> EncoderConfig:
    """Rebuild the architecture from tensor shapes (official key names).

    The head count is the one thing shapes do not tell: it is taken from the registered size of
    the same width, or must be given as ``num_heads``.
    """
    required = [
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "norm.weight",
        "blocks.0.mlp.fc1.weight",
    ]
    missing = [key for key in required if key not in state_dict]
    if missing:
        found = ", ".join(list(state_dict)[:6]) or "nothing"
        raise CheckpointMismatchError(
            f"{source} is not a Pixio encoder checkpoint: missing {missing} (found keys: {found}, ...)"
        )
    cls_token, pos_embed = state_dict["cls_token"], state_dict["pos_embed"]
    patch_weight = state_dict["patch_embed.proj.weight"]
    if cls_token.ndim != 3 or pos_embed.ndim != 3 or patch_weight.ndim != 4:
        raise CheckpointMismatchError(
            f"{source}: unexpected ranks cls_token {tuple(cls_token.shape)}, pos_embed "
            f"{tuple(pos_embed.shape)}, patch_embed.proj.weight {tuple(patch_weight.shape)}"
        )
    dim, n_cls = cls_token.shape[2], cls_token.shape[1]
    n_patches = pos_embed.shape[1] - n_cls
    side = round(n_patches**0.5)
    if side * side != n_patches:
        raise CheckpointMismatchError(
            f"{source}: pos_embed has {pos_embed.shape[1]} rows, which is not {n_cls} class-token "
            f"rows plus a square patch grid"
        )
    block_ids = {int(m.group(1)) for key in state_dict if (m := re.match(r"^blocks\.(\d+)\.", key))}
    depth = max(block_ids) + 1
    hidden = state_dict["blocks.0.mlp.fc1.weight"].shape[0]
    if num_heads is None:
        num_heads = next((h for d, _, h, _ in ENCODER_SIZES.values() if d == dim), None)
    if num_heads is None:
        widths = sorted({d for d, _, _, _ in ENCODER_SIZES.values()})
        raise ValueError(
            f"{source}: width {dim} matches no registered size {widths}, so the number of attention "
            f"heads cannot be inferred from the tensor shapes; pass num_heads=..."
        )
    return EncoderConfig(
        embed_dim=dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=hidden / dim,
        patch_size=patch_weight.shape[-1],
        image_size=side * patch_weight.shape[-1],
        num_class_tokens=n_cls,
    )


def load_state_dict_strict(
    encoder: PixioEncoder, state_dict: dict[str, torch.Tensor], source: str
) -> None:
    """Load strictly; on mismatch list the missing, unexpected and wrongly shaped keys."""
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    wrong += [  # an integer tensor copied into a float weight would be read as numbers, silently
        f"{key}: checkpoint dtype {state_dict[key].dtype} vs model {expected[key].dtype}"
        for key in expected
        if key in state_dict
        and expected[key].is_floating_point() != state_dict[key].is_floating_point()
    ]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(
            mismatch_report(
                f"{source} does not fit a Pixio encoder with {encoder.config}:",
                missing,
                unexpected,
                wrong,
            )
        )
    encoder.load_state_dict(state_dict, strict=True)


def mismatch_report(
    headline: str, missing: list[str], unexpected: list[str], wrong: list[str]
) -> str:
    """The message of a :class:`CheckpointMismatchError`: the headline, then the missing,
    unexpected and wrongly shaped keys (the first 12 of each)."""
    lines = [headline]
    for title, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("wrong shapes", wrong),
    ):
        if items:
            shown = items[:12] + ([f"... ({len(items) - 12} more)"] if len(items) > 12 else [])
            lines.append(f"  {title} ({len(items)}): " + "; ".join(shown))
    return "\n".join(lines)


def encoder_from_state_dict(
    state_dict: dict[str, torch.Tensor],
    config: EncoderConfig | None = None,
    source: str = "state dict",
    num_heads: int | None = None,
) -> PixioEncoder:
    """Build an encoder for an official-layout state dict (training heads dropped) and load it."""
    state_dict = {k: v for k, v in state_dict.items() if not _NON_ENCODER.match(k)}
    config = config or infer_encoder_config(state_dict, source, num_heads)
    encoder = PixioEncoder(config)
    load_state_dict_strict(encoder, state_dict, source)
    return encoder


# ----------------------------------------------------------------------------- formats
def _load_project_dir(path: Path) -> PixioEncoder:
    state_dict, config, _ = load_checkpoint(path)
    if "encoder" not in config:
        raise ValueError(f"{path}/{CONFIG_FILE} has no 'encoder' section")
    encoder_config = EncoderConfig.from_dict({**config["encoder"], "drop_path_rate": 0.0})
    if any(key.startswith("encoder.") for key in state_dict):  # a whole pre-training model
        state_dict = {
            k[len("encoder.") :]: v for k, v in state_dict.items() if k.startswith("encoder.")
        }
    return encoder_from_state_dict(state_dict, encoder_config, source=str(path))


def _load_hf_dir(path: Path, hf_config: dict[str, Any]) -> PixioEncoder:
    index = path / "model.safetensors.index.json"
    if (path / MODEL_FILE).is_file():
        state_dict = read_state_dict(path / MODEL_FILE)
    elif index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state_dict = {}
        for shard in shards:
            state_dict.update(read_state_dict(path / shard))
    else:
        raise FileNotFoundError(
            f"{path} has a Pixio config.json but no {MODEL_FILE} (or sharded index)"
        )
    return encoder_from_state_dict(
        hf_to_official(state_dict), hf_config_to_encoder_config(hf_config), source=str(path)
    )


def _load_file(path: Path, num_heads: int | None) -> PixioEncoder:
    state_dict = read_state_dict(path)
    if is_hf_state_dict(state_dict):
        state_dict = hf_to_official(state_dict)
    return encoder_from_state_dict(state_dict, source=str(path), num_heads=num_heads)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def _download(repo_id: str, filename: str, hint: str, cache_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(
            hf_hub_download(
                repo_id=repo_id,
                filename=filename,
                cache_dir=cache_dir,
                local_files_only=_hub_offline(),
            )
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        raise FileNotFoundError(
            f"could not get {filename} from the Hugging Face repo {repo_id} ({type(error).__name__}: "
            f"{error}).\n{hint}"
        ) from error


def load_encoder(
    source: str | os.PathLike,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    num_heads: int | None = None,
) -> PixioEncoder:
    """Return a ready encoder (eval mode, not frozen) from any supported source; see module doc.

    ``cache_dir`` is the huggingface_hub cache for hub sources (default: the hub's own); with
    ``HF_HUB_OFFLINE=1`` only files already in that cache are used. ``num_heads`` is needed only
    for a plain state dict whose width matches no registered size.
    """
    text = str(source)
    path = Path(source)
    if path.is_dir():
        config_file = path / CONFIG_FILE
        if is_checkpoint_dir(path) or (path / LAST_POINTER).is_file():
            encoder = _load_project_dir(path)
        elif config_file.is_file():
            try:
                hf_config = json.loads(config_file.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{config_file} is not valid JSON: {error}") from error
            if hf_config.get("model_type") != "pixio":
                raise ValueError(
                    f"{config_file} has model_type={hf_config.get('model_type')!r}; expected a Pixio "
                    f"checkpoint ('pixio' Hugging Face config or a Pixio checkpoint folder)"
                )
            encoder = _load_hf_dir(path, hf_config)
        else:
            raise FileNotFoundError(
                f"{path} holds no Pixio checkpoint: expected {CONFIG_FILE} + {MODEL_FILE} or a "
                f"'{LAST_POINTER}' file"
            )
    elif path.is_file():
        encoder = _load_file(path, num_heads)
    elif text.startswith("hf://"):
        repo_and_file = text[len("hf://") :]
        parts = repo_and_file.split("/")
        if len(parts) < 3:
            raise ValueError(f"expected hf://<owner>/<repo>/<filename>, got {text!r}")
        repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
        hint = "Download it yourself and pass the local path to load_encoder instead."
        encoder = _load_file(_download(repo_id, filename, hint, cache_dir), num_heads)
    elif text in SHIPPED_ENCODERS:
        encoder = _load_project_dir(shipped_encoder_dir(text))
    elif text in OFFICIAL_ENCODERS:
        repo_id, filename = official_hub_file(text)
        hint = (
            f"The official weights are gated: request access at https://huggingface.co/{repo_id}, "
            f"log in with `hf auth login`, or download {filename} by hand and call "
            f"load_encoder('/path/to/{filename}')."
        )
        encoder = _load_file(_download(repo_id, filename, hint, cache_dir), num_heads)
    elif text in ENCODER_SIZES:
        raise ValueError(
            f"{text!r} has no released weights; build it with create_encoder({text!r}) or pass a checkpoint. "
            f"Released: {', '.join(OFFICIAL_ENCODERS)}"
        )
    else:
        raise FileNotFoundError(
            f"{text!r} is neither an existing file or folder, an hf://<repo>/<file> address, a "
            f"released encoder name ({', '.join(OFFICIAL_ENCODERS)}) nor a shipped one "
            f"({', '.join(SHIPPED_ENCODERS)})"
        )
    return encoder.to(device).eval()


# ----------------------------------------------------------------------------- writers
def save_encoder(encoder: PixioEncoder, directory: str | os.PathLike) -> Path:
    """This project's format: ``model.safetensors`` + ``config.json`` (atomic)."""
    config = {"kind": "encoder", "encoder": encoder.config.to_dict()}
    return save_checkpoint(directory, encoder.state_dict(), config)


def export_official(encoder: PixioEncoder, path: str | os.PathLike) -> Path:
    """The released layout: a plain ``torch.save``d state dict with official key names."""
    path = Path(path)
    with atomic_file(path) as tmp:
        torch.save({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, tmp)
    return path


def export_hf(encoder: PixioEncoder, directory: str | os.PathLike) -> Path:
    """A transformers ``PixioModel`` folder (``config.json`` + ``model.safetensors``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().cpu().contiguous() for k, v in official_to_hf(encoder.state_dict()).items()
    }
    save_file(tensors, str(directory / MODEL_FILE), metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(
        json.dumps(encoder_config_to_hf_config(encoder.config), indent=2)
    )
    return directory


def load_mae(source: str | os.PathLike, device: str | torch.device = "cpu") -> PixioMAE:
    """A whole pre-training model (encoder + decoder) from a checkpoint or run folder of this project."""
    state_dict, config, _ = load_checkpoint(source)
    if config.get("kind") != "mae":
        raise ValueError(
            f"{source} holds a {config.get('kind')!r} checkpoint; a pre-training ('mae') checkpoint with its "
            f"decoder is needed (released encoder-only weights cannot reconstruct pixels)"
        )
    model = PixioMAE.from_config_dict(config)
    model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()


RANDOM_PREFIX = "random:"


def load_frozen_encoder(
    source: str, seed: int = 0, device: str | torch.device = "cpu", precision: str = "fp32"
) -> tuple[PixioEncoder, str]:
    """``(encoder in eval mode with no gradients, identity string for feature caching)``.

    ``source``: anything :func:`load_encoder` reads (a checkpoint or run folder, a
    safetensors/.pth file, a Hugging Face folder, ``hf://...``), or ``random:<registered size>``
    (e.g. ``random:pixio_vitt16``) for the same architecture randomly initialised from ``seed``,
    the baseline the paper's comparisons need. ``precision="int8"`` runs the linear layers in
    int8 on the CPU (:func:`pixio_core.quantization.quantize_linear_int8`); the identity then
    says so, so its features are cached apart from the fp32 ones.
    """
    if precision not in ENCODER_PRECISIONS:
        raise ValueError(
            f"encoder precision must be one of {ENCODER_PRECISIONS}, got {precision!r}"
        )
    if precision == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"int8 encoder inference runs on the CPU, not on {device}")
    if source.startswith(RANDOM_PREFIX):
        name = source[len(RANDOM_PREFIX) :]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = create_encoder(name)
        identity = f"{source}:seed{seed}"
    else:
        encoder = load_encoder(source)
        path = shipped_encoder_dir(source) if source in SHIPPED_ENCODERS else Path(source)
        if path.exists():
            try:
                path = resolve_checkpoint_dir(path) if path.is_dir() else path
            except FileNotFoundError:
                pass  # a Hugging Face folder: identify it by its files
            files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
            stamp = max(f.stat().st_mtime_ns for f in files)
            identity = f"{path.resolve()}@{stamp}"
        else:
            identity = source
    encoder = encoder.to(device).eval().requires_grad_(False)
    if precision == "int8":
        return quantize_linear_int8(encoder), f"{identity}:int8"
    return encoder, identity


def encoder_reference(
    source: str, seed: int, checkpoint_dir: str | os.PathLike, **extra: Any
) -> dict[str, Any]:
    """How a checkpoint that does not hold its frozen encoder names it: ``source`` as given and
    ``seed`` (for ``random:<size>``); for a local path also ``absolute_path`` and
    ``relative_path`` (from ``checkpoint_dir``, the folder being written), so the checkpoint
    loads from any working directory and after the folders that hold both are moved together
    (:func:`resolve_encoder_source`). ``extra`` values are added as they are."""
    reference: dict[str, Any] = {"source": source, "seed": seed, **extra}
    path = Path(source)
    if not source.startswith(RANDOM_PREFIX) and path.exists():
        reference["absolute_path"] = str(path.resolve())
        reference["relative_path"] = os.path.relpath(path.resolve(), Path(checkpoint_dir).resolve())
    return reference


def resolve_encoder_source(reference: dict[str, Any], checkpoint_dir: str | os.PathLike) -> str:
    """The :func:`load_encoder` source of an :func:`encoder_reference` stored in the checkpoint
    ``checkpoint_dir``: its ``relative_path`` from that folder when it exists, else its
    ``absolute_path`` when that exists, else ``source`` as it was given (a hub name,
    ``random:<size>``, or a path relative to the working directory of older checkpoints)."""
    relative = reference.get("relative_path")
    if relative is not None:
        candidate = (Path(checkpoint_dir) / relative).resolve()
        if candidate.exists():
            return str(candidate)
    absolute = reference.get("absolute_path")
    if absolute is not None and Path(absolute).exists():
        return absolute
    return str(reference["source"])
