"""The paper's self-curation: reconstruction-loss soft sampling plus hard filters.

``pixio-curate`` writes one JSON line per image: ``{"path", "loss", "entropy", "height", "width"}``
(``path`` relative to the dataset root). Training keeps image ``i`` with probability
``min(loss_i / loss_scale, 1)``, re-drawn every pass (a weighting, not a fixed subset), and drops
images whose color-histogram entropy is ``<= entropy_threshold`` or whose shorter side is
``< min_side``.

The paper does not define its histogram; ours is the Shannon entropy (bits) of the joint RGB
histogram with 8 bins per channel (512 bins, so at most 9 bits) of the image resized to at most
256 px. Its scale therefore differs from the paper's threshold of 4.5: calibrate on your data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def color_histogram_entropy(image: Image.Image, bins_per_channel: int = 8) -> float:
    """Shannon entropy in bits of the joint RGB histogram (``bins_per_channel ** 3`` bins)."""
    image = image.convert("RGB")
    image.thumbnail((256, 256))
    pixels = np.asarray(image, dtype=np.int64) * bins_per_channel // 256
    codes = (pixels[..., 0] * bins_per_channel + pixels[..., 1]) * bins_per_channel + pixels[..., 2]
    counts = np.bincount(codes.ravel(), minlength=bins_per_channel**3).astype(np.float64)
    probs = counts[counts > 0] / counts.sum()
    return float(-(probs * np.log2(probs)).sum())


def read_curation(path: str | Path) -> dict[str, dict]:
    """``{relative_path: record}`` from a curation JSONL; a clear error on malformed lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"curation file {path} does not exist (make it with pixio-curate)")
    records = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[record["path"]] = record
            float(record["loss"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path}:{number}: expected a JSON object with 'path' and 'loss', got {line[:80]!r}"
            ) from error
    return records


def record_keep_probability(
    record: dict, loss_scale: float, min_side: int = 0, entropy_threshold: float | None = None
) -> float:
    """``min(loss / loss_scale, 1)`` for one curation record, 0 where a hard filter drops it."""
    if min_side and min(record.get("height", math.inf), record.get("width", math.inf)) < min_side:
        return 0.0
    if entropy_threshold is not None and record.get("entropy", math.inf) <= entropy_threshold:
        return 0.0
    return max(0.0, min(float(record["loss"]) / loss_scale, 1.0))


def keep_probabilities(
    files: list[Path],
    root: str | Path,
    curation: str | Path,
    loss_scale: float = 1.0,
    min_side: int = 0,
    entropy_threshold: float | None = None,
) -> torch.Tensor:
    """Per-file keep probability: ``min(loss / loss_scale, 1)``, 0 where a hard filter drops it.

    Files without a curation record are kept with probability 1 (they were not scored).
    """
    if loss_scale <= 0:
        raise ValueError(f"loss_scale must be positive, got {loss_scale}")
    records = read_curation(curation)
    root = Path(root)
    keep = torch.ones(len(files), dtype=torch.float64)
    for index, file in enumerate(files):
        record = records.get(str(file.relative_to(root)))
        if record is None:
            continue
        keep[index] = record_keep_probability(record, loss_scale, min_side, entropy_threshold)
    return keep
