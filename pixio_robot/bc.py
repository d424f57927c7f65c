"""Behavior cloning on frozen encoder features: dataset, training and success-rate evaluation.

Plain functions: :func:`train_bc` fits a policy on cached features of the demo frames;
:func:`evaluate` rolls the policy out in the environment, embedding each rendered frame with the
same frozen encoder and settings, and reports the success rate per seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from pixio_core.models.encoder import PixioEncoder
from pixio_robot.features import embed_frames


class DemoFeatureDataset(Dataset):
    """One sample per demo step: the last ``frame_history`` frame features (the first frame
    repeated at the start of a demo), the proprioception and the action."""

    def __init__(
        self,
        demo_path: str,
        features: dict[str, torch.Tensor],
        frame_history: int = 3,
        split: str | None = "train",
        proprio_key: str = "proprio",
    ) -> None:
        self.frame_history = frame_history
        self.features, self.proprio, self.actions, self.index = [], [], [], []
        with h5py.File(demo_path, "r") as handle:
            names = (
                [n.decode() for n in handle[f"mask/{split}"][:]]
                if split is not None
                else sorted(handle["data"])
            )
            for demo_id, name in enumerate(names):
                if name not in features:
                    raise KeyError(f"no cached features for {name} of {demo_path}")
                group = handle[f"data/{name}"]
                self.features.append(features[name].float())
                self.proprio.append(
                    torch.as_tensor(group[f"obs/{proprio_key}"][:], dtype=torch.float32)
                )
                self.actions.append(torch.as_tensor(group["actions"][:], dtype=torch.float32))
                self.index += [(demo_id, t) for t in range(len(self.actions[-1]))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        demo, t = self.index[item]
        steps = [max(0, t - k) for k in range(self.frame_history - 1, -1, -1)]
        return {
            "features": self.features[demo][steps],
            "proprio": self.proprio[demo][t],
            "action": self.actions[demo][t],
        }

    def statistics(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Mean and std of features, proprio and actions over the whole split."""
        stats = {}
        for key, parts in (
            ("feature", self.features),
            ("proprio", self.proprio),
            ("action", self.actions),
        ):
            values = torch.cat(parts)
            stats[key] = (values.mean(0), values.std(0))
        return stats


def train_bc(
    policy: torch.nn.Module,
    dataset: DemoFeatureDataset,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Fit ``policy`` (its normalization set from ``dataset``) for ``steps`` Adam steps; returns losses."""
    torch.manual_seed(seed)
    policy.set_normalization(dataset.statistics())
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(dataset) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    losses: list[float] = []
    bar = tqdm(total=steps, desc="behavior cloning", disable=not progress)
    while len(losses) < steps:
        for batch in loader:
            loss, _ = policy(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if len(losses) == steps:
                break
    bar.close()
    policy.eval()
    return losses


@dataclass(frozen=True)
class EvalResult:
    env_id: str
    success_per_seed: dict[int, float]
    episodes_per_seed: int
    mean_episode_steps: float

    @property
    def success_rate(self) -> float:
        return float(np.mean(list(self.success_per_seed.values())))

    @property
    def success_std(self) -> float:
        return float(np.std(list(self.success_per_seed.values())))


@torch.no_grad()
def evaluate(
    policy: torch.nn.Module,
    encoder: PixioEncoder,
    env_id: str,
    env_kwargs: dict,
    seeds: list[int],
    episodes_per_seed: int,
    image_size: int,
    feature: str = "pooled",
    progress: bool = True,
) -> EvalResult:
    """Roll out ``episodes_per_seed`` episodes for each seed; success = ``info["is_success"]``."""
    policy.eval()
    encoder.eval()
    env = gym.make(env_id, **env_kwargs)
    successes: dict[int, float] = {}
    lengths = []
    try:
        for seed in tqdm(seeds, desc=f"evaluate {env_id}", disable=not progress):
            wins = 0
            for episode in range(episodes_per_seed):
                obs, info = env.reset(seed=seed * 1000 + episode)
                policy.reset()
                done, steps = False, 0
                while not done:
                    frame_features = embed_frames(
                        encoder, obs["pixels"][None], image_size, feature
                    )[0]
                    action = policy.select_action(frame_features, torch.as_tensor(obs["proprio"]))
                    obs, _, terminated, truncated, info = env.step(
                        action.numpy().astype(np.float32)
                    )
                    done, steps = terminated or truncated, steps + 1
                wins += bool(info.get("is_success", False))
                lengths.append(steps)
            successes[seed] = wins / episodes_per_seed
    finally:
        env.close()
    return EvalResult(env_id, successes, episodes_per_seed, float(np.mean(lengths)))
