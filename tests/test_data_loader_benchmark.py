"""benchmarks/data_loader.py runs both loaders on the JPEGs it writes and its JSON adds up."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_data_loader_benchmark_reports_both_loaders_and_the_workers_needed(tmp_path):
    out = tmp_path / "loader.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "data_loader.py"),
               "--work", str(tmp_path / "work"), "--images", "40", "--workers", "0", "1",
               "--batches", "1", "--step-rates", "500", "--out", str(out)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert {(row["source"], row["workers"]) for row in rows} == {
        (source, workers) for source in ("image folder", "WebDataset shards") for workers in (0, 1)
    }
    assert all(row["images_per_s"] > 0 and row["decoder"] == "torchvision" for row in rows)
    slowest = min(row["images_per_s_per_worker"] for row in rows if row["workers"] > 0)
    assert report["workers_needed"]["500.0"] == math.ceil(500 / slowest)
    assert "| image folder |" in done.stdout
