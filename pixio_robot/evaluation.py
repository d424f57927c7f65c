"""Success-rate evaluation of a policy on frozen features, in parallel MuJoCo workers.

Episodes are rolled out ``num_envs`` at a time through Gymnasium's vector envs (worker processes
started with ``spawn``, so no MuJoCo/EGL state crosses a fork); the main process embeds every
batch of frames with the frozen encoder and asks the policy for a batch of actions. Episode
``e`` of seed ``s`` resets with seed ``1_000_000 * (s + 1) + e``: every encoder and policy is
scored on the same initial states, none of which is a demo's (demos use small reset seeds). An episode counts as a success if ``info["is_success"]`` was true at
any step (MetaWorld tasks do not terminate on success; ours do).
"""

from __future__ import annotations

import functools
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from pixio_core.models.encoder import PixioEncoder
from pixio_robot.features import embed_frames


def make_env(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """Build a registered env by id (importable in a fresh worker process)."""
    import pixio_envs  # noqa: F401  (registers our envs in this process)

    if env_id not in gym.registry:
        raise ValueError(
            f"unknown env {env_id!r}; registered pixio envs: "
            f"{', '.join(sorted(k for k in gym.registry if k.startswith('pixio_envs/')))}"
        )
    return gym.make(env_id, **env_kwargs)


EVAL_SEED_OFFSET = 1_000_000


def episode_seed(seed: int, episode: int) -> int:
    """Reset seed of episode ``episode`` of evaluation seed ``seed``.

    Offset by a million so that evaluation never starts from a demo's initial state:
    ``collect_demos`` resets with ``seed + attempt`` (small numbers).
    """
    return EVAL_SEED_OFFSET * (seed + 1) + episode


@dataclass
class EvalResult:
    env_id: str
    success_per_seed: dict[int, float]
    episodes_per_seed: int
    mean_episode_steps: float
    steps_per_s: float = 0.0  # environment steps per second of the whole control loop
    seconds: float = 0.0  # wall-clock time of the whole evaluation
    episodes: list[dict[str, Any]] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return float(np.mean(list(self.success_per_seed.values())))

    @property
    def success_std(self) -> float:
        """Spread over seeds (population std of the per-seed success rates)."""
        return float(np.std(list(self.success_per_seed.values())))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["success_per_seed"] = {str(k): v for k, v in self.success_per_seed.items()}
        out["success_rate"] = self.success_rate
        out["success_std"] = self.success_std
        return out


def write_video(path: Path, frames: list[np.ndarray], fps: int = 20) -> None:
    """uint8 ``(H, W, 3)`` frames -> H.264 mp4 (imageio-ffmpeg)."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)


@torch.no_grad()
def evaluate(
    policy: torch.nn.Module,
    encoder: PixioEncoder,
    env_id: str,
    env_kwargs: dict[str, Any],
    seeds: list[int],
    episodes_per_seed: int,
    image_size: int,
    feature: str = "pooled",
    num_envs: int = 1,
    video_dir: str | Path | None = None,
    videos_per_seed: int = 1,
    video_prefix: str = "",
    progress: bool = True,
    recording: str | Path | None = None,
) -> EvalResult:
    """Roll out ``episodes_per_seed`` episodes for each seed and report success per seed.

    ``policy.select_action({"features": (B, ...), "proprio": (B, P)}) -> (B, action_dim)``;
    with ``video_dir`` the first ``videos_per_seed`` episodes of each seed are written as mp4,
    with ``recording`` (an ``.rrd`` path) the same episodes' frames, proprio, actions, rewards
    and outcome as a Rerun recording (:mod:`pixio_robot.recording`).
    """
    if not seeds or episodes_per_seed < 1 or num_envs < 1:
        raise ValueError(
            f"need seeds, episodes_per_seed >= 1 and num_envs >= 1; got {seeds}, "
            f"{episodes_per_seed}, {num_envs}"
        )
    policy.eval()
    encoder.eval()
    todo = [(s, e) for s in seeds for e in range(episodes_per_seed)]
    num_envs = min(num_envs, len(todo))
    fns = [functools.partial(make_env, env_id, dict(env_kwargs)) for _ in range(num_envs)]
    envs = (
        gym.vector.AsyncVectorEnv(fns, context="spawn")
        if num_envs > 1
        else gym.vector.SyncVectorEnv(fns)
    )
    episodes: list[dict[str, Any]] = []
    videos: list[str] = []
    recorded: list[dict[str, Any]] = []
    steps_total, started = 0, time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"evaluate {env_id}", disable=not progress)
    try:
        for start in range(0, len(todo), num_envs):
            batch = todo[start : start + num_envs]
            # Spare workers in the last batch replay the batch's first episode and are ignored.
            reset_seeds = [episode_seed(*batch[min(i, len(batch) - 1)]) for i in range(num_envs)]
            obs, _ = envs.reset(seed=reset_seeds)
            policy.reset()
            active = np.arange(num_envs) < len(batch)
            success = np.zeros(num_envs, dtype=bool)
            lengths = np.zeros(num_envs, dtype=int)
            sum_reward = np.zeros(num_envs)
            max_reward = np.full(num_envs, -np.inf)
            keep = video_dir is not None or recording is not None
            record = [
                batch[i][1] < videos_per_seed and keep if i < len(batch) else False
                for i in range(num_envs)
            ]
            frames: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
            trace: list[dict[str, list]] = [
                {"proprio": [], "actions": [], "rewards": []} for _ in range(num_envs)
            ]
            while active.any():
                for i in np.flatnonzero(active):
                    if record[i]:
                        frames[i].append(obs["pixels"][i].copy())
                proprio_now = np.asarray(obs["proprio"]).copy()
                features = embed_frames(encoder, obs["pixels"], image_size, feature)
                action = policy.select_action(
                    {"features": features, "proprio": torch.as_tensor(obs["proprio"]).float()}
                )
                obs, reward, terminated, truncated, info = envs.step(
                    action.numpy().astype(np.float32)
                )
                reward = np.asarray(reward, dtype=np.float64)
                for i in np.flatnonzero(active):
                    if record[i]:
                        trace[i]["proprio"].append(proprio_now[i])
                        trace[i]["actions"].append(action[i].numpy().copy())
                        trace[i]["rewards"].append(reward[i])
                sum_reward += np.where(active, reward, 0.0)
                max_reward = np.where(active, np.maximum(max_reward, reward), max_reward)
                wins = np.asarray(info.get("is_success", np.zeros(num_envs)), dtype=bool)
                success |= wins & active
                lengths += active
                steps_total += int(active.sum())
                active &= ~(terminated | truncated)
            for i, (seed, episode) in enumerate(batch):
                episodes.append(
                    {
                        "seed": seed,
                        "episode": episode,
                        "reset_seed": episode_seed(seed, episode),
                        "success": bool(success[i]),
                        "steps": int(lengths[i]),
                        "sum_reward": float(sum_reward[i]),
                        "max_reward": float(max_reward[i]),
                    }
                )
                if record[i]:
                    outcome = "success" if success[i] else "failure"
                    if video_dir is not None:
                        name = f"{video_prefix}seed{seed}_ep{episode}_{outcome}.mp4"
                        write_video(Path(video_dir) / name, frames[i])
                        videos.append(str(Path(video_dir) / name))
                    recorded.append(
                        {
                            "frames": np.stack(frames[i]),
                            "proprio": np.stack(trace[i]["proprio"]),
                            "actions": np.stack(trace[i]["actions"]),
                            "rewards": np.asarray(trace[i]["rewards"]),
                            "outcome": f"seed {seed} episode {episode}: {outcome}",
                        }
                    )
            bar.update(len(batch))
            done = [e["success"] for e in episodes]
            bar.set_postfix(success=f"{np.mean(done):.0%}")
    finally:
        bar.close()
        envs.close()
    seconds = time.perf_counter() - started
    if recording is not None:
        from pixio_robot.recording import write_recording

        write_recording(recorded, recording)
    per_seed = {
        s: float(np.mean([e["success"] for e in episodes if e["seed"] == s])) for s in seeds
    }
    return EvalResult(
        env_id=env_id,
        success_per_seed=per_seed,
        episodes_per_seed=episodes_per_seed,
        mean_episode_steps=float(np.mean([e["steps"] for e in episodes])),
        steps_per_s=steps_total / max(seconds, 1e-9),
        seconds=seconds,
        episodes=episodes,
        videos=videos,
    )


def slug(text: str, empty: str = "encoder") -> str:
    """A folder name for an encoder reference or a policy name (``random:pixio_vitt16`` ->
    ``random_pixio_vitt16``, at most 60 characters; ``empty`` when nothing is left)."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    return cleaned[-60:] or empty


def results_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of evaluation rows (``name``, ``env_id`` and an :class:`EvalResult` dict)."""
    lines = [
        "| policy / encoder | task | success (mean ± std over seeds) | seeds x episodes | mean steps |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        seeds = len(row["success_per_seed"])
        lines.append(
            f"| {row['name']} | {row['env_id']} | {100 * row['success_rate']:.1f} ± "
            f"{100 * row['success_std']:.1f} % | {seeds} x {row['episodes_per_seed']} | "
            f"{row['mean_episode_steps']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def lerobot_eval_info(row: dict[str, Any]) -> dict[str, Any]:
    """One evaluation row in the shape of ``lerobot-eval``'s ``eval_info.json``: ``per_task``
    [{task_group, task_id, metrics: {sum_rewards, max_rewards, successes, video_paths, ...}}],
    ``per_group`` and ``overall`` ({avg_sum_reward, avg_max_reward, pc_success (percent),
    n_episodes, eval_s, eval_ep_s, video_paths}), plus ``per_episode`` as its single-env
    evaluator reports it ({episode_ix, sum_reward, max_reward, success, seed = reset seed})."""
    episodes = row["episodes"]
    sums = [e.get("sum_reward", float("nan")) for e in episodes]
    maxes = [e.get("max_reward", float("nan")) for e in episodes]
    successes = [bool(e["success"]) for e in episodes]
    videos = list(row.get("videos", []))
    seconds = float(row.get("seconds", 0.0))

    def mean(values: list) -> float:
        return float(np.nanmean(np.asarray(values, dtype=float))) if values else float("nan")

    aggregated = {
        "avg_sum_reward": mean(sums),
        "avg_max_reward": mean(maxes),
        "pc_success": 100.0 * mean(successes),
        "n_episodes": len(episodes),
    }
    timing = {"eval_s": seconds, "eval_ep_s": seconds / max(1, len(episodes))}
    paths = {"video_paths": videos, "predicted_video_paths": []}
    metrics = {"sum_rewards": sums, "max_rewards": maxes, "successes": successes, **paths}
    per_episode = [
        {"episode_ix": i, "sum_reward": s, "max_reward": m, "success": ok, "seed": e["reset_seed"]}
        for i, (s, m, ok, e) in enumerate(zip(sums, maxes, successes, episodes, strict=True))
    ]
    return {
        "per_task": [{"task_group": row["env_id"], "task_id": 0, "metrics": metrics}],
        "per_group": {row["env_id"]: {**aggregated, **paths}},
        "overall": {**aggregated, **timing, **paths},
        "per_episode": per_episode,
    }


def write_results(rows: list[dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """``results.json`` and ``results.md`` under ``out_dir``, and per evaluated policy LeRobot's
    ``eval_info.json`` under ``eval_info/<name>/``; returns the first two paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for row in rows:
        folder = out_dir / "eval_info" / slug(row["name"], empty="policy")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eval_info.json").write_text(json.dumps(lerobot_eval_info(row), indent=2))
        row["eval_info"] = str(folder / "eval_info.json")
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps(rows, indent=2))
    md_path.write_text(results_table(rows))
    return json_path, md_path
