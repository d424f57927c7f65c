"""Behavior cloning on frozen encoder features: dataset, training and success-rate evaluation.

A plain function, :func:`train_bc`, fits a policy on cached features of the demo frames with
the shared training engine;
:mod:`pixio_robot.evaluation` rolls it out in MuJoCo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import h5py
import torch
from torch.utils.data import BatchSampler, Dataset, RandomSampler

from pixio_core.engine import train_steps


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
        self._flat: dict[str, torch.Tensor] | None = None  # batch()'s gather tables
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

    def batch(self, items: list[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """The samples ``items`` stacked, as a DataLoader would collate them, gathered in one
        indexing per key (the demos' arrays concatenated once, on first use; the per-demo
        lists then hold views of them, so nothing is stored twice)."""
        if self._flat is None:

            def starts(parts: list[torch.Tensor]) -> torch.Tensor:
                return torch.tensor([0] + [len(p) for p in parts[:-1]]).cumsum(0)[demo]

            demo = torch.tensor([d for d, _ in self.index], dtype=torch.long)
            step = torch.tensor([s for _, s in self.index], dtype=torch.long)
            history = torch.arange(self.frame_history - 1, -1, -1)
            frame0, proprio0, action0 = (
                starts(self.features),
                starts(self.proprio),
                starts(self.actions),
            )
            lengths = torch.tensor([len(a) for a in self.actions])[demo]
            future = step[:, None] + torch.arange(self.action_horizon)
            self._flat = {
                "features": torch.cat(self.features),
                "proprio": torch.cat(self.proprio),
                "actions": torch.cat(self.actions),
                "frames": frame0[:, None] + (step[:, None] - history).clamp_min(0),
                "proprio_now": proprio0 + step,
                "action_now": action0 + step,
                "future": action0[:, None] + torch.minimum(future, lengths[:, None] - 1),
                "pad": future >= lengths[:, None],
            }
            for name in ("features", "proprio", "actions"):
                sizes = [len(part) for part in getattr(self, name)]
                setattr(self, name, list(self._flat[name].split(sizes)))
        flat, items = self._flat, torch.as_tensor(items, dtype=torch.long)
        batch = {
            "features": flat["features"][flat["frames"][items]],
            "proprio": flat["proprio"][flat["proprio_now"][items]],
            "action": flat["actions"][flat["action_now"][items]],
        }
        if self.action_horizon > 1:
            batch["action_is_pad"] = flat["pad"][items]
            batch["action_chunk"] = flat["actions"][flat["future"][items]]
        return batch

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


def _epochs(
    dataset: DemoFeatureDataset, batch_size: int, drop_last: bool, generator: torch.Generator
) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled batches, epoch after epoch: the batches of ``DataLoader(dataset, batch_size,
    shuffle=True, drop_last=drop_last, generator=generator)``, each gathered in one indexing
    instead of item by item and collated."""
    sampler = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last)
    while True:
        # a DataLoader draws its workers' base seed from the generator at each epoch's start
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        for items in sampler:
            yield dataset.batch(items)


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
    """Fit ``policy`` (its normalization set from ``dataset``) for ``steps`` AdamW steps on the
    shared engine (:func:`pixio_core.engine.train_steps`; constant lr, shuffled batches that
    are a pure function of ``seed``).

    Returns the loss of every step; ``log(step, scalars)`` is called every ``log_every`` steps
    (``step`` counts from 1) with the loss, the policy's own terms and the engine's rates.
    """
    if len(dataset) == 0:
        raise ValueError("the demo dataset is empty: nothing to train on")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    torch.manual_seed(seed)
    policy.set_normalization(dataset.statistics())
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay)

    def every(step: int, scalars: dict[str, float]) -> None:
        done = step + 1
        if log is not None and (done % log_every == 0 or done == steps):
            log(done, scalars)

    losses = train_steps(
        policy,
        loss_fn=lambda batch, step, micro: policy(batch),
        batches=_epochs(
            dataset, batch_size, len(dataset) > batch_size, torch.Generator().manual_seed(seed)
        ),
        optimizer=optimizer,
        lr_schedule=[lr] * steps,
        start_step=0,
        end_step=steps,
        device=next(policy.parameters()).device,
        log_fn=every,
        progress=progress,
        desc="behavior cloning",
    )
    policy.eval()
    return losses
