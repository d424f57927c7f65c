"""Behavior cloning with frozen encoders: success rates, control-loop rate, caching speed.

For each env (our PushBlock task and any MetaWorld task), collects ``--demos`` scripted-expert
demos at ``--image-size`` px (the expert's success rate is reported), then for each encoder and
policy trains behavior cloning on the cached frozen features (``pixio_robot.pipeline``) and
evaluates the success rate over ``--seeds`` x ``--episodes`` rollouts in parallel workers
(``--train-seeds 3``: CortexBench's protocol, three policies trained with seeds 0, 1, 2, each
evaluated on its own ``--episodes`` rollouts, so the spread includes training's). Also
measures env steps/s (render + physics) and the full control loop (render + encoder + policy +
physics, one env). Encoders: any ``load_encoder`` source or ``random:<size>``. Prints a markdown
table and writes JSON.

    python benchmarks/robot_bc.py --envs push_block --policies mlp,act \
        --encoders pixio_sim_vitt16,random:pixio_vitt16
    python benchmarks/robot_bc.py --envs metaworld:drawer-open-v3,metaworld:hammer-v3 --demos 25
    python benchmarks/robot_bc.py --envs metaworld:push-v3 --policies mlp --train-seeds 3 \
        --seeds 3 --episodes 25
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pixio_envs
import torch
from pixio_envs.metaworld_pixels import MetaWorldExpert
from pixio_envs.push_block import PushBlockExpert

from pixio_core.checkpoint import resolve_checkpoint_dir
from pixio_core.loading import load_frozen_encoder, resolve_encoder_source
from pixio_robot.checkpoint import load_policy
from pixio_robot.demos import collect_demos
from pixio_robot.features import embed_frames
from pixio_robot.pipeline import evaluate_policy, train_policy
from pixio_robot.policies import parse_policy_config


def env_spec(name: str, image_size: int):
    """``push_block`` (v1, fixed goal), ``push_block_v0`` (goal drawn per episode) or
    ``metaworld:<task>`` -> (env id, env kwargs, expert)."""
    if name in ("push_block", "push_block_v0"):
        version = "v0" if name.endswith("v0") else "v1"
        return f"pixio_envs/PushBlock-{version}", {"image_size": image_size}, PushBlockExpert()
    if name.startswith("metaworld:"):
        task = name.split(":", 1)[1]
        env_id = f"pixio_envs/MetaWorld-{task}"
        kwargs = {"image_size": image_size}
        if env_id not in pixio_envs.ENVS:
            env_id, kwargs = "pixio_envs/MetaWorld", {**kwargs, "task": task}
        return env_id, kwargs, MetaWorldExpert(task)
    raise SystemExit(f"unknown env {name!r}: use push_block, push_block_v0 or metaworld:<task>")


def control_rate(
    env_id: str, env_kwargs: dict, policy_dir: Path, steps: int = 100, precision: str | None = None
):
    """(env steps/s with rendering alone, full control loop steps/s) for one env, one process;
    ``precision`` (fp32 | int8) runs the encoder in it (None: the policy's own)."""
    policy, config = load_policy(policy_dir)
    reference = config["encoder"]
    source = resolve_encoder_source(reference, resolve_checkpoint_dir(policy_dir))
    precision = precision or reference.get("precision", "fp32")
    encoder, _ = load_frozen_encoder(source, reference["seed"], precision=precision)
    env = gym.make(env_id, **env_kwargs)
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        obs, *_ = env.step(env.action_space.sample())
    env_rate = steps / (time.perf_counter() - start)
    policy.reset()
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            features = embed_frames(
                encoder, obs["pixels"][None], reference["image_size"], reference["feature"]
            )
            action = policy.select_action(
                {"features": features, "proprio": torch.as_tensor(obs["proprio"])[None]}
            )
            obs, *_ = env.step(action[0].numpy().astype(np.float32))
    loop_rate = steps / (time.perf_counter() - start)
    env.close()
    return env_rate, loop_rate


def previous_run(path: Path, settings: dict) -> tuple[list[dict], dict]:
    """The rows and expert statistics of an earlier run with the same settings written to
    ``path`` (they are kept and not run again), else none; a file of other settings is left to
    be replaced."""
    if not path.exists():
        return [], {}
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return [], {}
    # files older than these settings
    older = {"encoder_precision": "fp32", "train_seeds": 1, "policy_config": {}, "batch_size": 256}
    if any(report.get(key, older.get(key)) != value for key, value in settings.items()):
        print(f"{path} holds a run of other settings: it will be replaced")
        return [], {}
    return list(report.get("rows", [])), dict(report.get("expert", {}))


def merged_results(results: list, summaries: list[dict]) -> dict:
    """A row's success and training numbers from one or more (evaluation, training summary)
    pairs: with one policy, its rate over all seeds; with one policy per seed (each evaluated
    on its own seed), the mean and the population std over the policies, and each one's final
    BC loss."""
    per_seed = {seed: rate for r in results for seed, rate in r.success_per_seed.items()}
    rates = np.array(list(per_seed.values()), dtype=np.float64)
    merged = {  # as EvalResult's success_rate / success_std, over the seeds of all policies
        "success_rate": float(rates.mean()),
        "success_std_over_seeds": float(rates.std()),
        "success_per_seed": per_seed,
        "mean_episode_steps": float(np.mean([r.mean_episode_steps for r in results])),
        "eval_steps_per_s": float(np.mean([r.steps_per_s for r in results])),
        "final_bc_loss": float(np.mean([s["final_loss"] for s in summaries])),
        "feature_images_per_s": summaries[0]["feature_images_per_s"],
    }
    if len(results) > 1:
        merged["final_bc_loss_per_seed"] = [s["final_loss"] for s in summaries]
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default="push_block")
    parser.add_argument("--policies", default="mlp,act")
    parser.add_argument(
        "--policy-config",
        default="",
        help="policy config fields for every policy of --policies, name=value,... (e.g. "
        "chunk_size=4,n_action_steps=1 for act); default: the policies' own",
    )
    parser.add_argument(
        "--encoders", default="pixio_sim_vitt16,random:pixio_vitt16,outputs/demo/checkpoints"
    )
    parser.add_argument(
        "--feature",
        default="auto",
        choices=("auto", "pooled", "patch", "grid"),
        help="frame feature; auto: pooled for the MLP (CortexBench), patch tokens for ACT",
    )
    parser.add_argument(
        "--encoder-precision",
        default="fp32",
        choices=("fp32", "int8"),
        help="precision of the encoder for the policies' features (training and evaluation)",
    )
    parser.add_argument("--demos", type=int, default=25)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="evaluation seeds (of --episodes each); with --train-seeds > 1, one per policy",
    )
    parser.add_argument(
        "--train-seeds",
        type=int,
        default=1,
        help="policies trained per row, with training seeds 0..N-1 (CortexBench: 3); policy s "
        "is evaluated on evaluation seed s (--episodes episodes) and --seeds must equal N",
    )
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256, help="BC batch (CortexBench: 256)")
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_robot"))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "robot_bc.json"
    )
    args = parser.parse_args()
    try:
        policy_config = parse_policy_config(args.policy_config, args.policies.split(","))
    except ValueError as error:
        parser.error(f"--policy-config: {error}")
    if args.train_seeds < 1 or (args.train_seeds > 1 and args.seeds != args.train_seeds):
        parser.error(
            f"--train-seeds {args.train_seeds} needs --seeds {args.train_seeds} (one evaluation "
            f"seed per trained policy), got --seeds {args.seeds}"
        )
    settings = {
        "demos": args.demos,
        "image_size": args.image_size,
        "seeds": args.seeds,
        "episodes_per_seed": args.episodes,
        "bc_steps": args.steps,
        "batch_size": args.batch_size,
        "encoder_precision": args.encoder_precision,
        "train_seeds": args.train_seeds,
        "policy_config": policy_config,
    }
    rows, experts = previous_run(args.out, settings)

    def save() -> None:  # after every row: an interrupted run keeps what it finished
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {**settings, "expert": experts, "rows": rows}
        partial = args.out.with_suffix(".partial")
        partial.write_text(json.dumps(report, indent=2))
        partial.replace(args.out)

    for env_name in args.envs.split(","):
        env_id, env_kwargs, expert = env_spec(env_name, args.image_size)
        slug = env_name.replace(":", "_")
        demo_file = args.work / f"{slug}_{args.image_size}px_{args.demos}demos.hdf5"
        if not demo_file.exists():
            stats = collect_demos(
                env_id, expert, demo_file, args.demos, env_kwargs, valid_fraction=0.0,
                max_attempts=4 * args.demos,
            )  # fmt: skip
            experts[env_name] = {"successes": stats.successes, "attempts": stats.attempts}
            (demo_file.with_suffix(".expert.json")).write_text(json.dumps(experts[env_name]))
        else:
            experts[env_name] = json.loads(demo_file.with_suffix(".expert.json").read_text())
        for encoder_source in args.encoders.split(","):
            for policy_name in args.policies.split(","):
                feature = args.feature
                if feature == "auto":
                    feature = "patch" if policy_name == "act" else "pooled"
                done = [
                    r for r in rows
                    if (r["env"], r["encoder"], r["policy"], r["feature"])
                    == (env_name, encoder_source, policy_name, feature)
                ]  # fmt: skip
                if done:
                    print(f"{env_name} {encoder_source} {policy_name}: kept from {args.out}")
                    continue
                encoder_slug = encoder_source.replace("/", "_").replace(":", "_")
                if args.encoder_precision != "fp32":  # beside the fp32 policies, not over them
                    encoder_slug += f"_{args.encoder_precision}"
                config_slug = "".join(f"_{k}{v}" for k, v in sorted(policy_config.items()))
                config_slug += f"_batch{args.batch_size}" if args.batch_size != 256 else ""
                run_name = f"{slug}_{policy_name}{config_slug}_{feature}_{encoder_slug}"
                run = args.work / "runs" / run_name
                # one policy evaluated on every seed, or (CortexBench) one policy per seed
                plans = (
                    [(run, 0, list(range(args.seeds)))]
                    if args.train_seeds == 1
                    else [(run.with_name(f"{run.name}_seed{s}"), s, [s]) for s in range(args.seeds)]
                )
                results, summaries = [], []
                for run_dir, train_seed, eval_seeds in plans:
                    _, summary = train_policy(
                        demo_file, env_id, run_dir, encoder_source, policy_name,
                        policy_config=policy_config,
                        feature=feature, image_size=args.image_size, steps=args.steps,
                        batch_size=args.batch_size,
                        lr=1e-3 if policy_name == "mlp" else 1e-4, seed=train_seed,
                        cache_dir=args.work / "cache", overwrite=True,
                        encoder_precision=args.encoder_precision,
                    )  # fmt: skip
                    result, _ = evaluate_policy(
                        run_dir, eval_seeds, args.episodes, num_envs=args.num_envs,
                        video_dir=run_dir / "videos", videos_per_seed=1,
                    )  # fmt: skip
                    results.append(result)
                    summaries.append(summary)
                env_rate, loop_rate = control_rate(env_id, env_kwargs, plans[0][0])
                _, loop_int8 = control_rate(env_id, env_kwargs, plans[0][0], precision="int8")
                rows.append(
                    {
                        "env": env_name,
                        "env_id": env_id,
                        "encoder": encoder_source,
                        "policy": policy_name,
                        "feature": feature,
                        **merged_results(results, summaries),
                        "env_steps_per_s": env_rate,
                        "control_loop_hz": loop_rate,
                        "control_loop_hz_int8_encoder": loop_int8,
                    }
                )
                save()
    save()
    print("\n| env | expert success | encoder | policy | feature | BC success (mean ± std over seeds) "
          "| feature caching img/s | env steps/s | control loop Hz (int8 encoder) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        stats = experts.get(row["env"])
        expert_text = f"{stats['successes']}/{stats['attempts']}" if stats else "-"
        print(
            f"| {row['env']} | {expert_text} "
            f"| {row['encoder']} | {row['policy']} | {row['feature']} "
            f"| {100 * row['success_rate']:.0f} ± "
            f"{100 * row['success_std_over_seeds']:.0f} % | {row['feature_images_per_s']:.0f} "
            f"| {row['env_steps_per_s']:.0f} | {row['control_loop_hz']:.0f} "
            f"({row.get('control_loop_hz_int8_encoder', float('nan')):.0f}) |"
        )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
