"""Self-contained policy checkpoints and the checks that a policy fits an env.

A policy checkpoint is a folder (written atomically by :func:`pixio_core.checkpoint.save_checkpoint`):

    model.safetensors   policy weights, including the normalization statistics (buffers)
    config.json         {"kind": "pixio_robot_policy", "policy": name, "policy_config": {...},
                         "encoder": {"source", "seed", "feature", "image_size", "embed_dim"},
                         "env": {"id", "kwargs"}, "proprio_dim", "action_dim", "train": {...}}

Everything needed to act again is in the folder: which encoder (by reference; its weights stay
where they are), how frames are preprocessed, which env and the policy's statistics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from pixio_core.checkpoint import load_checkpoint, save_checkpoint
from pixio_robot.policies import make_policy

KIND = "pixio_robot_policy"


def save_policy(
    directory: str | os.PathLike,
    policy: torch.nn.Module,
    policy_name: str,
    encoder: dict[str, Any],
    env: dict[str, Any],
    train: dict[str, Any] | None = None,
) -> Path:
    """Write ``policy`` with everything needed to run it again; returns the folder."""
    missing = {"source", "feature", "image_size"} - set(encoder)
    if missing:
        raise ValueError(f"encoder reference lacks {sorted(missing)}")
    config = {
        "kind": KIND,
        "policy": policy_name,
        "policy_config": policy.config.to_dict(),
        "encoder": dict(encoder),
        "env": {"id": env["id"], "kwargs": dict(env.get("kwargs", {}))},
        "proprio_dim": policy.config.proprio_dim,
        "action_dim": policy.config.action_dim,
        "train": dict(train or {}),
    }
    return save_checkpoint(directory, policy.state_dict(), config)


def load_policy(directory: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(policy in eval mode, its config.json)`` from a policy checkpoint or a training run
    folder (its ``last`` pointer); a clear error for folders of other kinds."""
    state_dict, config, _ = load_checkpoint(directory)
    if config.get("kind") != KIND:
        raise ValueError(
            f"{directory} is not a policy checkpoint (config kind {config.get('kind')!r}, "
            f"expected {KIND!r}); pretraining checkpoints hold encoders, not policies"
        )
    policy = make_policy(config["policy"], **config["policy_config"])
    result = policy.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{directory}: weights do not fit policy {config['policy']!r} "
            f"(missing {result.missing_keys}, unexpected {result.unexpected_keys})"
        )
    return policy.eval(), config


def check_policy_fits_env(config: dict[str, Any], env: gym.Env | gym.vector.VectorEnv) -> None:
    """Raise ``ValueError`` naming the mismatch when a policy cannot drive ``env``."""
    space = getattr(env, "single_action_space", env.action_space)
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    env_id = env.spec.id if env.spec is not None else "?"
    if config["env"]["id"] != env_id:
        raise ValueError(
            f"the policy was trained on {config['env']['id']!r}, not {env_id!r}; "
            "evaluate it on the env it was trained for"
        )
    if tuple(space.shape) != (config["action_dim"],):
        raise ValueError(
            f"the policy outputs actions of dimension {config['action_dim']}, "
            f"{env_id} expects {tuple(space.shape)}"
        )
    proprio = obs_space["proprio"].shape if "proprio" in obs_space.spaces else (0,)
    if tuple(proprio) != (config["proprio_dim"],):
        raise ValueError(
            f"the policy reads proprio of dimension {config['proprio_dim']}, "
            f"{env_id} gives {tuple(proprio)}"
        )
