"""Rerun recordings (``.rrd``) and Rerun's web viewer, shared by pre-training and robotics.

The ``rerun`` binary ships in the ``rerun-sdk`` wheel together with the viewer's WebAssembly
build, so :func:`serve_web_viewer` works offline. Pre-training logs its loss curve and
reconstruction pictures with :class:`TrainingRecording` (``pixio-pretrain rerun=true``); robot
episodes are logged by :mod:`pixio_robot.recording`. ``pixio-view FILE.rrd`` (or a run folder
holding ``recording.rrd``) and ``pixio-robot view`` open them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pixio_core.network import free_port

RECORDING_NAME = "recording.rrd"  # of a run folder


def new_recording(path: str | os.PathLike, application_id: str, name: str):
    """A Rerun recording stream that writes to ``path`` (``.rrd``)."""
    import rerun as rr

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recording = rr.RecordingStream(application_id, recording_id=name)
    recording.save(str(path))
    return recording


class TrainingRecording:
    """A training run as ``run_dir/recording.rrd`` on the ``step`` timeline: every numeric log
    value as ``train/<key>`` (``rr.Scalars``) and each picture under its tag (``rr.Image``).

    The file is rewritten when a run starts; a resumed run first logs again what its earlier
    part left (``history``: the kept log lines, and ``(tag, step, path)`` of the pictures
    on disk), so one file always holds the whole run.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        application_id: str,
        history: list[dict[str, Any]] = (),
        pictures: list[tuple[str, int, Path]] = (),
    ) -> None:
        self.path = Path(run_dir) / RECORDING_NAME
        self._stream = new_recording(self.path, application_id, Path(run_dir).resolve().name)
        for line in history:
            self.log(line["step"], line)
        for tag, step, picture in pictures:
            from PIL import Image

            self.image(tag, np.asarray(Image.open(picture).convert("RGB")), step)

    def log(self, step: int, scalars: dict[str, Any]) -> None:
        import rerun as rr

        self._stream.set_time("step", sequence=step)
        for key, value in scalars.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                self._stream.log(f"train/{key}", rr.Scalars(float(value)))

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image``: HxWx3 uint8 or float in [0, 1]."""
        import rerun as rr

        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        self._stream.set_time("step", sequence=step)
        self._stream.log(tag, rr.Image(np.ascontiguousarray(image)))

    def close(self) -> None:
        self._stream.flush()
        self._stream.disconnect()


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
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def serve_until_stopped(recording: str | os.PathLike, web_port: int) -> None:
    """Serve ``recording`` (see :func:`serve_web_viewer`) until Ctrl-C; print its address."""
    process, url = serve_web_viewer(recording, web_port=web_port)
    print(f"Rerun web viewer: {url}  (Ctrl-C stops it)", flush=True)
    try:
        process.wait()
    finally:
        stop_web_viewer(process)
    if process.returncode:
        raise RuntimeError(
            f"rerun stopped with status {process.returncode}: {process.stderr.read()[-500:]}"
        )


def recording_rows(path: str | os.PathLike) -> dict[str, int]:
    """``{entity path: rows}`` of an ``.rrd`` file, from ``rerun rrd print`` (what a viewer will
    show: one row per logged step)."""
    done = subprocess.run(
        [rerun_binary(), "rrd", "print", str(path)], capture_output=True, text=True, check=True
    )
    rows: dict[str, int] = {}
    for count, entity in re.findall(r"with (\d+) rows .*? - (/\S+) - data", done.stdout):
        if not entity.startswith("/__"):
            rows[entity] = rows.get(entity, 0) + int(count)
    return rows
