"""pixio-recon-demo end to end at a tiny size: scenes -> training -> held-out metrics -> photos."""

import json

import torch

from pixio_3d.cli.demo import OUT, main
from pixio_core import create_encoder, save_encoder


def test_recon_demo_trains_evaluates_and_reconstructs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    save_encoder(create_encoder("pixio_vitt16", depth=2), tmp_path / "encoder")
    overrides = [
        f"encoder.source={tmp_path / 'encoder'}",
        "data.num_scenes=2",
        "data.views_per_scene=4",
        "data.height=48",
        "data.width=64",
        "train.total_steps=2",
        "eval.views=[2,4]",
        "eval.num_scenes=1",
    ]
    main(overrides)
    out = capsys.readouterr().out
    assert "reconstructed 4 photos" in out and "| 2 |" in out and "| 4 |" in out
    rows = json.loads((OUT / "run" / "eval" / "results.json").read_text())["rows"]
    assert [row["views"] for row in rows] == [2, 4]
    for name in ("points.ply", "scene.glb", "preview.png", "summary.json"):
        assert (OUT / "reconstruction" / name).is_file()
    main(overrides)  # a second run resumes the finished training and redoes the rest
    assert "nothing to train" in capsys.readouterr().out

    # a run of another model config is left as it is: the demo trains beside it
    def files(folder):
        return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    before = files(OUT / "run")
    main([*overrides, "recon.model.pose_matching=false"])
    assert "left as it is" in capsys.readouterr().out
    assert files(OUT / "run") == before  # not one byte of the earlier run changed
    assert (OUT / "run_2" / "checkpoints" / "last").is_file()
