"""``pixio-probe``: k-NN (k in 10, 20; T = 0.07) and linear-probe accuracy of a frozen encoder.

    pixio-probe encoder=outputs/pretrain/checkpoints            # procedural shape classes
    pixio-probe encoder=pixio_vith16 data.kind=folder data.root=/imagenet/train \\
        data.val_root=/imagenet/val image_size=256

Features are computed once and cached in ``output_dir/cache``; results go to ``probe.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pixio_core.data import make_shapes_dataset
from pixio_core.devices import resolve_device
from pixio_core.loading import load_encoder
from pixio_core.precision import resolve_precision
from pixio_core.probes import (
    ClassFolderDataset,
    LinearProbeConfig,
    accuracy,
    cached_features,
    knn_predict,
    linear_probe,
    split_per_class,
)


def encoder_identity(source: str) -> str:
    """What the feature cache is keyed by: the source plus, for local files, their mtimes."""
    path = Path(source)
    if path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        return json.dumps(
            [str(path.resolve())] + [f"{p.name}:{p.stat().st_mtime_ns}" for p in files]
        )
    return source


def run(cfg: DictConfig) -> dict:
    # the encoder first: a wrong source fails before anything is written
    device = resolve_device("auto")
    dtype = resolve_precision(cfg.precision, device)
    encoder = load_encoder(cfg.encoder, device=device).requires_grad_(False)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    data = cfg.data
    if data.kind == "shapes":
        make_shapes_dataset(
            data.root,
            images_per_class=data.images_per_class,
            image_size=cfg.image_size,
            seed=data.seed + 1000,
        )
    elif data.kind != "folder":
        raise ValueError(f"data.kind must be 'shapes' or 'folder', got {data.kind!r}")
    full = ClassFolderDataset(data.root, cfg.image_size)
    if data.val_root:
        train_set, val_set = full, ClassFolderDataset(data.val_root, cfg.image_size)
        if val_set.classes != full.classes:
            raise ValueError(
                f"class folders differ: {data.root} has {full.classes}, {data.val_root} has {val_set.classes}"
            )
    else:
        train_files, val_files = split_per_class(full, data.val_fraction, data.seed)
        train_set = ClassFolderDataset(data.root, cfg.image_size, files=train_files)
        val_set = ClassFolderDataset(data.root, cfg.image_size, files=val_files)

    identity = encoder_identity(str(cfg.encoder))
    kwargs = {
        "feature": cfg.feature,
        "batch_size": cfg.batch_size,
        "device": device,
        "dtype": dtype,
        "num_workers": cfg.num_workers,
    }
    train_x, train_y = cached_features(encoder, identity, train_set, out / "cache", **kwargs)
    val_x, val_y = cached_features(encoder, identity, val_set, out / "cache", **kwargs)
    classes = len(full.classes)
    results = {
        "encoder": str(cfg.encoder),
        "feature": cfg.feature,
        "image_size": cfg.image_size,
        "num_train": len(train_set),
        "num_val": len(val_set),
        "num_classes": classes,
        "chance": 1.0 / classes,
        "knn": {},
        "linear": None,
    }
    for k in cfg.knn.k:
        predictions = knn_predict(train_x, train_y, val_x, k, classes, cfg.knn.temperature)
        results["knn"][str(k)] = accuracy(predictions, val_y)
    linear = LinearProbeConfig(
        cfg.linear.epochs, cfg.linear.lr, cfg.linear.weight_decay, cfg.linear.batch_size
    )
    results["linear"] = accuracy(linear_probe(train_x, train_y, val_x, classes, linear), val_y)
    (out / "probe.json").write_text(json.dumps(results, indent=2))
    knn_text = ", ".join(f"k={k}: {v:.1%}" for k, v in results["knn"].items())
    print(
        f"{cfg.encoder}: k-NN {knn_text}; linear {results['linear']:.1%} "
        f"({len(train_set)} train / {len(val_set)} val images, {classes} classes, chance {1 / classes:.1%})"
    )
    return results


def main(argv: list[str] | None = None) -> None:
    """``python -m pixio_core.cli.probe`` (torchrun): the ``pixio-probe`` console script."""
    from pixio_core.cli import probe_main

    probe_main(argv)


if __name__ == "__main__":
    main()
