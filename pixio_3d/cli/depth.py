"""``pixio-depth``: depth of one photo as a colour-mapped PNG and a ``.npy``.

Example: ``pixio-depth photo.jpg --checkpoint outputs/recon/depth/checkpoints`` writes
``photo_depth.png`` and ``photo_depth.npy`` next to the photo (``--out PREFIX`` to choose).

The photo is read like ``pixio-recon`` reads one (EXIF orientation applied, resized so its sides
are multiples of 16 with at most ``--long-side`` pixels); the maps are at that working size.
Checkpoints:

* ``reconstruction``: the model runs on the single view; ``.npy`` is metric z-depth (float32,
  metres, the model's scale guess) and ``<prefix>_confidence.npy`` its confidence;
* ``depth`` in metric mode: ``.npy`` is z-depth in metres;
* ``depth`` in relative mode: the model predicts disparity up to scale and shift, which is not a
  depth, so ``<prefix>_disparity.npy`` holds it (the PNG shows it the same way: near is bright).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixio_3d.cli.recon import DEFAULT_CHECKPOINT, default_device, load_checkpoint_arg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixio-depth", description=__doc__.splitlines()[0])
    parser.add_argument("photo", help="one photo (any format PIL reads)")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help=f"depth or reconstruction checkpoint (default: {DEFAULT_CHECKPOINT})",
    )
    parser.add_argument(
        "--out", default=None, help="output prefix (default: <photo folder>/<photo stem>_depth)"
    )
    parser.add_argument("--long-side", type=int, default=512, help="working size (pixels)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if any)")
    return parser


def predict_depth(
    model: torch.nn.Module, task: str, images: torch.Tensor
) -> tuple[str, np.ndarray, np.ndarray | None]:
    """``(kind, values (H, W), confidence (H, W) or None)`` for ``images (1, 3, H, W)`` in [0, 1].

    ``kind`` is ``"depth"`` (metric z-depth) or ``"disparity"`` (relative, up to scale and shift).
    """
    from pixio_3d.models import MonoDepthModel
    from pixio_3d.pipeline import predict_views
    from pixio_core.models.encoder import IMAGENET_MEAN, IMAGENET_STD

    if task == "reconstruction":
        prediction = predict_views(model, images)
        return "depth", prediction["depth_z"][0], prediction["conf"][0]
    if task != "depth" or not isinstance(model, MonoDepthModel):
        raise ValueError(f"pixio-depth needs a depth or reconstruction checkpoint, got {task!r}")
    device = next(model.parameters()).device
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    with torch.no_grad():
        output = model((images.to(device) - mean) / std)
    kind = "depth" if model.config.mode == "metric" else "disparity"
    return kind, output[kind][0].double().cpu().numpy(), None


def write_depth_outputs(
    prefix: Path,
    kind: str,
    values: np.ndarray,
    confidence: np.ndarray | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """``<prefix>.png`` plus ``<prefix>.npy`` (and ``_confidence.npy``) for depth, or plus
    ``<prefix>_disparity.npy`` for relative disparity. Returns the written paths."""
    from pixio_3d.export import save_depth_map

    png = prefix.with_name(prefix.name + ".png")
    if kind == "depth":
        targets = [png, prefix.with_name(prefix.name + ".npy")]
        if confidence is not None:
            targets.append(prefix.with_name(prefix.name + "_confidence.npy"))
    else:
        targets = [png, prefix.with_name(prefix.name + "_disparity.npy")]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist; pass --overwrite to replace them")
    if kind == "depth":
        return save_depth_map(png, values, confidence=confidence, overwrite=overwrite)
    disparity_path = targets[1]
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=png.parent, prefix=".pixio-depth.") as tmp:
        # the colour map shows inverse depth, so 1 / disparity renders disparity directly
        inverse = np.where(values > 0, 1.0 / np.maximum(values, 1e-12), 0.0)
        written = save_depth_map(Path(tmp) / "map.png", inverse)
        np.save(Path(tmp) / "disparity.npy", values.astype(np.float32))
        os.replace(written["png"], png)
        os.replace(Path(tmp) / "disparity.npy", disparity_path)
    return {"png": png, "disparity": disparity_path}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from pixio_3d.data.photos import load_photos

    photo = Path(args.photo)
    if not photo.is_file():
        raise SystemExit(f"pixio-depth: photo {photo} does not exist or is not a file")
    if args.out is None:
        prefix = photo.with_name(f"{photo.stem}_depth")
    else:
        out = Path(args.out)
        prefix = out.with_suffix("") if out.suffix.lower() in (".png", ".npy") else out
    model, config, checkpoint = load_checkpoint_arg(args.checkpoint, "pixio-depth")
    model = model.to(args.device or default_device())
    try:
        photos = load_photos([photo], long_side=args.long_side)
        kind, values, confidence = predict_depth(model, config["task"], photos.images)
        written = write_depth_outputs(prefix, kind, values, confidence, args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        raise SystemExit(f"pixio-depth: {error}") from None
    height, width = values.shape
    what: dict[str, Any] = {
        "depth": "metric z-depth (metres, the model's scale)",
        "disparity": "relative disparity (up to scale and shift; not metric)",
    }
    print(
        f"{photo.name} ({config['task']} checkpoint {checkpoint}): {what[kind]} at {width}x{height}"
    )
    for key, path in written.items():
        print(f"  {key:<10} {path}")


if __name__ == "__main__":
    main()
