"""benchmarks/control_loop.py times the real loop (env.step, encoder, policy) in both precisions."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_control_loop_benchmark_times_each_part_in_both_precisions(tmp_path):
    out = tmp_path / "loop.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "control_loop.py"),
               "--envs", "push_block,metaworld:drawer-open-v3", "--encoder",
               "random:pixio_vitt16", "--image-size", "32", "--steps", "4", "--rounds", "2",
               "--out", str(out)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL="egl")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["environment"]["torch_threads"] == 1
    assert report["environment"]["llvmpipe_threads"] == "1"
    rows = report["rows"]
    assert [(r["env"], r["encoder_precision"]) for r in rows] == [
        (env, precision)
        for env in ("push_block", "metaworld:drawer-open-v3")
        for precision in ("fp32", "int8")
    ]
    for row in rows:
        ms = row["ms_per_step"]
        assert min(ms.values()) > 0 and len(row["hz_per_round"]) == 2
        # the parts are timed inside the loop: together at most the whole step
        assert ms["env_step"] + ms["encoder"] + ms["policy"] <= ms["loop"] * 1.001
        assert row["hz"] == pytest.approx(1000 / ms["loop"])
    assert "| push_block | random:pixio_vitt16 int8 |" in done.stdout
    bad = subprocess.run([*command[:2], "--steps", "0"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "must be >= 1" in bad.stderr
    assert "Traceback" not in bad.stderr
