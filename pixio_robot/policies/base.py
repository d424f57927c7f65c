"""What every policy shares: dataset normalization, the frame history and the action chunks.

A policy (:class:`Policy`) sees, at control time, the features of the newest frame of a batch
of environments. :class:`FrameHistory` stacks the last ``frame_history`` of them (the first frame
repeated at the start of an episode, as the training samples do); :class:`ActionChunks` turns
predicted chunks of actions into one action per step, either by executing ``n_action_steps`` of
each chunk before predicting again, or by ACT's temporal ensembling (a chunk predicted every
step, all chunks' predictions for the current step averaged with weights ``exp(-m * i)``, ``i =
0`` the oldest). A subclass says how a chunk is predicted (:meth:`Policy.predict_chunk`) and how
it is trained (``forward(batch) -> (loss, info)``).
"""

from __future__ import annotations

from collections import deque

import torch
from torch import nn

from pixio_robot.policies.normalization import Normalization

__all__ = ["ActionChunks", "FrameHistory", "Policy"]


class FrameHistory:
    """The last ``length`` frame features of a batch of environments."""

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"frame history length must be >= 1, got {length}")
        self.length = length
        self._frames: deque[torch.Tensor] = deque(maxlen=length)

    def push(self, features: torch.Tensor) -> torch.Tensor:
        """Add the newest ``features (B, ...)``; returns the history ``(B, length, ...)``, oldest
        first. The first frame of an episode fills the whole history."""
        if not self._frames:
            for _ in range(self.length - 1):
                self._frames.append(features)
        self._frames.append(features)
        return torch.stack(list(self._frames), dim=1)

    def clear(self) -> None:
        self._frames.clear()


class ActionChunks:
    """One action per step from predicted chunks ``(B, chunk_size, action_dim)``.

    Without ``temporal_ensemble_coeff``: the first ``n_action_steps`` actions of a chunk are
    queued and executed before the next prediction. With it (ACT's ``m``): a chunk is predicted
    every step and the current action averages every chunk's prediction for it.
    """

    def __init__(
        self,
        chunk_size: int = 1,
        n_action_steps: int = 1,
        temporal_ensemble_coeff: float | None = None,
    ) -> None:
        if not 1 <= n_action_steps <= chunk_size:
            raise ValueError(
                f"need 1 <= n_action_steps ({n_action_steps}) <= chunk_size ({chunk_size})"
            )
        if temporal_ensemble_coeff is not None and n_action_steps != 1:
            raise ValueError("temporal ensembling predicts a chunk at every step: n_action_steps=1")
        self.chunk_size = chunk_size
        self.n_action_steps = n_action_steps
        self.temporal_ensemble_coeff = temporal_ensemble_coeff
        self._queue: deque[torch.Tensor] = deque()
        self._chunks: list[torch.Tensor] = []  # temporal ensembling: newest last

    def ready(self) -> bool:
        """An action is queued: no prediction is needed this step."""
        return self.temporal_ensemble_coeff is None and bool(self._queue)

    def pop(self) -> torch.Tensor:
        """The next queued action ``(B, action_dim)``."""
        return self._queue.popleft()

    def add(self, chunk: torch.Tensor) -> torch.Tensor:
        """Take a new chunk ``(B, chunk_size, action_dim)``; returns this step's action."""
        m = self.temporal_ensemble_coeff
        if m is None:
            self._queue.extend(chunk[:, : self.n_action_steps].unbind(1))
            return self._queue.popleft()
        # chunk k (k steps old) predicts the current step at index k
        self._chunks = (self._chunks + [chunk])[-self.chunk_size :]
        ages = range(len(self._chunks) - 1, -1, -1)  # oldest first
        predictions = torch.stack([c[:, age] for c, age in zip(self._chunks, ages, strict=True)])
        weights = torch.exp(-m * torch.arange(len(self._chunks), dtype=predictions.dtype))
        return (predictions * (weights / weights.sum()).view(-1, 1, 1)).sum(0)

    def clear(self) -> None:
        self._queue.clear()
        self._chunks.clear()


class Policy(nn.Module):
    """Base of the policies: ``forward(batch) -> (loss, info)`` (the subclass's),
    batched ``select_action(obs)`` and ``reset()``.

    ``config`` must have ``feature_dim``, ``proprio_dim``, ``action_dim`` and ``frame_history``;
    normalization statistics are buffers (``normalization.*``), saved with the weights.
    """

    def __init__(
        self,
        config,
        chunk_size: int = 1,
        n_action_steps: int = 1,
        temporal_ensemble_coeff: float | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.normalization = Normalization(
            config.feature_dim, config.proprio_dim, config.action_dim
        )
        self.history = FrameHistory(config.frame_history)
        self.action_chunks = ActionChunks(chunk_size, n_action_steps, temporal_ensemble_coeff)

    def set_normalization(self, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """``{"feature" | "proprio" | "action": (mean, std)}`` from the training set."""
        self.normalization.set(stats)

    def reset(self) -> None:
        """Forget the frame history and queued actions (call at the start of every episode)."""
        self.history.clear()
        self.action_chunks.clear()

    def check_frame(self, features: torch.Tensor) -> torch.Tensor:
        """Validate the newest frame's features at control time (a ``ValueError`` if wrong)."""
        return features

    def predict_chunk(self, frames: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Normalized actions ``(B, chunk_size, action_dim)`` from the frame history
        ``(B, frame_history, ...)`` and ``proprio (B, proprio_dim)`` (both raw)."""
        raise NotImplementedError

    @torch.no_grad()
    def select_action(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One control step for a batch of environments -> actions ``(B, action_dim)``.

        ``obs``: ``features`` of the newest frame (``(B, feature_dim)``, or ``(B, tokens,
        feature_dim)`` for patch tokens) and ``proprio (B, proprio_dim)``.
        """
        features = self.check_frame(obs["features"].float())
        frames = self.history.push(features)
        if self.action_chunks.ready():
            return self.action_chunks.pop()
        proprio = obs["proprio"].float().reshape(len(features), -1)
        chunk = self.normalization.unnormalize("action", self.predict_chunk(frames, proprio))
        return self.action_chunks.add(chunk)
