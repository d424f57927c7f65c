"""``pixio-recon-demo``: the 3D part of ``make demo``, end to end on CPU in a few minutes.

Renders a small set of synthetic training scenes and two held-out scenes (MuJoCo, exact ground
truth), trains the tiny reconstruction model on the frozen encoder ``pixio-demo`` pre-trained
(``outputs/demo/checkpoints``), prints its metrics on the held-out scenes at 2, 4 and 8 views,
then treats the first held-out scene's views as a folder of photos and runs the user's path
(``pixio-recon``): point cloud, GLB, COLMAP model, depth maps and a preview. Extra arguments are
hydra overrides of ``configs/recon_train.yaml``. A second run resumes the finished training and
re-does the evaluation and the reconstruction; a run left by a version with another model
config is trained again.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path("outputs/demo/recon")
DEMO_OVERRIDES = [
    f"output_dir={OUT}/run",
    f"data.root={OUT}/scenes/train",
    "data.num_scenes=12",
    "data.views_per_scene=8",
    "data.height=96",
    "data.width=128",
    "train.total_steps=80",
    "train.global_batch_size=2",
    "train.checkpoint_every=40",
    "optim.warmup_steps=8",
    "optim.lr=5.0e-4",
    f"eval.scenes={OUT}/scenes/heldout",
    "eval.generate=true",
    "eval.num_scenes=2",
    "eval.views=[2,4,8]",
]


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is first imported
    from pixio_3d.checkpoint import load_model
    from pixio_3d.cli.train import load_config, run
    from pixio_3d.data import find_scenes, read_scene
    from pixio_3d.pipeline import reconstruct_photos
    from pixio_3d.sfm import quiet_pycolmap_logs
    from pixio_3d.training.train import CheckpointMismatchError

    quiet_pycolmap_logs()
    overrides = list(sys.argv[1:] if argv is None else argv)
    cfg = load_config([*DEMO_OVERRIDES, *overrides])
    try:
        run_dir = run(cfg)
    except CheckpointMismatchError as error:  # an earlier version's demo run: train it anew
        print(f"{error}\nthe demo's earlier run does not fit this version: training it again")
        shutil.rmtree(cfg.output_dir)
        run_dir = run(cfg)

    scene_dir = find_scenes(cfg.eval.scenes)[0]
    scene = read_scene(scene_dir)
    photos = OUT / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for index, rgb in enumerate(scene["rgb"]):
        Image.fromarray(rgb).save(photos / f"view_{index:02d}.png")
    model, _ = load_model(run_dir / "checkpoints")
    # The photos' focal length is known here (the renderer's); a user without it leaves it out.
    focal = float(np.asarray(scene["intrinsics"])[0, 0, 0])
    summary = reconstruct_photos(
        photos, OUT / "reconstruction", model, overwrite=True, focal_px=focal,
        long_side=max(cfg.data.width, cfg.data.height),  # the size the model was trained at
    )  # fmt: skip
    print(
        f"reconstructed {len(scene['rgb'])} photos of {scene_dir.name} into "
        f"{OUT / 'reconstruction'}: {summary['colmap']['points3D']} points in "
        f"{summary['seconds']['total']:.1f} s (points.ply, scene.glb, sparse/0, "
        "transforms.json, depth/, preview.png)"
    )
    print(f"held-out metrics: {run_dir / 'eval' / 'results.md'}")


if __name__ == "__main__":
    main()
