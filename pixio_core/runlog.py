"""Run logging: one JSON line per step plus TensorBoard scalars and images, and optionally a
Rerun recording (main process only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pixio_core.io import atomic_write_text


class RunLogger:
    """Appends ``{"step": s, ...}`` lines to ``run_dir/log.jsonl`` and mirrors them to TensorBoard.

    ``start_step`` > 0 (a resumed run) first drops log lines of steps >= ``start_step`` (they
    belong to work that the resumed run redoes), so the log reads like one uninterrupted run.
    ``rerun=True`` also writes ``run_dir/recording.rrd``
    (:class:`pixio_core.recording.TrainingRecording`): the kept lines and the pictures of
    ``pictures`` (``{tag: folder of step_<N>.png}``) from before ``start_step`` first.
    """

    def __init__(
        self,
        run_dir: str | Path,
        start_step: int = 0,
        enabled: bool = True,
        tensorboard: bool = True,
        rerun: bool = False,
        pictures: dict[str, Path] | None = None,
        application_id: str = "pixio_pretrain",
    ) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "log.jsonl"
        self._writer = None
        self.recording = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", -1) < start_step
            ]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self._file = self.path.open("a")
        if rerun:
            from pixio_core.recording import TrainingRecording

            earlier = [
                (tag, int(png.stem.split("_")[-1]), png)
                for tag, folder in (pictures or {}).items()
                for png in sorted(Path(folder).glob("step_*.png"))
                if png.stem.split("_")[-1].isdigit() and int(png.stem.split("_")[-1]) <= start_step
            ]
            history = [json.loads(line) for line in kept]
            self.recording = TrainingRecording(run_dir, application_id, history, earlier)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(
                str(Path(run_dir) / "tensorboard"), purge_step=start_step or None
            )

    def log(self, step: int, scalars: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps({"step": step, **scalars}) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in scalars.items():
                if isinstance(value, int | float):
                    self._writer.add_scalar(key, value, step)
        if self.recording is not None:
            self.recording.log(step, scalars)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image``: HxWx3 uint8 or float in [0, 1]."""
        if self.enabled and self._writer is not None:
            self._writer.add_image(tag, image, step, dataformats="HWC")
        if self.enabled and self.recording is not None:
            self.recording.image(tag, image, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._writer is not None:
            self._writer.close()
        if self.recording is not None:
            self.recording.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
