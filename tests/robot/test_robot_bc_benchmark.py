"""benchmarks/robot_bc.py: resumed runs, training-seed rows and policy-config overrides."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("robot_bc", ROOT / "benchmarks" / "robot_bc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_previous_rows_and_experts_are_kept_only_for_the_same_settings(tmp_path, capsys):
    previous_run = load_benchmark().previous_run
    settings = {"demos": 25, "seeds": 3, "episodes_per_seed": 25, "encoder_precision": "fp32"}
    out = tmp_path / "rows.json"
    assert previous_run(out, settings) == ([], {})  # no file yet
    row = {"env": "metaworld:hammer-v3", "encoder": "pixio_sim_vitt16", "policy": "mlp"}
    expert = {"metaworld:hammer-v3": {"successes": 25, "attempts": 25}}
    out.write_text(json.dumps({**settings, "expert": expert, "rows": [row]}))
    # the expert statistics of envs this run does not repeat are kept with their rows
    assert previous_run(out, settings) == ([row], expert)
    # a file written before encoder_precision existed was an fp32 run
    older = {k: v for k, v in settings.items() if k != "encoder_precision"}
    out.write_text(json.dumps({**older, "rows": [row]}))
    assert previous_run(out, settings) == ([row], {})
    assert previous_run(out, {**settings, "encoder_precision": "int8"}) == ([], {})
    out.write_text(json.dumps({**settings, "episodes_per_seed": 10, "rows": [row]}))
    assert previous_run(out, settings) == ([], {})
    assert "holds a run of other settings" in capsys.readouterr().out
    out.write_text('{"rows": [')  # cut off: not JSON
    assert previous_run(out, settings) == ([], {})


def test_one_policy_per_seed_rows_merge_like_one_policy_on_all_seeds():
    from pixio_robot.evaluation import EvalResult

    merged_results = load_benchmark().merged_results
    one = EvalResult("env", {0: 0.2, 1: 0.4, 2: 0.9}, 25, mean_episode_steps=300.0)
    summary = {"final_loss": 0.01, "feature_images_per_s": 80.0}
    row = merged_results([one], [summary])
    assert (
        row["success_rate"] == one.success_rate and row["success_std_over_seeds"] == one.success_std
    )
    assert "final_bc_loss_per_seed" not in row
    # CortexBench: policy s trained with seed s, evaluated on seed s alone
    parts = [
        EvalResult("env", {s: rate}, 25, 100.0 * (s + 1)) for s, rate in enumerate((0.2, 0.4, 0.9))
    ]
    losses = [{"final_loss": loss, "feature_images_per_s": 0.0} for loss in (0.01, 0.02, 0.06)]
    row = merged_results(parts, losses)
    assert row["success_per_seed"] == {0: 0.2, 1: 0.4, 2: 0.9}
    assert abs(row["success_rate"] - 0.5) < 1e-12
    assert abs(row["success_std_over_seeds"] - one.success_std) < 1e-12
    assert row["mean_episode_steps"] == 200.0
    assert (
        row["final_bc_loss_per_seed"] == [0.01, 0.02, 0.06]
        and abs(row["final_bc_loss"] - 0.03) < 1e-12
    )


def test_train_seeds_needs_one_evaluation_seed_per_policy(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "robot_bc.py"), "--train-seeds", "3", "--seeds", "2",
         "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--train-seeds 3 needs --seeds 3" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_policy_config_overrides_parse_and_unknown_fields_are_named():
    from pixio_robot.policies import check_policy_config, make_policy, parse_policy_config

    values = parse_policy_config("chunk_size=4, n_action_steps=1,temporal_ensemble_coeff=0.01")
    assert values == {"chunk_size": 4, "n_action_steps": 1, "temporal_ensemble_coeff": 0.01}
    assert parse_policy_config("") == {} and parse_policy_config("x=null") == {"x": None}
    check_policy_config("act", values)
    policy = make_policy("act", feature_dim=8, proprio_dim=3, action_dim=2, **values)
    assert (policy.config.chunk_size, policy.config.n_action_steps) == (4, 1)
    with pytest.raises(ValueError, match="'chunk_size' is not name=value"):
        parse_policy_config("chunk_size")
    with pytest.raises(ValueError, match="mlp policies have no config field chunk_size"):
        check_policy_config("mlp", values)


def test_robot_bc_names_a_bad_policy_config_without_a_traceback():
    import subprocess
    import sys

    command = [sys.executable, str(ROOT / "benchmarks" / "robot_bc.py"), "--policies", "mlp",
               "--policy-config", "chunk_sise=4"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--policy-config: mlp policies have no config field chunk_sise" in result.stderr
