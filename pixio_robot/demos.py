"""Scripted-expert demonstrations in robomimic's HDF5 layout.

    data/                  attrs: total (number of samples), env_args (JSON: env_name, env_kwargs, ...)
      demo_0/              attrs: num_samples
        obs/<key>          (T, ...) per observation key (pixels uint8 (T, H, W, 3), proprio, state)
        next_obs/<key>     (T, ...)
        actions            (T, action_dim) float32
        rewards            (T,) float32
        dones              (T,) uint8 (1 on the last step of a successful episode)
    mask/train, mask/valid  names of the demos in each split (bytes)

Only successful episodes are kept. Files are written to a temporary name and renamed when
complete, and an existing file is never overwritten unless asked to.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import h5py
import numpy as np
from tqdm.auto import tqdm

from pixio_core.io import atomic_file


class Expert(Protocol):
    def reset(self) -> None: ...

    def get_action(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass
class CollectionStats:
    attempts: int = 0
    successes: int = 0
    samples: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / max(1, self.attempts)


def _episode(
    env: gym.Env, expert: Expert, seed: int, action_noise: float = 0.0
) -> tuple[dict[str, list], bool]:
    """One expert episode. With ``action_noise`` the executed action is the expert's plus
    Gaussian noise of that std (clipped to the action space) while the recorded action stays
    the expert's (DART, Laskey et al. 2017): the demos then show how the expert recovers from
    the small errors a cloned policy makes."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    rng = np.random.default_rng([seed, 7])
    record: dict[str, list] = {"obs": [], "next_obs": [], "actions": [], "rewards": [], "dones": []}
    done = False
    low, high = env.action_space.low, env.action_space.high
    while not done:
        action = np.asarray(expert.get_action(obs), dtype=np.float32)
        executed = action
        if action_noise > 0:
            noise = rng.normal(0.0, action_noise, action.shape)
            executed = np.clip(action + noise, low, high).astype(np.float32)
        next_obs, reward, terminated, truncated, info = env.step(executed)
        done = terminated or truncated
        record["obs"].append(obs)
        record["next_obs"].append(next_obs)
        record["actions"].append(action)
        record["rewards"].append(float(reward))
        record["dones"].append(int(done and bool(info.get("is_success", False))))
        obs = next_obs
    return record, bool(info.get("is_success", False))


def collect_demos(
    env_id: str,
    expert: Expert,
    output: str | os.PathLike,
    num_demos: int,
    env_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    valid_fraction: float = 0.1,
    max_attempts: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    action_noise: float = 0.0,
) -> CollectionStats:
    """Roll out ``expert`` in ``env_id`` until ``num_demos`` successful episodes are written.

    ``action_noise``: the std of Gaussian noise added to the executed actions while the expert's
    own actions are recorded (see :func:`_episode`; the demo attribute ``action_noise`` says
    so); 0 records the expert's own trajectories."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(
            f"{output} already exists; pass overwrite=True (or choose another path)"
        )
    if num_demos < 1:
        raise ValueError(f"num_demos must be >= 1, got {num_demos}")
    env_kwargs = dict(env_kwargs or {})
    env = gym.make(env_id, **env_kwargs)
    max_attempts = max_attempts or 3 * num_demos
    stats = CollectionStats()
    bar = tqdm(total=num_demos, desc=f"demos {env_id}", disable=not progress)
    # a unique temporary name beside the output (no file of the user's is ever replaced)
    try:
        with atomic_file(output) as tmp, h5py.File(tmp, "w") as handle:
            data = handle.create_group("data")
            while stats.successes < num_demos:
                if stats.attempts >= max_attempts:
                    raise RuntimeError(
                        f"the expert succeeded in {stats.successes} of {stats.attempts} episodes of {env_id}; "
                        f"{num_demos} demos were asked for (max_attempts={max_attempts})"
                    )
                record, success = _episode(env, expert, seed + stats.attempts, action_noise)
                stats.attempts += 1
                if not success:
                    continue
                group = data.create_group(f"demo_{stats.successes}")
                steps = len(record["actions"])
                group.attrs["num_samples"] = steps
                group.attrs["seed"] = seed + stats.attempts - 1
                group.attrs["action_noise"] = float(action_noise)
                for part in ("obs", "next_obs"):
                    for key in record[part][0]:
                        stacked = np.stack([o[key] for o in record[part]])
                        compression = "gzip" if stacked.dtype == np.uint8 else None
                        group.create_dataset(f"{part}/{key}", data=stacked, compression=compression)
                group.create_dataset("actions", data=np.stack(record["actions"]).astype(np.float32))
                group.create_dataset(
                    "rewards", data=np.asarray(record["rewards"], dtype=np.float32)
                )
                group.create_dataset("dones", data=np.asarray(record["dones"], dtype=np.uint8))
                stats.successes += 1
                stats.samples += steps
                bar.update(1)
                bar.set_postfix(success_rate=f"{stats.success_rate:.0%}")
            data.attrs["total"] = stats.samples
            data.attrs["env_args"] = json.dumps(
                {"env_name": env_id, "type": "gymnasium", "env_kwargs": env_kwargs}
            )
            names = [f"demo_{i}" for i in range(num_demos)]
            n_valid = int(round(num_demos * valid_fraction))
            order = np.random.default_rng(seed).permutation(num_demos)
            valid = sorted(names[i] for i in order[:n_valid])
            train = sorted(names[i] for i in order[n_valid:])
            handle.create_dataset("mask/train", data=np.array(train, dtype="S"))
            handle.create_dataset("mask/valid", data=np.array(valid, dtype="S"))
    finally:
        bar.close()
        env.close()
    return stats


@dataclass(frozen=True)
class DemoFileInfo:
    env_name: str
    env_kwargs: dict[str, Any]
    num_demos: int
    total: int
    action_dim: int
    obs_keys: tuple[str, ...]
    obs_shapes: dict[str, tuple[int, ...]]  # per-step shape of each observation key


def inspect_demos(
    path: str | os.PathLike, env_name: str | None = None, action_dim: int | None = None
) -> DemoFileInfo:
    """Validate a demo file once, up front, and describe it. Every demo is checked: the same
    observation keys, shapes and dtypes as the first, ``obs`` / ``next_obs`` / ``actions`` /
    ``rewards`` / ``dones`` of one length, finite actions and proprioception, ``mask/*`` naming
    existing demos, readable ``env_args``. A ``ValueError`` names the file, the group and what
    was expected."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"demo file {path} does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file: {error}") from error
    with handle:
        if "data" not in handle or "env_args" not in handle["data"].attrs:
            raise ValueError(
                f"{path} is not a robomimic-layout demo file (no data group with env_args)"
            )
        try:
            env_args = json.loads(handle["data"].attrs["env_args"])
            if not isinstance(env_args, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            raise ValueError(f"{path}: data.attrs['env_args'] is not JSON ({error})") from None
        demos = sorted(k for k in handle["data"] if k.startswith("demo_"))
        if not demos:
            raise ValueError(f"{path} holds no demos")
        try:
            first = _check_demo(path, handle["data"][demos[0]], None)
            for name in demos[1:]:
                _check_demo(path, handle["data"][name], first)
            for split in handle.get("mask", {}):
                names = [
                    n.decode() if isinstance(n, bytes) else str(n) for n in handle["mask"][split][:]
                ]
                unknown = sorted(set(names) - set(demos))
                if unknown:
                    raise ValueError(
                        f"{path}: mask/{split} names demos that do not exist: {unknown[:5]}"
                    )
        except KeyError as error:
            raise ValueError(f"{path}: a demo lacks {error}") from None
        info = DemoFileInfo(
            env_name=env_args.get("env_name", ""),
            env_kwargs=env_args.get("env_kwargs", {}),
            num_demos=len(demos),
            total=int(handle["data"].attrs.get("total", 0)),
            action_dim=first["action_dim"],
            obs_keys=tuple(sorted(first["shapes"])),
            obs_shapes=first["shapes"],
        )
    if env_name is not None and info.env_name != env_name:
        raise ValueError(f"{path} holds demos of {info.env_name!r}, not {env_name!r}")
    if action_dim is not None and info.action_dim != action_dim:
        raise ValueError(
            f"{path} has actions of dimension {info.action_dim}, the env expects {action_dim}"
        )
    return info


def _check_demo(path: Path, group: Any, reference: dict[str, Any] | None) -> dict[str, Any]:
    """One demo's layout (``{"action_dim", "shapes", "dtypes"}``), checked against the first
    demo's when ``reference`` is given; a ``ValueError`` names the file and group."""
    where = f"{path}: {group.name.lstrip('/')}"
    actions = group["actions"]
    if actions.ndim != 2 or actions.dtype.kind != "f":
        raise ValueError(
            f"{where}/actions must be float (T, action_dim), got {actions.dtype} {actions.shape}"
        )
    steps = actions.shape[0]
    if steps == 0:
        raise ValueError(f"{where} is empty (0 steps)")
    for name in ("rewards", "dones"):
        if name in group and group[name].shape[:1] != (steps,):
            raise ValueError(f"{where}/{name} has {group[name].shape[0]} steps, actions {steps}")
    shapes, dtypes = {}, {}
    for part in ("obs", "next_obs"):
        if part not in group:
            if part == "obs":
                raise ValueError(f"{where} has no obs group")
            continue
        for key in group[part]:
            data = group[part][key]
            if data.shape[0] != steps:
                raise ValueError(f"{where}/{part}/{key} has {data.shape[0]} steps, actions {steps}")
            if part == "obs":
                shapes[key], dtypes[key] = tuple(data.shape[1:]), data.dtype.str
    if "pixels" in shapes and dtypes["pixels"] != np.dtype(np.uint8).str:
        raise ValueError(
            f"{where}/obs/pixels must be uint8 images, got {np.dtype(dtypes['pixels'])}"
        )
    if not np.isfinite(actions[:]).all():
        raise ValueError(f"{where}/actions holds non-finite values")
    if "proprio" in group["obs"] and not np.isfinite(group["obs"]["proprio"][:]).all():
        raise ValueError(f"{where}/obs/proprio holds non-finite values")
    layout = {"action_dim": int(actions.shape[1]), "shapes": shapes, "dtypes": dtypes}
    if reference is not None:
        if layout["action_dim"] != reference["action_dim"]:
            raise ValueError(
                f"{where}/actions has dimension {layout['action_dim']}, the first demo {reference['action_dim']}"
            )
        for key in sorted(set(reference["shapes"]) | set(shapes)):
            if key not in shapes or key not in reference["shapes"]:
                raise ValueError(
                    f"{where}/obs has keys {sorted(shapes)}, the first demo {sorted(reference['shapes'])}"
                )
            if (shapes[key], dtypes[key]) != (reference["shapes"][key], reference["dtypes"][key]):
                raise ValueError(
                    f"{where}/obs/{key} is {np.dtype(dtypes[key])} {shapes[key]}, the first demo's "
                    f"{np.dtype(reference['dtypes'][key])} {reference['shapes'][key]}"
                )
    return layout
