"""Step-indexed, resumable, rank-aware batch sampling.

Everything random is a pure function of ``(seed, epoch)`` or ``(seed, step)``: the data order of
an epoch, the curation draws of an epoch, and (in the dataset) each sample's augmentation. A run
that resumes at step ``k`` therefore sees exactly the batches the uninterrupted run saw, and the
``world_size`` ranks together see exactly the global batch a single process would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def mix_seed(*values: int) -> int:
    """A 63-bit seed from several ints (splitmix64 over the sequence)."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 31
    return state & 0x7FFFFFFFFFFFFFFF


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for steps ``start_step .. total_steps - 1``, this rank's part of the global batch.

    Each element is ``(sample_index, epoch)`` so that the dataset can seed the augmentation of that
    sample in that epoch. ``keep_probability`` (optional, one value per sample) applies the
    paper's soft curation: each epoch keeps sample ``i`` with that probability, re-drawn per epoch.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch_size: int,
        total_steps: int,
        seed: int = 0,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
        keep_probability: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        if num_samples < 1:
            raise ValueError("the dataset is empty")
        if global_batch_size % world_size:
            raise ValueError(
                f"global batch {global_batch_size} is not divisible by {world_size} processes"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.num_samples = num_samples
        self.global_batch_size = global_batch_size
        self.total_steps = total_steps
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.keep_probability = (
            None
            if keep_probability is None
            else torch.as_tensor(keep_probability, dtype=torch.float64)
        )
        if self.keep_probability is not None and self.keep_probability.shape != (num_samples,):
            raise ValueError(
                f"keep_probability has shape {tuple(self.keep_probability.shape)}, expected ({num_samples},)"
            )
        self._epoch_cache: tuple[int, torch.Tensor] | None = None
        self._batches_per_epoch: list[int] = []

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The shuffled (and curated) sample indices of ``epoch``."""
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(self.num_samples, generator=generator)
        if self.keep_probability is not None:
            draws = torch.rand(self.num_samples, generator=generator, dtype=torch.float64)
            order = order[(draws < self.keep_probability)[order]]
            if len(order) < self.global_batch_size:
                raise ValueError(
                    f"curation kept {len(order)} of {self.num_samples} samples in epoch {epoch}, fewer than "
                    f"one global batch ({self.global_batch_size}); lower loss_scale or the batch size"
                )
        self._epoch_cache = (epoch, order)
        return order

    def batch_for_step(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(index, epoch)`` pairs for ``step`` (full batches only; the tail is dropped)."""
        epoch, remaining = 0, step
        while True:
            if epoch == len(self._batches_per_epoch):
                per_epoch = len(self.epoch_order(epoch)) // self.global_batch_size
                if per_epoch == 0:
                    raise ValueError(
                        f"{self.num_samples} samples make no full global batch of {self.global_batch_size}"
                    )
                self._batches_per_epoch.append(per_epoch)
            if remaining < self._batches_per_epoch[epoch]:
                break
            remaining -= self._batches_per_epoch[epoch]
            epoch += 1
        order = self.epoch_order(epoch)
        start = remaining * self.global_batch_size
        local = self.global_batch_size // self.world_size
        chunk = order[start + self.rank * local : start + (self.rank + 1) * local]
        return [(int(index), epoch) for index in chunk]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            yield self.batch_for_step(step)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)
