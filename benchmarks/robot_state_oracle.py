"""Diagnostic: behavior cloning on the true state instead of frame features.

Trains a policy on demos whose "features" are the simulator state (``obs/state``: PushBlock's
pusher, puck and goal positions, MetaWorld's 39-d state) and rolls it out reading the same state,
on the evaluation reset seeds of ``pixio_robot.evaluation``. It separates "the policy class and
25 demos cannot learn the task" from "the frozen encoder's features lack the information": if BC
fails even here, no encoder can make it succeed. Prints the success rate and writes JSON.

    python benchmarks/robot_state_oracle.py --demos outputs/demo/robot/demos/push_block.hdf5
    python benchmarks/robot_state_oracle.py --policies mlp --seeds 3 --episodes 25 \
        --demos outputs/bench_robot/metaworld_hammer-v3_128px_25demos.hdf5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pixio_envs  # noqa: F401
import torch

from pixio_robot.bc import DemoFeatureDataset, train_bc
from pixio_robot.evaluation import episode_seed
from pixio_robot.policies import make_policy, parse_policy_config

SETTINGS = {"mlp": {"steps": 6000, "lr": 1e-3}, "act": {"steps": 1500, "lr": 3e-4}}


@torch.no_grad()
def rollouts(policy, env_id: str, env_kwargs: dict, seeds: int, episodes: int) -> list[bool]:
    env = gym.make(env_id, **{**env_kwargs, "image_size": 32})  # the pixels are not read
    wins = []
    for seed in range(seeds):
        for episode in range(episodes):
            obs, _ = env.reset(seed=episode_seed(seed, episode))
            policy.reset()
            done, success = False, False
            while not done:
                action = policy.select_action(
                    {
                        "features": torch.as_tensor(obs["state"])[None],
                        "proprio": torch.as_tensor(obs["proprio"])[None],
                    }
                )
                obs, _, terminated, truncated, info = env.step(action[0].numpy())
                done, success = terminated or truncated, success or info["is_success"]
            wins.append(success)
    env.close()
    return wins


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--demos", type=Path, default=Path("outputs/demo/robot/demos/push_block.hdf5")
    )
    parser.add_argument("--policies", default="mlp,act")
    parser.add_argument(
        "--policy-config",
        default="",
        help="policy config fields for every policy of --policies, name=value,... (e.g. "
        "chunk_size=4,n_action_steps=1 for act)",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=0, help="BC steps (0: per policy, SETTINGS)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "robot_state_oracle.json"
    )
    args = parser.parse_args()
    try:
        policy_config = parse_policy_config(args.policy_config, args.policies.split(","))
    except ValueError as error:
        parser.error(f"--policy-config: {error}")
    with h5py.File(args.demos) as handle:
        env_args = json.loads(handle["data"].attrs["env_args"])
        states = {
            name: torch.as_tensor(handle[f"data/{name}/obs/state"][:]) for name in handle["data"]
        }
        first = handle["data"][next(iter(handle["data"]))]
        proprio_dim, action_dim = first["obs/proprio"].shape[1], first["actions"].shape[1]
    state_dim = next(iter(states.values())).shape[1]
    rows = []
    for name in args.policies.split(","):
        torch.manual_seed(0)
        policy = make_policy(
            name,
            feature_dim=state_dim,
            proprio_dim=proprio_dim,
            action_dim=action_dim,
            **policy_config,
        )
        dataset = DemoFeatureDataset(
            str(args.demos), states, frame_history=policy.config.frame_history, split="train",
            action_horizon=policy.config.action_horizon,
        )  # fmt: skip
        settings = {**SETTINGS[name], **({"steps": args.steps} if args.steps > 0 else {})}
        train_bc(policy, dataset, settings["steps"], batch_size=64, lr=settings["lr"])
        wins = rollouts(
            policy, env_args["env_name"], env_args["env_kwargs"], args.seeds, args.episodes
        )
        per_seed = [
            float(np.mean(wins[s * args.episodes : (s + 1) * args.episodes]))
            for s in range(args.seeds)
        ]
        rows.append(
            {
                "policy": name,
                "policy_config": policy_config,
                **settings,
                "success_rate": float(np.mean(wins)),
                "success_std_over_seeds": float(np.std(per_seed)),
                "success_per_seed": per_seed,
            }
        )
        print(f"{name}: state-oracle BC success {100 * np.mean(wins):.0f} % (per seed {per_seed})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"env": env_args["env_name"], "demos": str(args.demos), "rows": rows}
    args.out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
