"""The layout's promises: the network stage imports no classical solver or writer, the task
table drives models and losses for every task, and checkpoints find their encoder from anywhere."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from pixio_3d.checkpoint import load_model, save_model
from pixio_3d.data import MultiViewDataset
from pixio_3d.tasks import TASKS, EvalOptions, get_task
from pixio_3d.training.train import prepare_batch
from pixio_core import create_encoder, save_encoder
from pixio_core.loading import load_frozen_encoder

SETTINGS = {
    "recon": {
        "model": {
            "width": 32,
            "depth": 1,
            "num_heads": 2,
            "dpt_features": 8,
            "dpt_out_channels": [8, 8, 16, 16],
            "pose_hidden_dim": 16,
        },
        "dense": {"dpt_features": 8, "dpt_out_channels": [8, 8, 16, 16]},
    },
    "depth": {"mode": "relative", "head": "linear", "max_depth": 10.0},
    "segmentation": {"head": "linear", "labels": "object_id", "num_object_ids": 6},
    "loss": {},
}


def test_the_network_stage_imports_no_solver_writer_or_renderer():
    code = (
        "import sys, pixio_3d.models, pixio_3d.checkpoint, pixio_3d.tasks, pixio_3d.training.train;"
        "print(sorted(m for m in ('cv2', 'pycolmap', 'open3d', 'trimesh', 'mujoco', 'matplotlib')"
        " if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(ValueError, match="reconstruction, depth, segmentation"):
        get_task("depht")
    with pytest.raises(ValueError, match="view_selection"):
        EvalOptions(view_selection="nearby")
    with pytest.raises(ValueError, match="pose_solver"):
        EvalOptions(pose_solver="ransac")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from pixio_3d.data.scenes import generate_dataset

    root = tmp_path_factory.mktemp("scenes")
    generate_dataset(root, 1, 3, 32, 48, seed=0, progress=False)
    return root


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_builds_its_model_and_loss_from_the_settings(name, scenes):
    task = get_task(name)
    torch.manual_seed(0)
    encoder = create_encoder("pixio_vitt16", depth=1).requires_grad_(False)
    config = task.model_config(SETTINGS)
    model = task.build_model(encoder, config)
    assert isinstance(model, task.model_type)
    batch = torch.utils.data.default_collate([MultiViewDataset(scenes, 2)[0]])
    batch = prepare_batch(batch, "cpu")
    if task.label_mode(SETTINGS) is not None:
        batch["labels"] = batch["object_ids"].clamp(0, config["num_classes"] - 1)
    model.train()
    assert not encoder.training  # a frozen encoder stays in eval mode
    loss, terms = task.compute_loss(model, task.loss(config, SETTINGS["loss"]), batch, True)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert any(p.grad is not None for p in model.parameters() if p.requires_grad)
    if name == "reconstruction":
        assert "pointmap" in terms or terms  # the factored terms are reported


def test_checkpoints_find_their_encoder_from_any_folder_and_after_a_move(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    torch.manual_seed(0)
    save_encoder(create_encoder("pixio_vitt16", depth=1), "encoder")
    encoder, _ = load_frozen_encoder("encoder")
    task = get_task("depth")
    model = task.build_model(encoder, task.model_config(SETTINGS))
    save_model("runs/depth", model, "depth", "encoder")  # a relative source, as users type it
    monkeypatch.chdir(tmp_path)  # another working folder
    loaded, config = load_model(project / "runs" / "depth")
    assert config["encoder"]["source"] == "encoder"
    assert os.path.isabs(config["encoder"]["absolute_path"])
    moved = tmp_path / "moved"
    shutil.move(project, moved)  # the folders that hold both, moved together
    loaded, _ = load_model(moved / "runs" / "depth")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
