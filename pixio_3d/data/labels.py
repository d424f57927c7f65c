"""Segmentation labels of the synthetic scenes: object ids on disk -> class labels.

Two label modes: ``shape`` (0 = the room, ``1 + k`` = the generator's ``SHAPES[k]``, read from
each scene's ``scene.json``) and ``object_id`` (the ids themselves). Id 0 (no surface) and ids
without a class map to ``IGNORE_INDEX``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "IGNORE_INDEX",
    "LABEL_MODES",
    "apply_labels",
    "label_table",
    "num_label_classes",
    "shape_class_names",
]

IGNORE_INDEX = 255
LABEL_MODES = ("shape", "object_id")


def shape_class_names() -> tuple[str, ...]:
    """``shape`` label classes: 0 = the room, ``1 + k`` = the generator's ``SHAPES[k]``."""
    from pixio_3d.data.scenes import SHAPES  # imports mujoco: only when labels are needed

    return ("room", *SHAPES)


def num_label_classes(mode: str, num_object_ids: int = 12) -> int:
    """Classes of a label mode: ``shape`` -> room + the generator's shapes; ``object_id`` -> the
    ids ``0 .. num_object_ids - 1`` (0 = no surface is ignored; larger ids are ignored too)."""
    if mode not in LABEL_MODES:
        raise ValueError(f"segmentation labels must be one of {LABEL_MODES}, got {mode!r}")
    return len(shape_class_names()) if mode == "shape" else num_object_ids


def label_table(scene_dir: str | Path, mode: str, num_classes: int) -> np.ndarray:
    """Lookup ``(65536,)`` int64 from a 16-bit object id to its class (``IGNORE_INDEX`` if none).

    ``shape`` reads ``scene_dir/scene.json`` (objects[i]["shape"] and ["id"]); ``object_id`` keeps
    ids ``1 .. num_classes - 1``. Id 0 (no surface) is ignored in both modes.
    """
    table = np.full(65536, IGNORE_INDEX, np.int64)
    if mode == "object_id":
        table[1:num_classes] = np.arange(1, num_classes)
        return table
    if mode != "shape":
        raise ValueError(f"segmentation labels must be one of {LABEL_MODES}, got {mode!r}")
    info_path = Path(scene_dir) / "scene.json"
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{info_path} is missing: 'shape' labels need the generator's scene.json "
            "(use labels=object_id for scenes without it)"
        )
    names = shape_class_names()
    table[1] = 0
    for entry in json.loads(info_path.read_text()).get("objects", []):
        if entry.get("shape") not in names[1:]:
            raise ValueError(f"{info_path}: object {entry.get('id')} has unknown shape")
        table[int(entry["id"])] = names.index(entry["shape"])
    return table


def apply_labels(object_ids: torch.Tensor, table: np.ndarray) -> torch.Tensor:
    """Class labels (same shape, int64) of object ids; ``-1`` (no ids on disk) -> ignored."""
    lookup = torch.from_numpy(table)
    return torch.where(object_ids >= 0, lookup[object_ids.clamp(0, 65535)], IGNORE_INDEX)
