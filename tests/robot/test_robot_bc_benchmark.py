"""benchmarks/robot_bc.py keeps the finished rows of an interrupted run with the same settings."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("robot_bc", ROOT / "benchmarks" / "robot_bc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_previous_rows_are_kept_only_for_the_same_settings(tmp_path, capsys):
    previous_rows = load_benchmark().previous_rows
    settings = {"demos": 25, "seeds": 3, "episodes_per_seed": 25, "encoder_precision": "fp32"}
    out = tmp_path / "rows.json"
    assert previous_rows(out, settings) == []  # no file yet
    row = {"env": "metaworld:hammer-v3", "encoder": "pixio_sim_vitt16", "policy": "mlp"}
    out.write_text(json.dumps({**settings, "rows": [row]}))
    assert previous_rows(out, settings) == [row]
    # a file written before encoder_precision existed was an fp32 run
    older = {k: v for k, v in settings.items() if k != "encoder_precision"}
    out.write_text(json.dumps({**older, "rows": [row]}))
    assert previous_rows(out, settings) == [row]
    assert previous_rows(out, {**settings, "encoder_precision": "int8"}) == []
    out.write_text(json.dumps({**settings, "episodes_per_seed": 10, "rows": [row]}))
    assert previous_rows(out, settings) == []
    assert "holds a run of other settings" in capsys.readouterr().out
    out.write_text('{"rows": [')  # cut off: not JSON
    assert previous_rows(out, settings) == []
