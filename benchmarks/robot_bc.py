"""Behavior cloning on PushBlock-v0 with frozen encoders: success rate, control-loop rate, caching speed.

Collects ``--demos`` scripted-expert demos at ``--image-size`` px, caches the pooled class-token
features of every frame for each encoder, trains the CortexBench MLP policy (3 frames + proprio,
256x3) and evaluates the success rate over ``--seeds`` x ``--episodes`` rollouts. Encoders: a
pixio-pretrain checkpoint (``--checkpoint``, default: the demo's) and the same architecture
randomly initialised. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pixio_envs  # noqa: F401
import torch
from pixio_envs.push_block import PushBlockExpert

from pixio_core import load_encoder
from pixio_core.models import PixioEncoder
from pixio_robot.bc import DemoFeatureDataset, evaluate, train_bc
from pixio_robot.demos import collect_demos
from pixio_robot.features import cached_demo_features, embed_frames
from pixio_robot.policies import make_policy

ENV = "pixio_envs/PushBlock-v0"


def control_rate(
    encoder: PixioEncoder, policy, image_size: int, steps: int = 100
) -> tuple[float, float]:
    """(env steps/s with rendering alone, full control loop steps/s: render + encoder + policy + step)."""
    env = gym.make(ENV, image_size=image_size)
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        obs, *_ = env.step(env.action_space.sample())
    env_rate = steps / (time.perf_counter() - start)
    policy.reset()
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            features = embed_frames(encoder, obs["pixels"][None], image_size)[0]
            action = policy.select_action(features, torch.as_tensor(obs["proprio"]))
            obs, *_ = env.step(action.numpy().astype(np.float32))
    loop_rate = steps / (time.perf_counter() - start)
    env.close()
    return env_rate, loop_rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="outputs/demo/checkpoints")
    parser.add_argument("--demos", type=int, default=25)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_robot"))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "robot_bc.json"
    )
    args = parser.parse_args()
    demo_file = args.work / f"push_{args.image_size}_{args.demos}.hdf5"
    if not demo_file.exists():
        stats = collect_demos(
            ENV,
            PushBlockExpert(),
            demo_file,
            args.demos,
            {"image_size": args.image_size},
            valid_fraction=0.0,
        )
        print(f"expert success {stats.successes}/{stats.attempts}")
    trained = load_encoder(args.checkpoint)
    torch.manual_seed(0)
    random_init = PixioEncoder(trained.config).eval()
    rows = []
    for name, encoder in (
        (f"pixio-pretrain checkpoint {args.checkpoint}", trained),
        ("same architecture, random init", random_init),
    ):
        features, stats = cached_demo_features(
            demo_file,
            encoder,
            name + str(time.time()),
            args.work / "cache",
            image_size=args.image_size,
        )
        dataset = DemoFeatureDataset(str(demo_file), features, split="train")
        policy = make_policy("mlp", feature_dim=encoder.embed_dim, proprio_dim=4, action_dim=2)
        train_bc(policy, dataset, steps=args.steps)
        result = evaluate(
            policy,
            encoder,
            ENV,
            {"image_size": args.image_size},
            list(range(args.seeds)),
            args.episodes,
            args.image_size,
        )
        env_rate, loop_rate = control_rate(encoder, policy, args.image_size)
        rows.append(
            {
                "encoder": name,
                "success_rate": result.success_rate,
                "success_std_over_seeds": result.success_std,
                "success_per_seed": result.success_per_seed,
                "feature_images_per_s": stats["images_per_s"],
                "env_steps_per_s": env_rate,
                "control_loop_hz": loop_rate,
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "env": ENV,
                "demos": args.demos,
                "image_size": args.image_size,
                "seeds": args.seeds,
                "episodes_per_seed": args.episodes,
                "bc_steps": args.steps,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(
        "\n| encoder | success (mean ± std over seeds) | feature caching img/s | env steps/s | control loop Hz |\n"
        "|---|---|---|---|---|"
    )
    for row in rows:
        print(
            f"| {row['encoder']} | {row['success_rate']:.0%} ± {row['success_std_over_seeds']:.0%} | "
            f"{row['feature_images_per_s']:.0f} | {row['env_steps_per_s']:.0f} | {row['control_loop_hz']:.0f} |"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
