"""Robot episodes as Rerun recordings (``.rrd``), and Rerun's web viewer to look at them.

One entity tree per episode, on the ``step`` timeline::

    episode_<i>/camera     rr.Image, the frame the policy saw (uint8 RGB)
    episode_<i>/proprio    rr.Scalars, one series per dimension
    episode_<i>/action     rr.Scalars
    episode_<i>/reward     rr.Scalars (when known)
    episode_<i>/outcome    rr.TextLog at the last step: success / failure (+ seed)

``pixio-robot eval recording=true`` and ``pixio-robot collect recording=true`` write one;
``pixio-robot view FILE`` opens a recording, an HDF5 demo file or a LeRobot dataset folder in
Rerun's web viewer, served on localhost by the ``rerun`` binary that ships in the
``rerun-sdk`` wheel (the viewer's WebAssembly comes with it: no internet).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pixio_core.network import free_port

APPLICATION_ID = "pixio_robot"


def new_recording(path: str | os.PathLike, name: str = APPLICATION_ID):
    """A Rerun recording stream that writes to ``path`` (``.rrd``)."""
    import rerun as rr

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recording = rr.RecordingStream(APPLICATION_ID, recording_id=name)
    recording.save(str(path))
    return recording


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


def rerun_binary() -> str:
    """The ``rerun`` executable of the installed ``rerun-sdk`` (the viewer and its web build)."""
    beside = Path(sys.executable).parent / "rerun"
    found = str(beside) if beside.is_file() else shutil.which("rerun")
    if not found:
        raise FileNotFoundError("the rerun executable is missing: pip install rerun-sdk==0.41.0")
    return found


def serve_web_viewer(
    recording: str | os.PathLike, web_port: int = 0, grpc_port: int = 0
) -> tuple[subprocess.Popen, str]:
    """Start Rerun's web viewer for ``recording`` on localhost; ``(process, url)``."""
    web_port, grpc_port = web_port or free_port(), grpc_port or free_port()
    process = subprocess.Popen(
        [
            rerun_binary(), "--serve-web", "--web-viewer-port", str(web_port), "--port",
            str(grpc_port), str(recording),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the ``rerun`` launcher starts a child
    )  # fmt: skip
    proxy = f"rerun%2Bhttp%3A%2F%2Flocalhost%3A{grpc_port}%2Fproxy"
    return process, f"http://127.0.0.1:{web_port}/?url={proxy}"


def stop_web_viewer(process: subprocess.Popen) -> None:
    """Stop a viewer from :func:`serve_web_viewer` and everything it started."""
    import signal

    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


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


def recording_rows(path: str | os.PathLike) -> dict[str, int]:
    """``{entity path: rows}`` of an ``.rrd`` file, from ``rerun rrd print`` (what a viewer will
    show: one row per logged step)."""
    import re

    done = subprocess.run(
        [rerun_binary(), "rrd", "print", str(path)], capture_output=True, text=True, check=True
    )
    rows: dict[str, int] = {}
    for count, entity in re.findall(r"with (\d+) rows .*? - (/\S+) - data", done.stdout):
        if not entity.startswith("/__"):
            rows[entity] = rows.get(entity, 0) + int(count)
    return rows
