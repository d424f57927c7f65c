"""Run identity: a run folder records what makes it that run, and no other run resumes in it.

``run.json`` in a training run's output folder holds the settings that define the run (model,
data, recipe, seed; not the step budget, checkpoint cadence or device, which a resumed run may
change) and their SHA-256. :func:`claim_run` runs before anything is written: a folder that
holds another run is refused with one line naming the folder and the first setting that
differs, and a folder that holds a run is only continued when resuming was asked for. Nothing in
the old run is touched by a command that refuses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pixio_core.io import atomic_write_text

__all__ = ["RUN_FILE", "RunMismatchError", "claim_run", "run_identity"]

RUN_FILE = "run.json"
RUN_FILES = (RUN_FILE, "log.jsonl", "checkpoints")  # what makes a folder hold a run


class RunMismatchError(ValueError):
    """The output folder holds another run (or a run that was not asked to resume)."""


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def run_identity(settings: Mapping[str, Any], ignore: Iterable[str] = ()) -> dict[str, Any]:
    """The dotted settings that define a run: ``settings`` (plain values) flattened, without the
    keys in ``ignore`` (a key ``a.b`` also drops everything under it)."""
    ignored = tuple(ignore)
    return {
        key: value
        for key, value in sorted(_flatten(settings).items())
        if not any(key == name or key.startswith(name + ".") for name in ignored)
    }


def _digest(identity: Mapping[str, Any]) -> str:
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RUN_FILES)


def claim_run(
    run_dir: str | os.PathLike,
    identity: Mapping[str, Any],
    *,
    resume: bool,
    write: bool = True,
) -> str:
    """Check that ``run_dir`` may hold the run ``identity``, then (``write``: the main process)
    record it in ``run.json``. Returns ``"new"``, ``"resumed"`` or ``"adopted"`` (an older run
    folder without ``run.json``, resumed on trust; its checkpoints are still checked by the
    resume itself).

    Raises :class:`RunMismatchError` when the folder holds a run with other settings (naming the
    first differing one) or holds a run and ``resume`` is false. Nothing is written before the
    checks pass.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunMismatchError(f"output folder {run_dir} is a file")
    record = run_dir / RUN_FILE
    identity = dict(identity)
    state = "new"
    if _holds_run(run_dir):
        if not resume:
            raise RunMismatchError(
                f"{run_dir} already holds a run and train.resume=false; choose a new output_dir "
                "to start over (nothing of the old run was changed)"
            )
        state = "adopted"
        if record.is_file():
            try:
                saved = json.loads(record.read_text())["identity"]
            except (ValueError, KeyError) as error:
                raise RunMismatchError(f"{record} is not a readable run record ({error})") from None
            for key in sorted(set(saved) | set(identity)):
                if saved.get(key, "<unset>") != identity.get(key, "<unset>"):
                    raise RunMismatchError(
                        f"{run_dir} holds another run: {key} is {saved.get(key, '<unset>')!r} "
                        f"there, {identity.get(key, '<unset>')!r} now; choose a new output_dir "
                        "(or set it back to continue that run)"
                    )
            state = "resumed"
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        payload = {"identity": identity, "sha256": _digest(identity)}
        atomic_write_text(record, json.dumps(payload, indent=1, sort_keys=True, default=str))
    return state
