"""The robot-learning jobs as plain functions: train a policy on demos, evaluate a checkpoint.

``pixio-robot train|eval|compare`` and ``pixio-demo`` wire these to hydra configs; they take
plain values, so scripts and notebooks call them directly too.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from pixio_core.checkpoint import (
    LAST_POINTER,
    is_checkpoint_dir,
    resolve_checkpoint_dir,
    write_last_pointer,
)
from pixio_core.loading import encoder_reference, load_frozen_encoder, resolve_encoder_source
from pixio_core.quantization import ENCODER_PRECISIONS
from pixio_core.runlog import RunLogger
from pixio_robot.bc import DemoFeatureDataset, train_bc
from pixio_robot.checkpoint import check_policy_fits_env, load_policy, save_policy
from pixio_robot.demos import inspect_demos
from pixio_robot.evaluation import EvalResult, evaluate, make_env
from pixio_robot.features import cached_demo_features
from pixio_robot.lerobot import demos_as_hdf5
from pixio_robot.policies import make_policy


def train_policy(
    demos: str | Path,
    env_id: str,
    output: str | Path,
    encoder_source: str,
    policy_name: str = "mlp",
    policy_config: dict[str, Any] | None = None,
    feature: str = "pooled",
    image_size: int = 224,
    encoder_seed: int = 0,
    encoder_precision: str = "fp32",
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    cache_dir: str | Path = "outputs/robot/feature_cache",
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Demos -> cached frozen-encoder features -> behavior cloning -> a policy run folder.

    ``output`` receives ``log.jsonl``, ``tensorboard/`` and ``checkpoint/`` (the self-contained
    policy, see :mod:`pixio_robot.checkpoint`) with a ``last`` pointer, so either folder loads.

    The demo file must come from ``env_id`` with the env's action size; the env settings stored
    in the demo file (render size, camera, task) are saved with the policy and reused at
    evaluation, so frames are rendered and preprocessed the same way. ``demos`` may also be a
    LeRobot v3 dataset folder (converted once to HDF5 under ``cache_dir``).
    ``encoder_precision="int8"`` computes the features with the encoder's linear layers in int8
    (CPU; :mod:`pixio_core.quantization`); it is saved with the policy and evaluation uses it.
    """
    if encoder_precision not in ENCODER_PRECISIONS:
        raise ValueError(
            f"encoder precision must be one of {ENCODER_PRECISIONS}, got {encoder_precision!r}"
        )
    output = Path(output)
    if (is_checkpoint_dir(output) or (output / LAST_POINTER).exists()) and not overwrite:
        raise FileExistsError(
            f"{output} already holds a policy; pass overwrite=true or another output"
        )
    probe = make_env(env_id, {})
    try:
        action_dim = int(probe.action_space.shape[0])
    finally:
        probe.close()
    source = demos
    demos = demos_as_hdf5(demos, cache_dir, progress=progress)
    info = inspect_demos(demos, env_name=env_id, action_dim=action_dim)
    for key in ("pixels", "proprio"):
        if key not in info.obs_keys:
            raise ValueError(f"{demos} has no '{key}' observations (it has {list(info.obs_keys)})")
    encoder, encoder_id = load_frozen_encoder(
        encoder_source, encoder_seed, device, encoder_precision
    )
    features, cache_stats = cached_demo_features(
        demos, encoder, encoder_id, cache_dir, feature, image_size, progress=progress
    )
    policy_config = dict(policy_config or {})
    sample = next(iter(features.values()))
    if feature == "patch":
        policy_config.setdefault("tokens_per_frame", int(sample.shape[1]))
    torch.manual_seed(seed)
    policy = make_policy(
        policy_name,
        feature_dim=int(sample.shape[-1]),
        proprio_dim=int(info.obs_shapes["proprio"][0]),
        action_dim=action_dim,
        **policy_config,
    )
    dataset = DemoFeatureDataset(
        str(demos),
        features,
        frame_history=policy.config.frame_history,
        split="train",
        action_horizon=policy.config.action_horizon,
    )
    output.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(output)
    started = time.perf_counter()
    try:
        losses = train_bc(
            policy, dataset, steps, batch_size, lr, weight_decay, seed, progress, log=logger.log
        )
    finally:
        logger.close()
    summary = {
        "demos": str(source),
        "num_demos": info.num_demos,
        "train_samples": len(dataset),
        "steps": steps,
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "train_seconds": time.perf_counter() - started,
        "feature_images_per_s": cache_stats["images_per_s"],
        "features_from_cache": bool(cache_stats["cached"]),
    }
    encoder_ref = encoder_reference(
        encoder_source,
        encoder_seed,
        output / "checkpoint",
        feature=feature,
        image_size=image_size,
        embed_dim=encoder.embed_dim,
        precision=encoder_precision,
    )
    checkpoint = save_policy(
        output / "checkpoint", policy, policy_name, encoder_ref,
        {"id": env_id, "kwargs": info.env_kwargs}, train=summary,
    )  # fmt: skip
    write_last_pointer(output, checkpoint)
    return output, summary


def evaluate_policy(
    checkpoint: str | Path,
    seeds: list[int],
    episodes_per_seed: int,
    num_envs: int = 1,
    video_dir: str | Path | None = None,
    videos_per_seed: int = 1,
    device: str = "cpu",
    progress: bool = True,
    recording: str | Path | None = None,
    encoder_precision: str | None = None,
) -> tuple[EvalResult, dict[str, Any]]:
    """Roll out a policy checkpoint in the env it was trained on; ``(result, its config)``.
    With ``recording`` (an ``.rrd`` path) the first ``videos_per_seed`` episodes of each seed
    are also written as a Rerun recording. ``encoder_precision`` (``fp32`` | ``int8``) runs the
    encoder in another precision than the policy was trained with (None: the policy's own)."""
    policy, config = load_policy(checkpoint)
    env_id, env_kwargs = config["env"]["id"], config["env"]["kwargs"]
    probe = make_env(env_id, env_kwargs)
    try:
        check_policy_fits_env(config, probe)
    finally:
        probe.close()
    reference = config["encoder"]
    source = resolve_encoder_source(reference, resolve_checkpoint_dir(checkpoint))
    trained = reference.get("precision", "fp32")
    precision = encoder_precision or trained
    encoder, _ = load_frozen_encoder(source, reference.get("seed", 0), device, precision)
    if precision != trained:
        warnings.warn(
            f"{checkpoint} was trained on {trained} features and is evaluated on {precision} "
            "ones: the policy sees features it was not trained on (on MetaWorld assembly an "
            "fp32-trained policy fell from 36 % to 21 % with int8 features, 3 x 25 episodes)",
            stacklevel=2,
        )
    if encoder.embed_dim != reference.get("embed_dim", encoder.embed_dim):
        raise ValueError(
            f"{checkpoint} was trained on features of width {reference['embed_dim']}, but "
            f"{source} now gives width {encoder.embed_dim}"
        )
    result = evaluate(
        policy.to(device),
        encoder,
        env_id,
        env_kwargs,
        seeds,
        episodes_per_seed,
        reference["image_size"],
        reference["feature"],
        num_envs=num_envs,
        video_dir=video_dir,
        videos_per_seed=videos_per_seed if video_dir is not None or recording else 0,
        video_prefix=f"{Path(checkpoint).name}_",
        progress=progress,
        recording=recording,
    )
    return result, config


def result_row(name: str, result: EvalResult, config: dict[str, Any]) -> dict[str, Any]:
    """One row of results.json: the evaluation plus what was evaluated."""
    return {
        "name": name,
        "policy": config["policy"],
        "encoder": config["encoder"],
        "train": config.get("train", {}),
        **result.to_dict(),
    }


def dump(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2))
