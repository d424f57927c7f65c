"""``pixio-recon-demo``: the 3D part of ``make demo``, end to end on CPU in a few minutes.

Renders a small set of synthetic training scenes and two held-out scenes (MuJoCo, exact ground
truth), trains the CPU-sized MapAnything model (``recon=mapanything_tiny``) on the frozen encoder
``pixio-demo`` pre-trained (``outputs/demo/checkpoints``), prints its metrics on the held-out scenes at 2, 4 and 8 views,
then treats the first held-out scene's views as a folder of photos and runs the user's path
(``pixio-recon``): point cloud, GLB, COLMAP model, depth maps and a preview. Extra arguments are
hydra overrides of ``configs/recon_train.yaml``. A second run resumes the finished training and
re-does the evaluation and the reconstruction; a run left by a version with another model
config is left as it is and a new run is trained beside it.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

OUT = Path("outputs/demo/recon")
DEMO_OVERRIDES = (
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
)


def _free_folder(folder: Path) -> Path:
    """``folder`` itself if it does not exist, else the first free ``<folder>_<n>``."""
    candidate, index = folder, 2
    while candidate.exists():
        candidate, index = folder.with_name(f"{folder.name}_{index}"), index + 1
    return candidate


def run(cfg: DictConfig) -> Path:
    """Train (or resume) the demo's model as ``cfg`` says, then evaluate it and reconstruct a
    held-out scene's photos. Returns the reconstruction folder."""
    import numpy as np
    from omegaconf import OmegaConf
    from PIL import Image

    from pixio_3d.checkpoint import load_model
    from pixio_3d.cli.train import run as train
    from pixio_3d.data import find_scenes, read_scene
    from pixio_3d.pipeline import reconstruct_photos
    from pixio_3d.sfm import quiet_pycolmap_logs
    from pixio_core.checkpoint import CheckpointMismatchError
    from pixio_core.runs import RunMismatchError

    quiet_pycolmap_logs()
    try:
        run_dir = train(cfg)
    except (RunMismatchError, CheckpointMismatchError) as error:  # an earlier run: leave it be
        fresh = _free_folder(Path(cfg.output_dir))
        print(
            f"{error}\nthe demo's earlier run in {cfg.output_dir} does not fit this version: "
            f"training a new run in {fresh} (the earlier one is left as it is)"
        )
        cfg = OmegaConf.merge(cfg, {"output_dir": str(fresh)})
        run_dir = train(cfg)

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
        "transforms.json, depth/, preview.png, viewer.html)"
    )
    print(f"held-out metrics: {run_dir / 'eval' / 'results.md'}")
    return OUT / "reconstruction"


def main(argv: list[str] | None = None) -> None:
    """The ``pixio-recon-demo`` console script (extra arguments: hydra overrides)."""
    from pixio_3d.cli import demo_main

    demo_main(argv)


if __name__ == "__main__":
    main()
