"""Rerun recordings of robot episodes and Rerun's web viewer (served on localhost) in
headless Chromium."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixio_core.network import free_port
from pixio_core.recording import recording_rows, serve_web_viewer, stop_web_viewer
from pixio_robot.cli import main
from pixio_robot.recording import as_recording

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser import cdp_screenshot  # noqa: E402

ENV = "pixio_envs/PushBlock-v1"


def test_collect_writes_a_recording_and_the_web_viewer_draws_it(tmp_path, capsys):
    demos = tmp_path / "push.hdf5"
    main(
        ["collect", "num_demos=2", "env.kwargs.image_size=32", "recording=true", f"output={demos}"]
    )
    assert "pixio-robot view" in capsys.readouterr().out
    rows = recording_rows(tmp_path / "push.rrd")
    import h5py

    with h5py.File(demos, "r") as handle:
        for i in range(2):
            steps = handle[f"data/demo_{i}/actions"].shape[0]
            assert rows[f"/episode_{i}/camera"] == steps and rows[f"/episode_{i}/action"] == steps
    # HDF5 -> a temporary recording with the same content; a bad path is one clear line
    assert recording_rows(as_recording(demos, tmp_path / "work")) == rows
    with pytest.raises(SystemExit, match="does not exist"):
        main(["view", str(tmp_path / "nope.hdf5"), "--no-serve"])
    with pytest.raises(SystemExit, match="not a LeRobot dataset"):
        main(["view", str(tmp_path / "work"), "--no-serve"])

    port = free_port()
    process, url = serve_web_viewer(tmp_path / "push.rrd", web_port=port)
    try:
        time.sleep(2)
        assert process.poll() is None, process.stderr.read()
        shot = cdp_screenshot(url, tmp_path / "rerun.png", tmp_path, settle=45)
    finally:
        stop_web_viewer(process)
    assert subprocess.run(["pgrep", "-f", f"web-viewer-port {port}"], check=False).returncode == 1
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    # the loaded viewer (panels, plots, the camera images) rather than its loading screen
    assert pixels.std() > 20 and (pixels > 150).mean() > 0.02, "the web viewer drew nothing"
