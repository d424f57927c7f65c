"""Every console script, run as a user runs it: ``--help``, an unknown option, a missing input.

``--help`` must exit 0 without importing torch or MuJoCo (checked with Python's own import
profiler, ``PYTHONPROFILEIMPORTTIME``); a user's mistake must exit non-zero with one line that
names the value, and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
BIN = Path(sys.executable).parent
HEAVY = ("torch", "mujoco", "open3d", "pycolmap", "cv2", "matplotlib")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    environment = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    environment.pop("PIXIO_TRACEBACK", None)
    started = time.perf_counter()
    result = subprocess.run(
        args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )
    return result, time.perf_counter() - started


def _run_many(commands: dict[str, tuple[list[str], Path]]) -> dict:
    """``_run`` of every ``name: (args, cwd)`` at once, a few at a time (each script spends
    seconds importing its stack, one core each): ``name: CompletedProcess``."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(_run, args, cwd) for name, (args, cwd) in commands.items()}
        return {name: future.result()[0] for name, future in futures.items()}


def _imported(stderr: str) -> set[str]:
    """Top-level modules named in a ``PYTHONPROFILEIMPORTTIME`` report."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_every_script_is_listed():
    assert len(SCRIPTS) == 13
    for name in SCRIPTS:
        assert (BIN / name).is_file(), f"{name} is not installed in {BIN}"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_is_fast_and_light(script, tmp_path):
    result, seconds = _run(
        [str(BIN / script), "--help"], tmp_path, {"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and "Traceback" not in result.stderr
    heavy = sorted(_imported(result.stderr) & set(HEAVY))
    assert not heavy, f"{script} --help imported {heavy} ({seconds:.2f} s)"


def test_robot_subcommand_help(tmp_path):
    result, _ = _run([str(BIN / "pixio-robot"), "train", "--help"], tmp_path)
    assert result.returncode == 0
    assert "policy:" in result.stdout and "encoder.source=" in result.stdout


def _one_clear_line(result, script: str, *needles: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    message = lines[-1]
    assert message.startswith(script.split()[0]), message
    for needle in needles:
        assert needle in message, message
    return message


HYDRA_SCRIPTS = {
    "pixio-demo",
    "pixio-pretrain",
    "pixio-probe",
    "pixio-distill",
    "pixio-curate",
    "pixio-recon-train",
    "pixio-recon-demo",
}


UNKNOWN_SETTING_SCRIPTS = sorted(HYDRA_SCRIPTS) + ["pixio-robot train", "pixio-robot eval"]
NEAR_MISSES = {  # pixio-pretrain: a near miss names the setting that was meant
    "near: train.total_step=3": ("train.total_step=3", ["did you mean train.total_steps"]),
    "near: model=pixio_vitq16": ("model=pixio_vitq16", ["pixio_vitq16", "pixio_vitt16"]),
    "near: data=folder": ("data=folder", ["data.root is required"]),
}


@pytest.fixture(scope="module")
def unknown_setting_results(tmp_path_factory):
    commands = {}
    for script in UNKNOWN_SETTING_SCRIPTS:
        args = [str(BIN / script.split()[0]), *script.split()[1:], "total_stepz=3"]
        commands[script] = (args, tmp_path_factory.mktemp("unknown"))
    for name, (setting, _) in NEAR_MISSES.items():
        commands[name] = ([str(BIN / "pixio-pretrain"), setting], tmp_path_factory.mktemp("near"))
    return _run_many(commands)


@pytest.mark.parametrize("script", UNKNOWN_SETTING_SCRIPTS)
def test_unknown_setting_is_one_clear_line(script, unknown_setting_results):
    message = _one_clear_line(unknown_setting_results[script], script, "total_stepz")
    assert "unknown setting" in message
    if script == "pixio-pretrain":
        for name, (_, needles) in NEAR_MISSES.items():
            _one_clear_line(unknown_setting_results[name], script, *needles)


@pytest.mark.parametrize(
    "script",
    ["pixio-recon", "pixio-depth", "pixio-recon-eval", "pixio-scenes", "pixio-robot", "pixio-view"],
)
def test_unknown_option_of_argparse_scripts(script, tmp_path):
    required = {
        "pixio-recon": ["photos", "--out", "recon"],
        "pixio-depth": ["photo.jpg"],
        "pixio-recon-eval": ["checkpoint", "--scenes", "scenes"],
        "pixio-scenes": ["scenes"],
        "pixio-robot": [],
        "pixio-view": ["recon"],
    }[script]
    result, _ = _run([str(BIN / script), *required, "--nonsense"], tmp_path)
    if script == "pixio-robot":
        _one_clear_line(result, script, "usage: pixio-robot", "'--nonsense'")
    else:
        _one_clear_line(result, script, "unrecognized arguments: --nonsense")
    assert not any(tmp_path.iterdir())  # nothing was written


def _missing_input(script: str, missing: Path, tmp_path: Path) -> list[str]:
    """A command line of ``script`` that names the path ``missing`` that does not exist."""
    return {
        "pixio-demo": ["data=folder", f"data.root={missing}"],
        "pixio-pretrain": ["data=folder", f"data.root={missing}"],
        "pixio-probe": [f"encoder={missing}"],
        "pixio-distill": [f"teacher={missing}"],
        "pixio-curate": [f"checkpoint={missing}", f"data.root={tmp_path}"],
        "pixio-robot": ["train", f"demos={missing}", f"output={tmp_path / 'policy'}"],
        "pixio-scenes": [str(missing / "inside_a_file"), "--num-scenes", "1"],
        "pixio-recon": [str(missing), "--out", str(tmp_path / "recon")],
        "pixio-depth": [str(missing)],
        "pixio-view": [str(missing), "--no-open"],
        "pixio-recon-train": [f"encoder.source={missing}", f"output_dir={tmp_path / 'run'}"],
        "pixio-recon-eval": [str(missing), "--scenes", str(tmp_path)],
        "pixio-recon-demo": [f"encoder.source={missing}"],
    }[script]


@pytest.fixture(scope="module")
def missing_input_results(tmp_path_factory):
    """``script: (result, the missing path)`` for every script, run at once."""
    commands, missing_paths = {}, {}
    for script in SCRIPTS:
        folder = tmp_path_factory.mktemp("missing")
        missing = missing_paths[script] = folder / "no_such_input"
        if script == "pixio-scenes":  # its input is the output folder: a path inside a file
            missing.write_text("a file, not a folder")
        commands[script] = ([str(BIN / script), *_missing_input(script, missing, folder)], folder)
    results = _run_many(commands)
    return {script: (results[script], missing_paths[script]) for script in SCRIPTS}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_missing_input_is_one_clear_line(script, missing_input_results):
    result, missing = missing_input_results[script]
    _one_clear_line(result, script, str(missing))


def test_a_non_editable_install_finds_its_configs(tmp_path):
    """Build the wheel from a copy of the tree, install it into a folder of its own and run the
    commands from there: the configs come with the package, not from the repository."""
    import shutil

    source = tmp_path / "source"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "outputs", "build", "*.egg-info", "__pycache__", ".*_cache", "tests"
    )
    shutil.copytree(ROOT, source, ignore=ignore)
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    result, _ = _run([*build, "-w", str(wheels), str(source)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = wheels.glob("pixio-*.whl")
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target"]
    result, _ = _run([*install, str(target), str(wheel)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    shutil.rmtree(source)  # nothing may come from the tree any more
    code = (
        "import pixio_core, pixio_configs, pixio_envs;"
        "from pixio_core.cli.console import CONFIG_DIR, compose_config;"
        "cfg = compose_config('recon_train', ['task=depth']);"
        "print(pixio_core.__file__, CONFIG_DIR, cfg.task, cfg.recon.name, sep='\\n')"
    )
    result, _ = _run([sys.executable, "-c", code], tmp_path, {"PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr[-3000:]
    module_file, config_dir, task, size = result.stdout.split()
    assert module_file.startswith(str(target)) and config_dir.startswith(str(target))
    assert (task, size) == ("depth", "mapanything_tiny")
    help_code = "from pixio_core.cli import pretrain_main; pretrain_main(['--help'])"
    result, _ = _run([sys.executable, "-c", help_code], tmp_path, {"PYTHONPATH": str(target)})
    assert result.returncode == 0 and "model:" in result.stdout, result.stderr[-2000:]
