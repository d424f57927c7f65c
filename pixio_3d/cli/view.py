"""``pixio-view FOLDER``: open a reconstruction in the browser as one offline page, or a
Rerun recording in Rerun's web viewer.

FOLDER is a ``pixio-recon`` output (``points.ply``, ``sparse/0``, ``images/``) or a COLMAP model
made by any tool (a folder with ``cameras``/``images``/``points3D`` ``.bin`` or ``.txt``, or one
that holds ``sparse/0`` or ``sparse/``). The page (:mod:`pixio_3d.export.viewer`) shows the
points, one frustum per camera with its photo when the photo is found (``--images``, or
``images/`` beside the model), and a confidence filter where the points carry a confidence.

A Rerun recording (``FILE.rrd``, or a run folder with ``recording.rrd`` such as
``pixio-pretrain rerun=true`` writes) is served on localhost instead (the viewer ships in the
rerun-sdk wheel; no internet).

    pixio-view outputs/recon                      # writes outputs/recon/viewer.html and opens it
    pixio-view /data/colmap/sparse/0 --images /data/colmap/images --output /tmp/scene.html
    pixio-view outputs/pretrain                   # the run's loss curve and reconstructions
"""

from __future__ import annotations

import argparse
import webbrowser
from pathlib import Path

import numpy as np

from pixio_core.cli.console import UserError, run_guarded

MODEL_FILES = ("cameras.bin", "cameras.txt")


def find_model(folder: Path) -> Path:
    """The COLMAP model folder in or at ``folder``."""
    for candidate in (folder, folder / "sparse" / "0", folder / "sparse"):
        if any((candidate / name).is_file() for name in MODEL_FILES):
            return candidate
    raise UserError(
        f"{folder} holds no reconstruction: expected a pixio-recon output folder or a COLMAP "
        "model (cameras.bin/.txt, images, points3D; or sparse/0 inside)"
    )


def read_scene(folder: Path, images_dir: Path | None) -> dict:
    """Points, colors, cameras and photos of a reconstruction folder (see the module doc)."""
    import pycolmap

    from pixio_core.imaging import read_image

    model = find_model(folder)
    try:
        reconstruction = pycolmap.Reconstruction(str(model))
    except Exception as error:  # noqa: BLE001 - pycolmap raises its own runtime errors
        raise UserError(f"{model} is not a readable COLMAP model ({error})") from None
    entries = sorted(reconstruction.images.values(), key=lambda image: image.name)
    if not entries:
        raise UserError(f"{model} holds no registered images")
    poses, intrinsics, sizes, names = [], [], [], []
    for image in entries:
        camera = reconstruction.camera(image.camera_id)
        pose = np.eye(4)
        pose[:3] = image.cam_from_world().matrix()
        poses.append(np.linalg.inv(pose))
        intrinsics.append(np.asarray(camera.calibration_matrix()))  # distortion ignored
        sizes.append((int(camera.height), int(camera.width)))
        names.append(image.name)
    search = [images_dir] if images_dir else [folder / "images", model.parent / "images"]
    search += [model.parent.parent / "images"]
    photos = []
    for name in names:
        path = next((d / name for d in search if d and (d / name).is_file()), None)
        photos.append(np.asarray(read_image(path)) if path else None)
    ply = folder / "points.ply"
    confidence = None
    if ply.is_file():
        import trimesh

        cloud = trimesh.load(ply, process=False)
        points = np.asarray(cloud.vertices)
        colors = np.asarray(cloud.colors)[:, :3] if len(cloud.colors) else None
        extra = getattr(cloud, "metadata", {}).get("_ply_raw", {}).get("vertex", {}).get("data")
        if extra is not None and "confidence" in extra.dtype.names:
            confidence = np.asarray(extra["confidence"], dtype=np.float64)
    else:
        stored = list(reconstruction.points3D.values())
        points = np.array([p.xyz for p in stored]).reshape(-1, 3)
        colors = np.array([p.color for p in stored], dtype=np.uint8).reshape(-1, 3)
    if colors is None or len(colors) != len(points):
        colors = np.full((len(points), 3), 180, dtype=np.uint8)
    return {
        "points": points,
        "colors": colors,
        "confidence": confidence,
        "poses": np.stack(poses),
        "intrinsics": np.stack(intrinsics),
        "sizes": sizes,
        "names": [Path(n).stem for n in names],
        "photos": photos,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixio-view",
        description=__doc__.split("\n\n")[0] + " " + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folder", type=Path, help="pixio-recon output, COLMAP model folder, or a Rerun .rrd"
    )
    parser.add_argument("--images", type=Path, default=None, help="folder of the photos")
    parser.add_argument(
        "--output", type=Path, default=None, help="page to write (default: FOLDER/viewer.html)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing page")
    parser.add_argument("--no-open", action="store_true", help="write the page only")
    parser.add_argument(
        "--port", type=int, default=9090, help="Rerun web viewer port (0: any free)"
    )
    return parser


def find_recording(source: Path) -> Path | None:
    """The Rerun recording ``source`` names: itself (``.rrd``) or a run folder's
    ``recording.rrd`` when the folder holds no reconstruction."""
    from pixio_core.recording import RECORDING_NAME

    if source.suffix == ".rrd":
        if not source.is_file():
            raise UserError(f"recording {source} does not exist")
        return source
    inside = source / RECORDING_NAME
    if not inside.is_file():
        return None
    try:
        find_model(source)
    except UserError:
        return inside
    return None


def _main(args: argparse.Namespace) -> None:
    from pixio_3d.export.viewer import write_viewer_html

    recording = find_recording(args.folder)
    if recording is not None:
        from pixio_core.recording import serve_until_stopped

        print(f"recording: {recording}")
        if not args.no_open:
            serve_until_stopped(recording, args.port)
        return
    if not args.folder.is_dir():
        raise UserError(f"{args.folder} is not a folder")
    scene = read_scene(args.folder, args.images)
    output = args.output or args.folder / "viewer.html"
    if output.exists() and not args.overwrite:
        if args.output is None and not args.no_open:  # just open what is there
            print(f"{output} exists (--overwrite rewrites it); opening it")
            webbrowser.open(output.resolve().as_uri())
            return
        raise UserError(f"{output} exists; pass --overwrite or another --output")
    photos = scene["photos"]
    missing = sum(photo is None for photo in photos)
    write_viewer_html(
        output,
        scene["points"],
        scene["colors"],
        scene["poses"],
        scene["intrinsics"],
        scene["sizes"],
        images=photos,
        confidence=scene["confidence"],
        names=scene["names"],
        overwrite=args.overwrite,
    )
    note = (
        f" ({missing} of {len(photos)} photos not found: frusta without images)" if missing else ""
    )
    print(
        f"{output}: {len(scene['points'])} points, {len(photos)} cameras{note}; "
        "open it in any browser (no server, no internet)"
    )
    if not args.no_open:
        webbrowser.open(output.resolve().as_uri())


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_guarded("pixio-view", lambda: _main(args))


if __name__ == "__main__":
    main()
