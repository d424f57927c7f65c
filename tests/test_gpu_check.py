"""benchmarks/gpu_check.sh: every section runs at a tiny size here (the CPU-safe parts) and the
JSON says what a GPU run would report."""

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_writes_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert report["smoke"] is True and report["cuda"] is False
    failed = {name: s.get("error") for name, s in sections.items() if s.get("error")}
    assert not failed, {name: sections[name].get("tail", "")[-1500:] for name in failed}
    variants = {row["variant"] for row in sections["pretrain_step"]["rows"]}
    assert variants == {"official MAE", "pixio"}
    assert all(row["images_per_s"] > 0 for row in sections["pretrain_step"]["rows"])
    forward = sections["encoder_forward"]["forward"]
    assert all(0 < row["fraction_of_matmul_peak"] for row in forward)
    for name in ("pretrain_run", "fsdp_one_process"):
        run = sections[name]
        assert run["checkpoint_written"] and run["resume_works"], run
        assert run["steps_after_resume"] == run["steps"] + 2
    loader = sections["data_loader"]
    assert loader["workers_needed"] >= 1 and min(loader["per_worker_images_per_s"].values()) > 0
    rows = sections["recon_inference"]["rows"]
    assert [row["views"] for row in rows] == [2] and rows[0]["seconds"] > 0
