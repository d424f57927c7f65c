"""Encoder and pre-training speed on this machine, against timm and a baseline MAE step.

Measures, in one run:
* the machine's matmul peak (best of a few large ``torch.mm`` shapes) in fp32 and bf16;
* encoder forward images/s at 256 px for tiny/small/base: ours vs timm ``VisionTransformer``
  configured identically (class token + 7 register tokens, position embeddings over all 264
  tokens), in fp32 and bf16 autocast, and the fraction of the same-precision matmul peak reached;
* pre-training step images/s (forward + backward + AdamW, 75 % masked): ours at the default
  precision (``auto``) and in fp32, vs a baseline MAE step in fp32 built from timm blocks (per-patch
  random masking, encoder on visible tokens, decoder on all tokens, same decoder size);
* optionally (``--compile``) the same with ``torch.compile``.

Prints a markdown table and writes JSON (default ``benchmarks/results/encoder_speed.json``).
Numbers from a 2-core CPU are small; run it on the machine you care about.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from pixio_core.models import create_encoder, create_mae
from pixio_core.models.mae import normalize_patches, patchify
from pixio_core.precision import autocast, cpu_has_fast_bf16, resolve_precision

SIZES = {"tiny": "pixio_vitt16", "small": "pixio_vits16", "base": "pixio_vitb16"}


def timed(fn: Callable[[], object], warmup: int, iters: int, best: bool = False) -> float:
    """Median (or, with ``best``, minimum) seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) if best else sorted(times)[len(times) // 2]


PEAK_SHAPES = ((2048, 2048, 2048), (4096, 4096, 4096), (2112, 768, 3072))


def matmul_peak(dtype: torch.dtype, device: torch.device, shapes=PEAK_SHAPES) -> float:
    """Best FLOP/s over a few large matmul shapes (incl. the ViT-B MLP shape), fastest of 6 runs."""
    best = 0.0
    for m, k, n in shapes:
        a = torch.randn(m, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)
        seconds = timed(lambda a=a, b=b: torch.mm(a, b), 2, 6, best=True)
        best = max(best, 2 * m * k * n / seconds)
    return best


def vit_forward_flops(
    dim: int, depth: int, tokens: int, patches: int, mlp_ratio: float = 4.0
) -> float:
    """Matmul FLOPs of one image's forward (qkv, attention, proj, MLP, patch embedding)."""
    hidden = int(dim * mlp_ratio)
    per_block = 2 * tokens * dim * 3 * dim + 2 * 2 * tokens * tokens * dim + 2 * tokens * dim * dim
    per_block += 2 * 2 * tokens * dim * hidden
    return depth * per_block + 2 * patches * (16 * 16 * 3) * dim


def timm_twin(name: str) -> VisionTransformer:
    """timm's ViT with the same tokens as Pixio: 1 class + 7 register tokens, pos-embed on all."""
    encoder = create_encoder(name)
    config = encoder.config
    return VisionTransformer(
        img_size=256,
        patch_size=16,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        qkv_bias=True,
        class_token=True,
        reg_tokens=7,
        no_embed_class=False,
        num_classes=0,
        global_pool="avg",
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        dynamic_img_size=True,
    )


class BaselineMAE(nn.Module):
    """A textbook MAE step from timm blocks: per-patch masking, encoder on visible tokens only."""

    def __init__(self, name: str, decoder_dim: int, decoder_depth: int, decoder_heads: int) -> None:
        super().__init__()
        self.vit = timm_twin(name)
        dim = self.vit.embed_dim
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 264, decoder_dim))
        self.decoder_blocks = nn.Sequential(
            *[Block(decoder_dim, decoder_heads, 4.0, qkv_bias=True) for _ in range(decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, 768)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        x = vit.patch_embed(images).flatten(1, 2)
        batch, n, dim = x.shape
        pos = vit.pos_embed
        x = x + pos[:, 8:]
        keep = int(n * 0.25)
        ids_shuffle = torch.rand(batch, n, device=images.device).argsort(1)
        ids_restore = ids_shuffle.argsort(1)
        ids_keep = ids_shuffle[:, :keep]
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
        prefix = torch.cat([vit.cls_token, vit.reg_token], 1) + pos[:, :8]
        x = torch.cat([prefix.expand(batch, -1, -1), x], 1)
        x = vit.norm(vit.blocks(x))
        x = self.decoder_embed(x)
        masked = self.mask_token.expand(batch, n - keep, -1)
        patches = torch.cat([x[:, 8:], masked], 1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :8], patches], 1) + self.decoder_pos_embed
        pred = self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))[:, 8:]
        mask = torch.ones(batch, n, device=images.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        target = normalize_patches(patchify(images, 16))
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


def train_step_fn(model: nn.Module, images: torch.Tensor, dtype: torch.dtype, device: torch.device):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with autocast(device, dtype):
            out = model(images)
            loss = out["loss"] if isinstance(out, dict) else out
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    parser.add_argument(
        "--quick", action="store_true", help="one small matmul shape for the peak (smoke tests)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "encoder_speed.json"
    )
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    default_dtype = resolve_precision("auto", device)
    shapes = ((512, 512, 512),) if args.quick else PEAK_SHAPES
    peaks = {
        "fp32": matmul_peak(torch.float32, device, shapes),
        "bf16": matmul_peak(torch.bfloat16, device, shapes),
    }
    print(
        f"device {device}, threads {torch.get_num_threads()}, fast bf16 on CPU: {cpu_has_fast_bf16()}, "
        f"auto precision: {default_dtype}"
    )
    print(
        f"matmul peak: fp32 {peaks['fp32'] / 1e12:.3f} TFLOP/s, bf16 {peaks['bf16'] / 1e12:.3f} TFLOP/s"
    )
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    images = torch.randn(args.batch_size, 3, 256, 256, device=device)
    rows = []

    def record(
        kind: str,
        size: str,
        variant: str,
        precision: str,
        seconds: float,
        flops: float | None = None,
    ):
        row = {
            "kind": kind,
            "size": size,
            "variant": variant,
            "precision": precision,
            "images_per_s": args.batch_size / seconds,
        }
        if flops is not None:
            row["fraction_of_matmul_peak"] = flops * args.batch_size / seconds / peaks[precision]
        rows.append(row)
        extra = f", {row['fraction_of_matmul_peak']:.0%} of peak" if flops is not None else ""
        print(
            f"  {kind:<8} {size:<6} {variant:<22} {precision:<5} {row['images_per_s']:8.2f} img/s{extra}"
        )

    for size in args.sizes:
        name = SIZES[size]
        ours = create_encoder(name).to(device).eval()
        twin = timm_twin(name).to(device).eval()
        config = ours.config
        flops = vit_forward_flops(config.embed_dim, config.depth, 264, 256, config.mlp_ratio)
        for precision, dtype in dtypes.items():
            with torch.inference_mode(), autocast(device, dtype):
                record(
                    "forward",
                    size,
                    "pixio",
                    precision,
                    timed(partial(ours.forward_features, images), 1, args.iters),
                    flops,
                )
                record(
                    "forward",
                    size,
                    "timm ViT",
                    precision,
                    timed(partial(twin.forward_features, images), 1, args.iters),
                    flops,
                )
                if args.compile:
                    compiled = torch.compile(ours.forward_features)
                    record(
                        "forward",
                        size,
                        "pixio + compile",
                        precision,
                        timed(partial(compiled, images), 2, args.iters),
                        flops,
                    )

        mae = create_mae(name).to(device)
        decoder = mae.decoder_config
        baseline = BaselineMAE(name, decoder.embed_dim, decoder.depth, decoder.num_heads).to(device)
        record(
            "pretrain",
            size,
            "baseline MAE (timm)",
            "fp32",
            timed(train_step_fn(baseline, images, torch.float32, device), 1, args.iters),
        )
        record(
            "pretrain",
            size,
            "pixio",
            "fp32",
            timed(train_step_fn(mae, images, torch.float32, device), 1, args.iters),
        )
        default_name = "bf16" if default_dtype == torch.bfloat16 else "fp32"
        if default_name != "fp32":
            record(
                "pretrain",
                size,
                "pixio (auto precision)",
                default_name,
                timed(train_step_fn(mae, images, default_dtype, device), 1, args.iters),
            )
        if args.compile:
            compiled_mae = torch.compile(mae)
            record(
                "pretrain",
                size,
                "pixio + compile",
                default_name,
                timed(train_step_fn(compiled_mae, images, default_dtype, device), 2, args.iters),
            )

    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "cpu_fast_bf16": cpu_has_fast_bf16(),
        },
        "batch_size": args.batch_size,
        "image_size": 256,
        "matmul_peak_flops": peaks,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        "\n| kind | size | variant | precision | images/s | of matmul peak |\n|---|---|---|---|---|---|"
    )
    for row in rows:
        frac = f"{row['fraction_of_matmul_peak']:.0%}" if "fraction_of_matmul_peak" in row else ""
        print(
            f"| {row['kind']} | {row['size']} | {row['variant']} | {row['precision']} | "
            f"{row['images_per_s']:.2f} | {frac} |"
        )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
