"""How users judge a frozen encoder: k-NN and linear probes on an image-classification folder.

Features are computed once per (dataset, encoder, settings) and cached as safetensors.
k-NN follows the paper (``evaluation/eval_knn.py``): the mean of the last block's class tokens
*before* the final LayerNorm, L2-normalized, cosine similarity, votes weighted by
``exp(similarity / 0.07)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from pixio_core.data.folder import IMAGE_EXTENSIONS, eval_transform
from pixio_core.imaging import read_image
from pixio_core.io import atomic_file
from pixio_core.models.encoder import PixioEncoder
from pixio_core.precision import autocast

FEATURE_KINDS = ("cls_prenorm", "pooled")


class ClassFolderDataset(Dataset):
    """``root/<class>/**/<image>``: one subfolder per class (sorted names -> labels 0..C-1)."""

    def __init__(self, root: str | Path, image_size: int, files: list[Path] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"classification folder {self.root} does not exist")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if len(self.classes) < 2:
            raise ValueError(f"{self.root} needs at least 2 class subfolders, found {self.classes}")
        if files is None:
            files = sorted(
                p
                for p in self.root.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
        self.files = files
        if not self.files:
            raise FileNotFoundError(f"no images under {self.root}")
        self.labels = [self.classes.index(p.relative_to(self.root).parts[0]) for p in self.files]
        self.transform = eval_transform(image_size)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(read_image(self.files[index])), self.labels[index]

    def fingerprint(self) -> str:
        """Changes when files, their sizes/mtimes, labels or the image size change."""
        digest = hashlib.sha256(f"{self.image_size}".encode())
        for path, label in zip(self.files, self.labels, strict=True):
            stat = path.stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{label}".encode())
        return digest.hexdigest()[:16]


def split_per_class(
    dataset: ClassFolderDataset, val_fraction: float, seed: int
) -> tuple[list[Path], list[Path]]:
    """A deterministic stratified split of one folder into train and validation files."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in range(len(dataset.classes)):
        files = [f for f, y in zip(dataset.files, dataset.labels, strict=True) if y == label]
        order = torch.randperm(len(files), generator=generator).tolist()
        n_val = max(1, round(len(files) * val_fraction))
        val += [files[i] for i in order[:n_val]]
        train += [files[i] for i in order[n_val:]]
    return sorted(train), sorted(val)


@torch.no_grad()
def extract_features(
    encoder: PixioEncoder,
    dataset: ClassFolderDataset,
    feature: str = "cls_prenorm",
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, D) float32, labels (N,))`` of a frozen encoder."""
    if feature not in FEATURE_KINDS:
        raise ValueError(f"feature must be one of {FEATURE_KINDS}, got {feature!r}")
    encoder.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    features, labels = [], []
    for images, targets in tqdm(loader, desc="features", disable=not progress, leave=False):
        images = images.to(device)
        with autocast(device, dtype):
            if feature == "cls_prenorm":
                out = encoder.forward_intermediates(images, [-1], norm=False)[0]["pooled"]
            else:
                out = encoder.forward_features(images)["pooled"]
        features.append(out.float().cpu())
        labels.append(targets)
    return torch.cat(features), torch.cat(labels)


def cached_features(
    encoder: PixioEncoder,
    encoder_id: str,
    dataset: ClassFolderDataset,
    cache_dir: str | Path,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`extract_features`, cached under ``cache_dir`` by dataset fingerprint + ``encoder_id``."""
    key = hashlib.sha256(
        json.dumps(
            [encoder_id, dataset.fingerprint(), kwargs.get("feature", "cls_prenorm")]
        ).encode()
    ).hexdigest()[:20]
    path = Path(cache_dir) / f"features_{key}.safetensors"
    if path.is_file():
        tensors = load_file(str(path))
        return tensors["features"], tensors["labels"]
    features, labels = extract_features(encoder, dataset, **kwargs)
    with atomic_file(path) as tmp:
        save_file({"features": features.contiguous(), "labels": labels.contiguous()}, str(tmp))
    return features, labels


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int,
    num_classes: int,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Weighted k-NN on L2-normalized features: votes ``exp(cos / T)`` of the ``k`` nearest."""
    train = nn.functional.normalize(train_features, dim=1)
    test = nn.functional.normalize(test_features, dim=1)
    k = min(k, train.shape[0])
    similarity, index = (test @ train.T).topk(k, dim=1)
    weights = (similarity / temperature).exp()
    votes = torch.zeros(test.shape[0], num_classes)
    votes.scatter_add_(1, train_labels[index], weights)
    return votes.argmax(dim=1)


@dataclass(frozen=True)
class LinearProbeConfig:
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError(f"invalid linear probe settings {self}")


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    config: LinearProbeConfig | None = None,
) -> torch.Tensor:
    """Train BatchNorm (no affine, as MAE's probe) + Linear on frozen features; predict test labels."""
    config = config or LinearProbeConfig()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    head = nn.Sequential(
        nn.BatchNorm1d(train_features.shape[1], affine=False),
        nn.Linear(train_features.shape[1], num_classes),
    )
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(config.epochs):
        order = torch.randperm(train_features.shape[0], generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < 2:
                continue
            loss = nn.functional.cross_entropy(head(train_features[batch]), train_labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    head.eval()
    with torch.no_grad():
        return head(test_features).argmax(dim=1)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).float().mean())
