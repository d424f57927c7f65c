"""Evidence at CPU scale: the Pixio recipe vs the original-MAE recipe, same steps, same data.

Pre-trains ``pixio_vitt16`` twice on the procedural shapes set (``pixio_core.data.synthetic``:
8 shape classes, random colors/backgrounds; nothing downloaded) with ``pixio-pretrain``:
the Pixio recipe (8 class tokens, 2x2-patch blocks at 128 px = 4x4 block grid, decoder 128 x 8)
and the MAE recipe (1 class token, per-patch masking, decoder 128 x 2). Then measures for each:
the reconstruction loss on held-out images under *both* masking schemes, and k-NN / linear
probe accuracy (``pixio-probe``) on a separate labelled shapes set. Writes JSON and prints a
markdown table. Tiny models, a few minutes of CPU: a sanity check of the machinery, not a
reproduction of the paper's numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from pixio_core.cli.common import CONFIG_DIR
from pixio_core.cli.pretrain import run as pretrain
from pixio_core.cli.probe import run as probe
from pixio_core.data import ImageFolderDataset, eval_transform, make_shapes_dataset
from pixio_core.loading import load_mae
from pixio_core.masking import sample_block_mask


def compose_config(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=overrides)


@torch.no_grad()
def heldout_loss(checkpoint: Path, data_root: Path, mask_grid: int, count: int = 128) -> float:
    model = load_mae(checkpoint)
    dataset = ImageFolderDataset(data_root, eval_transform(model.encoder.config.image_size))
    images = torch.stack([dataset[i * len(dataset) // count]["image"] for i in range(count)])
    grid = model.encoder.check_input(images)
    total = 0.0
    for seed in range(4):
        mask = sample_block_mask(count, *grid, mask_grid, 0.75, torch.Generator().manual_seed(seed))
        total += float(model(images, mask=mask)["loss"])
    return total / 4


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/recipe_comparison"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--images-per-class", type=int, default=128)
    parser.add_argument(
        "--result",
        type=Path,
        default=Path(__file__).parent / "results" / "cpu_recipe_comparison.json",
    )
    args = parser.parse_args()
    data = args.out / "pretrain_data"
    heldout = make_shapes_dataset(
        args.out / "heldout", images_per_class=16, image_size=128, seed=77
    )
    rows = {}
    for model in ("pixio_vitt16", "mae_vitt16"):
        run_dir = args.out / model
        pretrain(
            compose_config(
                "pretrain",
                [
                    f"model={model}",
                    f"output_dir={run_dir}",
                    f"data.root={data}",
                    f"data.images_per_class={args.images_per_class}",
                    f"train.total_steps={args.steps}",
                    f"train.checkpoint_every={args.steps}",
                    f"train.recon_every={args.steps}",
                    f"optim.warmup_steps={args.steps // 10}",
                ],
            )
        )
        summary = json.loads((run_dir / "summary.json").read_text())
        probe_result = probe(
            compose_config(
                "probe",
                [
                    f"encoder={run_dir / 'checkpoints'}",
                    f"output_dir={run_dir / 'probe'}",
                    f"data.root={args.out / 'probe_data'}",
                    "data.images_per_class=40",
                    "image_size=128",
                ],
            )
        )
        rows[model] = {
            "train_loss_last": summary["loss_last"],
            "heldout_loss_block_masks": heldout_loss(run_dir / "checkpoints", heldout, mask_grid=2),
            "heldout_loss_patch_masks": heldout_loss(run_dir / "checkpoints", heldout, mask_grid=1),
            "knn_k10": probe_result["knn"]["10"],
            "knn_k20": probe_result["knn"]["20"],
            "linear": probe_result["linear"],
            "chance": probe_result["chance"],
        }
    result = {
        "steps": args.steps,
        "images": 8 * args.images_per_class,
        "image_size": 128,
        "global_batch_size": 32,
        "model": "pixio_vitt16 (5.5 M encoder params)",
        "rows": rows,
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2))
    print(
        "\n| recipe | train loss (last 10%) | held-out loss, 2x2 block masks | held-out loss, patch masks "
        "| k-NN k=10 | k-NN k=20 | linear | chance |\n|---|---|---|---|---|---|---|---|"
    )
    for name, row in rows.items():
        print(
            f"| {name} | {row['train_loss_last']:.4f} | {row['heldout_loss_block_masks']:.4f} | "
            f"{row['heldout_loss_patch_masks']:.4f} | {row['knn_k10']:.1%} | {row['knn_k20']:.1%} | "
            f"{row['linear']:.1%} | {row['chance']:.1%} |"
        )
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
