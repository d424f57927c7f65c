"""One pre-training step (forward + backward + AdamW), ours against the official MAE code's
computation, interleaved in rounds on this machine; prints a table and writes JSON.

The baseline, :class:`OfficialMAE`, does what facebookresearch/mae ``models_mae.py`` does, step
by step (written here from its description, not copied): a conv patch embedding, fixed 2-D
sin-cos position embeddings, per-patch random masking by an argsort of uniform noise (keep the
first 25 %, ``ids_restore`` = argsort of the shuffle), the encoder (timm ``Block``s) on the class
token + visible patches, a decoder that embeds, appends mask tokens, un-shuffles with a gather,
adds its position embedding and runs its blocks on all tokens, predicts every patch, and the
norm-pix MSE averaged over the masked patches; AdamW with the usual weight-decay groups (torch's
default implementation, as ``main_pretrain.py`` builds it).

Ours is ``PixioMAE`` with the same configuration (``recipe="mae"``: 1 class token, per-patch
masking, the given decoder) through the project's training step settings
(:func:`pixio_core.engine.make_optimizer`: the fused AdamW where the device has one). Also timed:
the Pixio recipe (8 class tokens, 4x4 block masking, 32-block decoder) against the baseline
with 8 class tokens and a 32-block decoder (the same token counts), and optionally
``torch.compile`` of our model (``--compile``).

Each round runs ``--steps`` steps of every variant in turn; the reported ratio is the ratio of
the medians over ``--rounds`` rounds (higher = ours faster).

    python benchmarks/pretrain_step.py --sizes small --threads 1
    python benchmarks/pretrain_step.py --sizes tiny small base --threads 1 2 --compile
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from recon_memory import write_report
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from pixio_core.engine import make_optimizer, param_groups
from pixio_core.models import create_mae
from pixio_core.models.mae import DecoderConfig, MaskingConfig, normalize_patches, patchify
from pixio_core.precision import autocast

SIZES = {
    "tiny": "pixio_vitt16",
    "small": "pixio_vits16",
    "base": "pixio_vitb16",
    "large": "pixio_vitl16",
}
WIDTHS = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}


def sincos_2d(dim: int, side: int, prefix: int) -> torch.Tensor:
    """``(1, prefix + side*side, dim)`` fixed 2-D sin-cos position embedding (zeros for the
    prefix tokens), as MAE's ``get_2d_sincos_pos_embed``: half the channels encode the row,
    half the column, each as sin and cos of ``pos / 10000^(2i/d)``."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(side, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    grid = torch.cat([encode(cols), encode(rows)], dim=1)  # MAE puts the w coordinate first
    return torch.cat([torch.zeros(prefix, dim, dtype=torch.float64), grid]).float()[None]


class OfficialMAE(nn.Module):
    """The official MAE's pre-training computation (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        image_size: int = 224,
        patch: int = 16,
        mask_ratio: float = 0.75,
        prefix: int = 1,
    ) -> None:
        super().__init__()
        self.patch, self.mask_ratio, self.prefix = patch, mask_ratio, prefix
        side = image_size // patch
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = PatchEmbed(image_size, patch, 3, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, prefix, dim))
        self.pos_embed = nn.Parameter(sincos_2d(dim, side, prefix), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(dim, heads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(depth)
        )
        self.norm = norm(dim)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(
            sincos_2d(decoder_dim, side, prefix), requires_grad=False
        )
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, 4.0, qkv_bias=True, norm_layer=norm)
            for _ in range(decoder_depth)
        )
        self.decoder_norm = norm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch * patch * 3)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        k = self.prefix
        x = self.patch_embed(images) + self.pos_embed[:, k:]
        batch, n, dim = x.shape
        keep = int(n * (1 - self.mask_ratio))
        noise = torch.rand(batch, n, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).repeat(1, 1, dim))
        mask = torch.ones(batch, n, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        cls = (self.cls_token + self.pos_embed[:, :k]).expand(batch, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_embed(self.norm(x))
        mask_tokens = self.mask_token.repeat(batch, n + k - x.shape[1], 1)
        y = torch.cat([x[:, k:], mask_tokens], dim=1)
        y = torch.gather(y, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :k], y], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, k:]
        # MAE's patchify (rows, then columns, then channels) and norm-pix target: the same
        # formulas as ours
        target = normalize_patches(patchify(images, self.patch))
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()


def step_fn(
    model: nn.Module,
    images: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    dtype: torch.dtype,
    **kwargs: object,
) -> Callable[[], float]:
    """One training step; ``kwargs`` go to the model (ours: ``predict="masked"``, as in
    :func:`pixio_core.engine.pretrain_steps`)."""
    device = images.device

    def step() -> float:
        with autocast(device, dtype):
            out = model(images, **kwargs)
            loss = out["loss"] if isinstance(out, dict) else out
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


IMAGE_SIZES = {"mae": 224, "pixio": 256}  # 4x4 blocks need a 16x16 patch grid


def build_pair(size: str, recipe: str, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """``(ours, baseline)`` at one size: ``mae`` = 1 class token, per-patch masking, 512x8
    decoder, 224 px; ``pixio`` = 8 class tokens, 4x4 block masking, 512x32 decoder, 256 px (the
    baseline masks per patch: the same number of visible tokens)."""
    dim, depth, heads = WIDTHS[size]
    if recipe == "mae":
        decoder, prefix, masking = DecoderConfig(512, 8, 16), 1, MaskingConfig(0.75, 1)
    else:
        decoder, prefix, masking = DecoderConfig(512, 32, 16), 8, MaskingConfig(0.75, 4)
    image_size = IMAGE_SIZES[recipe]
    ours = create_mae(
        SIZES[size],
        recipe=recipe,
        decoder=decoder,
        masking=masking,
        image_size=image_size,
        num_class_tokens=prefix,
    )
    baseline = OfficialMAE(
        dim, depth, heads, decoder.embed_dim, decoder.depth, decoder.num_heads,
        image_size=image_size, prefix=prefix,
    )  # fmt: skip
    return ours.to(device), baseline.to(device)


def measure(
    variants: dict[str, Callable[[], float]], rounds: int, steps: int
) -> dict[str, list[float]]:
    """Seconds per step of each variant, one median per round, the variants interleaved."""
    for fn in variants.values():  # warm-up (allocator, compile)
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            per_step = []
            for _ in range(steps):
                start = time.perf_counter()
                fn()
                per_step.append(time.perf_counter() - start)
            times[name].append(statistics.median(per_step))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["small"], choices=list(SIZES))
    parser.add_argument("--recipes", nargs="+", default=["mae", "pixio"], choices=["mae", "pixio"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for both (GPU check)")
    parser.add_argument("--compile", action="store_true", help="also our model + torch.compile")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="also our model with torch's default AdamW and the head on all tokens (the levers off)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "pretrain_step.json"
    )
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.sizes:
            for recipe in args.recipes:
                torch.manual_seed(0)
                ours, baseline = build_pair(size, recipe, device)
                side = IMAGE_SIZES[recipe]
                images = torch.randn(args.batch_size, 3, side, side, device=device)
                base_opt = torch.optim.AdamW(
                    param_groups(baseline, 0.05), lr=1e-4, betas=(0.9, 0.95)
                )
                variants = {
                    "official MAE": step_fn(baseline, images, base_opt, dtype),
                    "pixio": step_fn(
                        ours, images, make_optimizer(ours, 0.05, (0.9, 0.95), 1e-4), dtype
                    ),
                }
                if args.plain:
                    plain = copy.deepcopy(ours)
                    variants["pixio (levers off)"] = step_fn(
                        plain, images,
                        make_optimizer(plain, 0.05, (0.9, 0.95), 1e-4, implementation="for-loop"),
                        dtype,
                    )  # fmt: skip
                if args.compile:
                    twin = create_mae(
                        SIZES[size], recipe=recipe, decoder=ours.decoder_config,
                        masking=ours.masking, image_size=side,
                        num_class_tokens=ours.encoder.num_class_tokens,
                    ).to(device)  # fmt: skip
                    variants["pixio + compile"] = step_fn(
                        torch.compile(twin),
                        images,
                        make_optimizer(twin, 0.05, (0.9, 0.95), 1e-4),
                        dtype,
                    )
                times = measure(variants, args.rounds, args.steps)
                base = statistics.median(times["official MAE"])
                for name, values in times.items():
                    median = statistics.median(values)
                    row = {
                        "size": size,
                        "recipe": recipe,
                        "threads": threads,
                        "variant": name,
                        "precision": "bf16" if args.bf16 else "fp32",
                        "seconds_per_step": median,
                        "images_per_s": args.batch_size / median,
                        "speedup_vs_official": base / median,
                        "round_seconds": values,
                    }
                    rows.append(row)
                    print(
                        f"{size:<6} {recipe:<6} {threads} thr  {name:<16} {row['images_per_s']:8.2f} img/s"
                        f"  x{row['speedup_vs_official']:.2f}"
                    )
    print(
        "\n| size | recipe | threads | variant | images/s | vs official MAE |\n|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['size']} | {r['recipe']} | {r['threads']} | {r['variant']} | "
            f"{r['images_per_s']:.2f} | {r['speedup_vs_official']:.2f}x |"
        )
    write_report(
        args.out,
        {
            "device": str(device),
            "batch_size": args.batch_size,
            "image_size": IMAGE_SIZES,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
