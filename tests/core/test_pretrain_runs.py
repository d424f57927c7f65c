"""pixio-pretrain end to end: exact resume after kill -9, and 2-process DDP (gloo) == 1 process."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from pixio_core.checkpoint import load_checkpoint, write_last_pointer
from pixio_core.runlog import read_log

COMMON = [
    "model.image_size=64",
    "train.global_batch_size=4",
    "optim.warmup_steps=2",
    "train.recon_every=1000",
    "data.images_per_class=2",
    "data.num_workers=0",
]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _pretrain(out, data, *extra, launcher=(sys.executable, "-m")):
    return [
        *launcher,
        "pixio_core.cli.pretrain",
        f"output_dir={out}",
        f"data.root={data}",
        *COMMON,
        *extra,
    ]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from pixio_core.data import make_shapes_dataset

    return make_shapes_dataset(
        tmp_path_factory.mktemp("shapes"), images_per_class=2, image_size=64, progress=False
    )


STEPS = ["train.total_steps=30", "train.checkpoint_every=3", "train.keep_last=2"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data_root):
    """The uninterrupted run every killed one is compared with, and its wall time."""
    out = tmp_path_factory.mktemp("full")
    started = time.perf_counter()
    subprocess.run(_pretrain(out, data_root, *STEPS), check=True, env=_env(), capture_output=True)
    return out, time.perf_counter() - started


def _kill_when(out, data_root, ready) -> None:
    process = subprocess.Popen(
        _pretrain(out, data_root, *STEPS),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not ready() and process.poll() is None:
        assert time.time() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _resume_and_compare(full, interrupted, data_root) -> None:
    resumed = subprocess.run(
        _pretrain(interrupted, data_root, *STEPS),
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    full_log, resumed_log = read_log(full / "log.jsonl"), read_log(interrupted / "log.jsonl")
    assert [e["step"] for e in resumed_log] == list(range(30)), resumed.stdout
    assert [e["loss"] for e in resumed_log] == [e["loss"] for e in full_log]
    full_state, _, _ = load_checkpoint(full / "checkpoints")
    resumed_state, _, _ = load_checkpoint(interrupted / "checkpoints")
    for key, value in full_state.items():
        assert torch.equal(value, resumed_state[key]), key
    # keep_last=2: only the two newest checkpoints remain, and no temp folder of a killed write
    assert sorted(p.name for p in (interrupted / "checkpoints").iterdir()) == [
        "last",
        "step_00000027",
        "step_00000030",
    ]


def test_killed_run_resumes_exactly(tmp_path, data_root, full_run):
    full, _ = full_run
    interrupted = tmp_path / "interrupted"
    _kill_when(
        interrupted, data_root, lambda: (interrupted / "checkpoints" / "step_00000006").exists()
    )
    assert not (interrupted / "summary.json").exists(), "killed too late: the run had finished"
    assert len(read_log(interrupted / "log.jsonl")) < 30
    _resume_and_compare(full, interrupted, data_root)


def _kill_at_random_moments(tmp_path, data_root, full_run, points: int, seed: int) -> list[int]:
    """Kill -9 at ``points`` moments drawn over the run's duration (start-up, mid-step,
    mid-checkpoint write, after the end: wherever they fall); every resumed run must equal the
    uninterrupted one bit for bit. Returns the step each run was killed at."""
    full, seconds = full_run
    rng = random.Random(seed)
    killed_at = []
    for point in range(points):
        interrupted = tmp_path / f"killed_{point}"
        moment = time.perf_counter() + rng.uniform(0.3, 1.1) * seconds
        _kill_when(interrupted, data_root, lambda moment=moment: time.perf_counter() > moment)
        log = interrupted / "log.jsonl"
        killed_at.append(len(read_log(log)) if log.exists() else 0)
        _resume_and_compare(full, interrupted, data_root)
    return killed_at


def test_kill_at_a_random_moment_resumes_exactly(tmp_path, data_root, full_run):
    # one moment here (test_killed_run_resumes_exactly kills mid-run too); 12 under -m slow
    _kill_at_random_moments(tmp_path, data_root, full_run, points=1, seed=0)


@pytest.mark.slow
def test_kill_at_many_random_moments_resumes_exactly(tmp_path, data_root, full_run):
    killed_at = _kill_at_random_moments(tmp_path, data_root, full_run, points=12, seed=1)
    assert len(set(killed_at)) > 3, killed_at  # the moments spread over the run


# Equality across process counts is an fp32 property: on a CPU with AMX, precision=auto picks
# bf16, whose rounding follows the reduction order and moved near-zero biases by ~1e-3 here.
FP32 = "precision=fp32"


def test_two_process_ddp_matches_one_process(tmp_path, data_root):
    steps = ["train.total_steps=4", "train.checkpoint_every=4", FP32]
    subprocess.run(
        _pretrain(tmp_path / "one", data_root, *steps), check=True, env=_env(), capture_output=True
    )
    torchrun = (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
    )
    result = subprocess.run(
        _pretrain(tmp_path / "two", data_root, *steps, launcher=torchrun),
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one = [e["loss"] for e in read_log(tmp_path / "one" / "log.jsonl")]
    two = [e["loss"] for e in read_log(tmp_path / "two" / "log.jsonl")]
    assert len(one) == len(two) == 4
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-4, atol=1e-5)
    one_state, _, _ = load_checkpoint(tmp_path / "one" / "checkpoints")
    two_state, _, _ = load_checkpoint(tmp_path / "two" / "checkpoints")
    for key, value in one_state.items():
        torch.testing.assert_close(two_state[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_fsdp_matches_one_process_and_resumes_on_another_process_count(tmp_path, data_root):
    steps = ["train.total_steps=6", "train.checkpoint_every=2", "train.keep_last=5", FP32]
    subprocess.run(
        _pretrain(tmp_path / "one", data_root, *steps), check=True, env=_env(), capture_output=True
    )
    torchrun = (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
    )
    sharded = tmp_path / "fsdp"
    result = subprocess.run(
        _pretrain(sharded, data_root, "train.strategy=fsdp", *steps, launcher=torchrun),
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = sharded / "checkpoints" / "step_00000004"
    assert (checkpoint / "dcp" / ".metadata").is_file() and (
        checkpoint / "model.safetensors"
    ).is_file()
    # the consolidated weights load like any checkpoint and equal the 1-process run's
    one_state, _, _ = load_checkpoint(tmp_path / "one" / "checkpoints" / "step_00000004")
    fsdp_state, _, _ = load_checkpoint(checkpoint)
    for key, value in one_state.items():
        # atol: a tenth of one Adam step at lr 1e-3. Summation order differs between 1 and 2
        # processes, and Adam turns a near-zero gradient's rounding into up to ~1e-5 here (AMD
        # EPYC); a wrong gradient average would be off by whole steps (~1e-3).
        torch.testing.assert_close(fsdp_state[key], value, rtol=1e-4, atol=1e-4, msg=key)
    # as if the 2-process run had died after step 4: resume it in 1 process (resharded by DCP)
    shutil.rmtree(sharded / "checkpoints" / "step_00000006")
    write_last_pointer(sharded / "checkpoints", checkpoint)
    resumed = subprocess.run(
        _pretrain(sharded, data_root, *steps), env=_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "at step 4" in resumed.stdout
    one = [e["loss"] for e in read_log(tmp_path / "one" / "log.jsonl")]
    two = [e["loss"] for e in read_log(sharded / "log.jsonl")]
    assert len(two) == 6
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-4, atol=1e-5)
    final_one, _, _ = load_checkpoint(tmp_path / "one" / "checkpoints")
    final_two, _, _ = load_checkpoint(sharded / "checkpoints")
    for key, value in final_one.items():
        torch.testing.assert_close(final_two[key], value, rtol=1e-4, atol=1e-4, msg=key)


def test_rerun_recording_holds_the_whole_resumed_run(tmp_path, data_root):
    from pixio_core.recording import recording_rows

    out = tmp_path / "run"
    for steps in (4, 6):  # the second call resumes at step 4 and rewrites the recording
        done = subprocess.run(
            _pretrain(out, data_root, f"train.total_steps={steps}", "train.checkpoint_every=2",
                      "train.recon_every=2", "rerun=true"),
            env=_env(), capture_output=True, text=True, check=True,
        )  # fmt: skip
    assert f"pixio-view {out}" in done.stdout
    rows = recording_rows(out / "recording.rrd")
    assert rows["/train/loss"] == 6 and rows["/train/lr"] == 6, rows
    assert rows["/reconstruction"] == 3, rows  # steps 2 and 4 from the first part, 6 from this
    viewed = subprocess.run(
        [sys.executable, "-m", "pixio_3d.cli.view", str(out), "--no-open"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(out / "recording.rrd") in viewed.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "pixio_3d.cli.view", str(tmp_path / "none.rrd")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode != 0 and "none.rrd does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
