"""Control-loop rate: frame in, action out, with rendering, on one CPU thread.

Each step of the loop is what a deployed policy does: ``env.step`` (physics and rendering the
next frame), the frozen encoder on that frame, the policy on the features and proprioception.
The encoder runs in fp32 and in int8 (:mod:`pixio_core.quantization`) in interleaved rounds on
the same env, so the two rates compare on one machine; the seconds of each part are timed
inside the loop. The policy is an untrained one of the given kind (its weights do not change its
speed) unless ``--policy`` names a trained checkpoint. One thread means torch with one thread
and Mesa's llvmpipe rasterizer with one thread (``LP_NUM_THREADS=1``, set here before the first
GL context). Prints a markdown table and writes JSON.

    python benchmarks/control_loop.py --envs metaworld:assembly-v3,metaworld:hammer-v3
    python benchmarks/control_loop.py --envs push_block --image-size 256 --feature patch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from robot_bc import env_spec  # noqa: E402

from pixio_core.loading import load_frozen_encoder  # noqa: E402
from pixio_robot.evaluation import make_env  # noqa: E402
from pixio_robot.features import embed_frames  # noqa: E402
from pixio_robot.policies import make_policy  # noqa: E402

PRECISIONS = ("fp32", "int8")


def run_loop(env, encoder, policy, image_size: int, feature: str, steps: int, seed: int):
    """Seconds per step of each part and of the whole loop over ``steps`` steps."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    parts = {"env_step": 0.0, "encoder": 0.0, "policy": 0.0}
    started = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        features = embed_frames(encoder, obs["pixels"][None], image_size, feature)
        t1 = time.perf_counter()
        action = policy.select_action(
            {"features": features, "proprio": torch.as_tensor(obs["proprio"])[None]}
        )
        t2 = time.perf_counter()
        obs, _, terminated, truncated, _ = env.step(action[0].numpy().astype(np.float32))
        t3 = time.perf_counter()
        parts["encoder"] += t1 - t0
        parts["policy"] += t2 - t1
        parts["env_step"] += t3 - t2
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + 1)
    total = time.perf_counter() - started
    return {key: value / steps for key, value in parts.items()} | {"loop": total / steps}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default="metaworld:assembly-v3,metaworld:hammer-v3")
    parser.add_argument("--encoder", default="pixio_sim_vitt16")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--feature", default="pooled", choices=("pooled", "patch", "grid"))
    parser.add_argument("--policy", default="mlp", help="policy kind (untrained)")
    parser.add_argument("--steps", type=int, default=100, help="steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per precision")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "control_loop.json"
    )
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1 or args.threads < 1:
        raise SystemExit("--steps, --rounds and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    encoders = {p: load_frozen_encoder(args.encoder, precision=p)[0] for p in PRECISIONS}
    rows = []
    for name in args.envs.split(","):
        env_id, env_kwargs, _ = env_spec(name, args.image_size)
        env = make_env(env_id, env_kwargs)
        obs, _ = env.reset(seed=0)
        with torch.inference_mode():
            probe = embed_frames(
                encoders["fp32"], obs["pixels"][None], args.image_size, args.feature
            )
            config = {}
            if args.feature == "patch":
                config["tokens_per_frame"] = int(probe.shape[1])
            policy = make_policy(
                args.policy,
                feature_dim=int(probe.shape[-1]),
                proprio_dim=int(obs["proprio"].shape[0]),
                action_dim=int(env.action_space.shape[0]),
                **config,
            ).eval()
            for precision in PRECISIONS:  # warm-up
                run_loop(env, encoders[precision], policy, args.image_size, args.feature, 5, 0)
            timings: dict[str, list[dict[str, float]]] = {p: [] for p in PRECISIONS}
            for round_index in range(args.rounds):
                for precision in PRECISIONS:
                    timings[precision].append(
                        run_loop(
                            env,
                            encoders[precision],
                            policy,
                            args.image_size,
                            args.feature,
                            args.steps,
                            round_index,
                        )  # fmt: skip
                    )
        env.close()
        for precision in PRECISIONS:
            median = {
                key: statistics.median(t[key] for t in timings[precision])
                for key in timings[precision][0]
            }
            rows.append(
                {
                    "env": name,
                    "env_id": env_id,
                    "encoder_precision": precision,
                    "hz": 1.0 / median["loop"],
                    "ms_per_step": {key: 1000 * value for key, value in median.items()},
                    "hz_per_round": [1.0 / t["loop"] for t in timings[precision]],
                }
            )
    report = {
        "benchmark": "control_loop",
        "settings": vars(args) | {"out": str(args.out)},
        "environment": {
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "llvmpipe_threads": os.environ.get("LP_NUM_THREADS"),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(
        "| env | encoder | control loop Hz | ms per step: env.step (physics + render) "
        "| encoder | policy |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        ms = row["ms_per_step"]
        print(
            f"| {row['env']} | {args.encoder} {row['encoder_precision']} | {row['hz']:.1f} "
            f"| {ms['env_step']:.1f} | {ms['encoder']:.1f} | {ms['policy']:.2f} |"
        )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
