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

from pixio_3d.cli.recon import DEFAULT_CHECKPOINT, load_checkpoint_arg
from pixio_core.cli.console import run_guarded


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
    parser.add_argument("--device", default="auto", help="auto (cuda if any) | cpu | cuda[:N]")
    return parser


def predict_depth(model: Any, task: str, images: Any) -> tuple[str, Any, Any]:
    """``(kind, values (H, W), confidence (H, W) or None)`` for ``images (1, 3, H, W)`` in [0, 1]
    from a checkpoint of ``task`` (the task table's ``depth_map``).

    ``kind`` is ``"depth"`` (metric z-depth) or ``"disparity"`` (relative, up to scale and shift).
    """
    from pixio_3d.tasks import get_task

    return get_task(task).depth_map(model, images)


def write_depth_outputs(
    prefix: Path,
    kind: str,
    values: Any,
    confidence: Any = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """``<prefix>.png`` plus ``<prefix>.npy`` (and ``_confidence.npy``) for depth, or plus
    ``<prefix>_disparity.npy`` for relative disparity. Returns the written paths."""
    import numpy as np

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
        written = save_depth_map(Path(tmp) / "map.png", inverse, colour_bar=False)  # no metres
        np.save(Path(tmp) / "disparity.npy", values.astype(np.float32))
        os.replace(written["png"], png)
        os.replace(Path(tmp) / "disparity.npy", disparity_path)
    return {"png": png, "disparity": disparity_path}


def main(argv: list[str] | None = None) -> None:
    """The ``pixio-depth`` console script."""
    args = build_parser().parse_args(argv)
    run_guarded("pixio-depth", lambda: _main(args))


def _main(args: argparse.Namespace) -> None:
    from pixio_3d.data.photos import load_photos
    from pixio_core.devices import resolve_device

    photo = Path(args.photo)
    if not photo.is_file():
        raise SystemExit(f"pixio-depth: photo {photo} does not exist or is not a file")
    if args.out is None:
        prefix = photo.with_name(f"{photo.stem}_depth")
    else:
        out = Path(args.out)
        prefix = out.with_suffix("") if out.suffix.lower() in (".png", ".npy") else out
    model, config, checkpoint = load_checkpoint_arg(args.checkpoint, "pixio-depth")
    model = model.to(resolve_device(args.device))
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
