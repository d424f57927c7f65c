"""Behavior cloning on frozen encoder features: dataset, training and success-rate evaluation.

A plain function, :func:`train_bc`, fits a policy on cached features of the demo frames;
:mod:`pixio_robot.evaluation` rolls it out in MuJoCo.
"""

from __future__ import annotations

from collections.abc import Callable

import h5py
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


class DemoFeatureDataset(Dataset):
    """One sample per demo step: the last ``frame_history`` frame features (the first frame
    repeated at the start of a demo), the proprioception and the action.

    With ``action_horizon > 1`` a sample also holds ``action_chunk (action_horizon, action_dim)``,
    the actions from this step on, and ``action_is_pad`` marking the steps past the demo's end
    (filled with the last action).
    """

    def __init__(
        self,
        demo_path: str,
        features: dict[str, torch.Tensor],
        frame_history: int = 3,
        split: str | None = "train",
        proprio_key: str = "proprio",
        action_horizon: int = 1,
    ) -> None:
        if frame_history < 1 or action_horizon < 1:
            raise ValueError(
                f"frame_history and action_horizon must be >= 1, got {frame_history}, {action_horizon}"
            )
        self.frame_history = frame_history
        self.action_horizon = action_horizon
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
        sample = {
            "features": self.features[demo][steps],
            "proprio": self.proprio[demo][t],
            "action": self.actions[demo][t],
        }
        if self.action_horizon > 1:
            actions = self.actions[demo]
            future = torch.arange(t, t + self.action_horizon)
            sample["action_is_pad"] = future >= len(actions)
            sample["action_chunk"] = actions[future.clamp_max(len(actions) - 1)]
        return sample

    def statistics(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Mean and std (per channel) of features, proprio and actions over the whole split."""
        stats = {}
        for key, parts in (
            ("feature", self.features),
            ("proprio", self.proprio),
            ("action", self.actions),
        ):
            values = torch.cat(parts)
            values = values.reshape(-1, values.shape[-1])  # patch tokens: per channel
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
    log: Callable[[int, dict[str, float]], None] | None = None,
    log_every: int = 50,
) -> list[float]:
    """Fit ``policy`` (its normalization set from ``dataset``) for ``steps`` AdamW steps.

    Returns the loss of every step; ``log(step, scalars)`` is called every ``log_every`` steps.
    """
    if len(dataset) == 0:
        raise ValueError("the demo dataset is empty: nothing to train on")
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
            loss, info = policy(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if log is not None and (len(losses) % log_every == 0 or len(losses) == steps):
                log(len(losses), {"loss": losses[-1], **info})
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if len(losses) == steps:
                break
    bar.close()
    policy.eval()
    return losses
