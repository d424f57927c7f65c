"""Robot episodes as Rerun recordings (``.rrd``), and Rerun's web viewer to look at them.

One entity tree per episode, on the ``step`` timeline::

    episode_<i>/camera     rr.Image, the frame the policy saw (uint8 RGB)
    episode_<i>/proprio    rr.Scalars, one series per dimension
    episode_<i>/action     rr.Scalars
    episode_<i>/reward     rr.Scalars (when known)
    episode_<i>/outcome    rr.TextLog at the last step: success / failure (+ seed)

``pixio-robot eval recording=true`` and ``pixio-robot collect recording=true`` write one;
``pixio-robot view FILE`` opens a recording, an HDF5 demo file or a LeRobot dataset folder in
Rerun's web viewer, served on localhost (:mod:`pixio_core.recording`; no internet).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pixio_core import recording as core_recording

APPLICATION_ID = "pixio_robot"


def new_recording(path: str | os.PathLike, name: str = APPLICATION_ID):
    """A Rerun recording stream that writes to ``path`` (``.rrd``)."""
    return core_recording.new_recording(path, APPLICATION_ID, name)


def log_episode(
    recording,
    index: int,
    frames: np.ndarray | None,
    proprio: np.ndarray | None,
    actions: np.ndarray | None,
    rewards: np.ndarray | None = None,
    outcome: str | None = None,
) -> None:
    """Log one episode's arrays (``(T, ...)`` each, any of them ``None``) under ``episode_<i>/``."""
    import rerun as rr

    root = f"episode_{index}"
    steps = max(len(a) for a in (frames, proprio, actions, rewards) if a is not None)
    for t in range(steps):
        recording.set_time("step", sequence=t)
        if frames is not None and t < len(frames):
            recording.log(f"{root}/camera", rr.Image(np.ascontiguousarray(frames[t])))
        for name, values in (("proprio", proprio), ("action", actions), ("reward", rewards)):
            if values is not None and t < len(values):
                recording.log(f"{root}/{name}", rr.Scalars(np.atleast_1d(values[t]).astype(float)))
    if outcome is not None:
        recording.set_time("step", sequence=max(0, steps - 1))
        recording.log(f"{root}/outcome", rr.TextLog(outcome))


def demo_episodes(source: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The episodes of an HDF5 demo file or a LeRobot dataset folder: ``frames``, ``proprio``,
    ``actions``, ``rewards`` and ``outcome`` per episode."""
    from pixio_robot.lerobot import LeRobotReader, is_lerobot_dataset

    source = Path(source)
    if is_lerobot_dataset(source):
        reader = LeRobotReader(source)
        keys = {v: k for k, v in reader.hdf5_keys.items()}
        for index in range(len(reader)):
            arrays = reader.episode(index)
            yield {
                "frames": arrays.get(keys.get("obs/pixels", "")),
                "proprio": arrays.get(keys.get("obs/proprio", "")),
                "actions": arrays.get(keys.get("actions", "")),
                "rewards": arrays.get(keys.get("rewards", "")),
                "outcome": f"demo {index}: {reader.episodes[index]['tasks']}",
            }
        return
    import h5py

    from pixio_robot.demos import inspect_demos

    if source.is_dir():
        raise ValueError(
            f"{source} is a folder but not a LeRobot dataset (no meta/info.json); expected an "
            ".rrd recording, an HDF5 demo file or a LeRobot v3 folder"
        )

    inspect_demos(source)  # a clear error for anything that is not a demo file
    with h5py.File(source, "r") as handle:
        names = sorted(handle["data"], key=lambda name: int(name.split("_")[-1]))
        for name in names:
            group = handle["data"][name]
            obs = group["obs"]
            yield {
                "frames": obs["pixels"][:] if "pixels" in obs else None,
                "proprio": obs["proprio"][:] if "proprio" in obs else None,
                "actions": group["actions"][:],
                "rewards": group["rewards"][:] if "rewards" in group else None,
                "outcome": f"{name} (seed {group.attrs.get('seed', '?')}): success",
            }


def write_recording(episodes: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write episodes (dicts as :func:`demo_episodes` yields) to one ``.rrd`` file; the file
    appears complete or not at all."""
    from pixio_core.io import atomic_file

    path = Path(path)
    with atomic_file(path) as tmp:
        recording = new_recording(tmp, path.stem)
        for index, episode in enumerate(episodes):
            log_episode(
                recording,
                index,
                episode.get("frames"),
                episode.get("proprio"),
                episode.get("actions"),
                episode.get("rewards"),
                episode.get("outcome"),
            )
        recording.flush()
        recording.disconnect()
    return path


def as_recording(
    source: str | os.PathLike,
    work: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
) -> Path:
    """``source`` itself when it is an ``.rrd`` file, else its episodes written to ``output``,
    or to a recording under ``work`` (a temporary folder by default)."""
    source = Path(source)
    if source.suffix == ".rrd":
        if not source.is_file():
            raise FileNotFoundError(f"recording {source} does not exist")
        return source
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if output is None:
        work = Path(work or tempfile.mkdtemp(prefix="pixio_view_"))
        output = work / f"{source.stem or 'demos'}.rrd"
    return write_recording(demo_episodes(source), output)
