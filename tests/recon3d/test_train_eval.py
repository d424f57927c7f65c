"""pixio-recon-train / pixio-recon-eval end to end on tiny rendered scenes, and their pieces."""

import itertools
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from pixio_3d.checkpoint import build_model, load_model
from pixio_3d.cli.eval import main as eval_main
from pixio_3d.cli.train import main as train_main
from pixio_3d.data import MultiViewDataset
from pixio_3d.data.labels import IGNORE_INDEX, label_table
from pixio_3d.evaluation.evaluate import (
    RECONSTRUCTION_KEYS,
    confusion_matrix,
    reconstruction_metrics,
    segmentation_metrics,
)
from pixio_3d.tasks import get_task
from pixio_3d.training.train import (
    TrainingSamples,
    build_optimizer,
    step_plan,
    train_task_steps,
)
from pixio_core.checkpoint import load_checkpoint, write_last_pointer
from pixio_core.loading import load_frozen_encoder, save_encoder
from pixio_core.models.registry import create_encoder
from pixio_core.runlog import read_log

TINY_MODEL = {
    "width": 64,
    "depth": 1,
    "num_heads": 2,
    "dpt_features": 16,
    "dpt_out_channels": [8, 16, 32, 32],
    "pose_hidden_dim": 32,
}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """3 scenes of 6 views at 64x48 and a 4-block random encoder saved as a checkpoint."""
    from pixio_3d.data.scenes import generate_dataset

    root = tmp_path_factory.mktemp("recon_train")
    generate_dataset(root / "scenes", 3, 6, 48, 64, seed=0, progress=False)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        save_encoder(create_encoder("pixio_vitt16", depth=4), root / "encoder")
    return root


def _run_args(assets, out):
    return [
        f"output_dir={out}",
        f"data.root={assets / 'scenes'}",
        "data.generate=false",
        f"encoder.source={assets / 'encoder'}",
        "train.global_batch_size=2",
        "data.num_views=3",
        "optim.warmup_steps=1",
    ]


def _common(assets, out, *extra):
    return [
        *_run_args(assets, out),
        "recon=tiny",  # the ReconstructionModel (the default is recon=mapanything_tiny)
        "recon.model.width=64",
        "recon.model.depth=1",
        "recon.model.num_heads=2",
        "recon.dense.dpt_features=16",
        *extra,
    ]


def _state_equal(first, second):
    a, _, _ = load_checkpoint(first)
    b, _, _ = load_checkpoint(second)
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_reconstruction_run_writes_loadable_checkpoints(assets, tmp_path):
    out = tmp_path / "run"
    train_main(_common(assets, out, "train.total_steps=6", "train.checkpoint_every=2"))
    log = read_log(out / "log.jsonl")
    assert [e["step"] for e in log] == list(range(6))
    assert all(math.isfinite(e["loss"]) and 2 <= e["views"] <= 3 for e in log)
    assert (out / "config.yaml").is_file() and any((out / "tensorboard").iterdir())
    # keep_last=2 (the default), and the last one loads as a self-contained model
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == [
        "step_00000004",
        "step_00000006",
    ]
    model, config = load_model(out / "checkpoints")
    assert config["task"] == "reconstruction" and config["train"]["step"] == 6
    assert not config["encoder_in_checkpoint"]
    sample = MultiViewDataset(assets / "scenes", 2)[0]
    prediction = model.infer(sample["images"][None])
    assert prediction["pts3d"].shape == (1, 2, 48, 64, 3)


def test_resume_continues_exactly(assets, tmp_path):
    steps = ["train.total_steps=4", "train.checkpoint_every=2", "train.keep_last=3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_main(_common(assets, straight, *steps))
    # as if the run had died after step 2: the step-2 checkpoint is the newest one
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_00000004")
    write_last_pointer(resumed / "checkpoints", resumed / "checkpoints" / "step_00000002")
    train_main(_common(assets, resumed, *steps))
    straight_log, resumed_log = read_log(straight / "log.jsonl"), read_log(resumed / "log.jsonl")
    assert [e["step"] for e in resumed_log] == [0, 1, 2, 3]
    assert [e["loss"] for e in resumed_log] == [e["loss"] for e in straight_log]
    _state_equal(straight / "checkpoints", resumed / "checkpoints")
    _, _, state = load_checkpoint(resumed / "checkpoints", with_train_state=True)
    assert state["step"] == 4 and "rng_torch" in state and "optimizer" in state


def test_resume_refuses_a_checkpoint_of_another_model_config(assets, tmp_path):
    from pixio_3d.training.train import CheckpointMismatchError

    steps = ["train.total_steps=2", "train.checkpoint_every=2"]
    train_main(_common(assets, tmp_path, *steps))
    with pytest.raises(SystemExit, match=r"pose_matching.*new output_dir"):
        train_main(_common(assets, tmp_path, *steps, "recon.model.pose_matching=false"))
    # the same model with the parameter groups of another version of the optimizer set-up
    from pixio_3d.checkpoint import load_model
    from pixio_3d.training.train import resume_training

    checkpoints = next(p for p in tmp_path.rglob("checkpoints") if p.is_dir())
    model, _ = load_model(checkpoints)
    one_group = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    with pytest.raises(CheckpointMismatchError, match="optimizer state"):
        resume_training(checkpoints, model, one_group, "reconstruction")


def test_overfits_one_batch(assets):
    encoder, _ = load_frozen_encoder(str(assets / "encoder"))
    torch.manual_seed(0)
    model = build_model("reconstruction", encoder, TINY_MODEL)
    optimizer = build_optimizer(model, lr=2e-3, weight_decay=0.0)
    task = get_task("reconstruction")
    dataset = MultiViewDataset(assets / "scenes", 3)
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    losses = train_task_steps(
        model,
        task=task,
        loss=task.loss(TINY_MODEL),
        batches=itertools.repeat(batch),
        optimizer=optimizer,
        lr_schedule=[2e-3] * 20,
        start_step=0,
        end_step=20,
        device="cpu",
        min_views=3,
        max_views=3,
        intrinsics_probability=1.0,
        progress=False,
    )
    assert max(losses[-3:]) < 0.7 * losses[0], losses
    assert not any(p.requires_grad for p in encoder.parameters())
    # the matching temperature is the one parameter with its own learning-rate scale
    scaled = [g for g in optimizer.param_groups if g["lr_scale"] != 1.0]
    assert [len(g["params"]) for g in scaled] == [1] and scaled[0]["lr_scale"] == 10.0
    assert scaled[0]["params"][0] is model.match_logit_scale
    assert scaled[0]["lr"] == pytest.approx(2e-2)


@pytest.mark.parametrize(
    "task_overrides",
    [
        ["task=depth"],
        ["task=depth", "depth.mode=metric", "depth.head=linear"],
        ["task=segmentation"],
        ["task=segmentation", "segmentation.head=dpt", "segmentation.labels=object_id"],
    ],
)
def test_dense_tasks_train_and_evaluate(assets, tmp_path, task_overrides):
    out = tmp_path / "run"
    extra = [*task_overrides, "train.total_steps=3", f"eval.scenes={assets / 'scenes'}"]
    train_main(_common(assets, out, *extra))
    assert len(read_log(out / "log.jsonl")) == 3
    row = json.loads((out / "eval" / "results.json").read_text())["rows"][0]
    task = task_overrides[0].split("=")[1]
    assert row["task"] == task and row["num_samples"] == 18  # 3 scenes x 6 views
    keys = ("abs_rel", "delta1") if task == "depth" else ("miou", "pixel_accuracy")
    for key in keys:
        assert 0 <= row[key] < math.inf
    if task == "segmentation":
        assert row["miou"] <= 1 and row["pixel_accuracy"] <= 1


def test_eval_cli_writes_every_metric(assets, tmp_path):
    run = tmp_path / "run"
    train_main(_common(assets, run, "train.total_steps=2"))
    out = tmp_path / "eval"
    # 8 views are skipped: the scenes have 6
    scenes = str(assets / "scenes")
    eval_main(
        [str(run / "checkpoints"), "--scenes", scenes, "--views", "2,4,8", "--out", str(out)]
        + ["--view-selection", "sequential"]
    )
    result = json.loads((out / "results.json").read_text())
    assert [r["views"] for r in result["rows"]] == [2, 4]
    assert {r["view_selection"] for r in result["rows"]} == {"sequential"}
    # a second evaluation into the same folder is refused before it runs, unless asked
    again = [str(run / "checkpoints"), "--scenes", scenes, "--views", "2", "--out", str(out)]
    with pytest.raises(SystemExit, match="results.json.* exist; pass --overwrite"):
        eval_main(again)
    assert json.loads((out / "results.json").read_text()) == result
    for row in result["rows"]:
        assert row["num_samples"] == 3 and set(RECONSTRUCTION_KEYS) <= set(row)
        assert 0 <= row["pose_auc_5"] <= row["pose_auc_30"] <= 1
    # ATE needs 3 cameras: null for pairs, a number for 4 views
    assert result["rows"][0]["pose_ate_rmse"] is None
    assert result["rows"][1]["pose_ate_rmse"] >= 0
    table = (out / "results.md").read_text()
    assert (
        "| 2 | 3 | images, sequential views |" in table and "AUC@5" in table and "Chamfer" in table
    )


def test_eval_cli_rejects_missing_inputs(assets, tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        eval_main([str(tmp_path), "--scenes", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="not a Pixio checkpoint"):
        eval_main([str(tmp_path), "--scenes", str(assets / "scenes")])


def _oracle_prediction(sample, similarity=None):
    """The ground truth as a model prediction, optionally moved by a similarity (s, R, t)."""
    from pixio_3d.geometry import points_from_z_depth, ray_directions, transform_points

    poses = sample["cam2world"].double()
    points = transform_points(
        poses, points_from_z_depth(sample["depth"].double(), sample["intrinsics"].double())
    )
    rays = ray_directions(sample["intrinsics"].double(), 48, 64)
    depth = sample["depth"].double()
    if similarity is not None:
        scale, rotation, translation = similarity
        points = scale * points @ rotation.T + translation
        poses = poses.clone()
        poses[:, :3, :3] = rotation @ poses[:, :3, :3]
        poses[:, :3, 3] = scale * poses[:, :3, 3] @ rotation.T + translation
        depth = depth * scale
    return {"pts3d": points, "camera_poses": poses, "depth_z": depth, "ray_directions": rays}


def test_reconstruction_metrics_of_the_ground_truth(assets):
    sample = MultiViewDataset(assets / "scenes", 4)[0]
    angle = 0.7
    rotation = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]],
        dtype=torch.float64,
    )
    for similarity in (None, (1.7, rotation, torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64))):
        metrics = reconstruction_metrics(_oracle_prediction(sample, similarity), sample)
        assert metrics["pointmaps_abs_rel"] < 1e-6
        assert metrics["pointmaps_inlier_thres_103"] == 1.0
        assert metrics["pose_auc_5"] > 0.99 and metrics["pose_auc_30"] > 0.99
        assert metrics["pose_ate_rmse"] < 1e-6 and metrics["chamfer"] < 1e-6
        assert metrics["depth_abs_rel"] < 1e-6 and metrics["depth_delta1"] == 1.0
        assert metrics["z_depth_abs_rel"] < 1e-6 and metrics["ray_dirs_err_deg"] < 1e-3
    # a scaled scene is still perfect after normalisation and alignment, but not metrically
    assert metrics["metric_scale_abs_rel"] == pytest.approx(0.7, abs=1e-6)
    assert metrics["metric_depth_abs_rel"] == pytest.approx(0.7, abs=1e-6)
    assert metrics["pose_ate_sim3"] < 1e-6


def test_segmentation_metrics_known_answer():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE_INDEX, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    confusion = confusion_matrix(pred, target, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    metrics = segmentation_metrics(pred, target, 3)
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 3 / (3 + 4 - 3) = 3/4; class 2: 1 / 2
    assert metrics["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(5 / 7)


def test_labels_follow_scene_json_and_epochs_redraw_views(assets):
    from pixio_3d.data.scenes import SHAPES

    scene = assets / "scenes" / "scene_0000"
    objects = json.loads((scene / "scene.json").read_text())["objects"]
    table = label_table(scene, "shape", 1 + len(SHAPES))
    assert table[0] == IGNORE_INDEX and table[1] == 0
    for entry in objects:
        assert table[entry["id"]] == 1 + SHAPES.index(entry["shape"])
    samples = TrainingSamples(MultiViewDataset(assets / "scenes", 3), "shape", 1 + len(SHAPES))
    item = samples[(0, 0)]
    ids = item["object_ids"].numpy()
    np.testing.assert_array_equal(item["labels"].numpy(), table[ids])
    draws = {tuple(samples[(0, epoch)]["view_indices"].tolist()) for epoch in range(6)}
    assert len(draws) > 1  # a new epoch draws new view sets
    assert samples[(0, 3)]["view_indices"].tolist() == samples[(0, 3)]["view_indices"].tolist()


def test_step_plan_is_a_function_of_the_step():
    plans = [step_plan(0, step, 2, 5, 0.5) for step in range(200)]
    assert plans == [step_plan(0, step, 2, 5, 0.5) for step in range(200)]
    assert {views for views, _ in plans} == {2, 3, 4, 5}
    assert 0.3 < np.mean([give for _, give in plans]) < 0.7
    with pytest.raises(ValueError, match="min_views"):
        step_plan(0, 0, 3, 2, 0.5)


@pytest.mark.slow  # ~25 s: two processes start torch
def test_two_process_ddp_matches_one_process(assets, tmp_path):
    """Two ranks with half the batch each give the one-process losses and weights (the loss is
    a mean over scenes, so DDP's average over ranks is the same mean)."""
    steps = ["train.total_steps=2", "train.checkpoint_every=2", "train.intrinsics_probability=1"]
    train_main(_common(assets, tmp_path / "one", *steps))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    command += ["2", "-m", "pixio_3d.cli.train", *_common(assets, tmp_path / "two", *steps)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    one = [e["loss"] for e in read_log(tmp_path / "one" / "log.jsonl")]
    two = [e["loss"] for e in read_log(tmp_path / "two" / "log.jsonl")]
    assert len(one) == len(two) == 2
    torch.testing.assert_close(two[0], one[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(two[1], one[1], rtol=1e-4, atol=1e-5)
    one_state, _, _ = load_checkpoint(tmp_path / "one" / "checkpoints")
    two_state, _, _ = load_checkpoint(tmp_path / "two" / "checkpoints")
    for key, value in one_state.items():
        torch.testing.assert_close(two_state[key], value, rtol=1e-4, atol=1e-5, msg=key)


def _mapanything_run(assets, out, *extra):
    return [
        *_run_args(assets, out),
        "recon=mapanything_tiny",
        "recon.model.dim=32",
        "recon.model.depth=3",
        "recon.model.intermediate_layers=[0,1]",
        "recon.model.dpt_feature_dim=16",
        "recon.model.dpt_layer_dims=[8,16,32,32]",
        *extra,
    ]


def test_the_released_architecture_trains_resumes_and_reconstructs(assets, tmp_path):
    """One model family: MapAnythingModel (the released model's architecture) at a tiny size
    trains with the same losses, resumes exactly and loads like any reconstruction checkpoint."""
    from pixio_3d.models.mapanything import MapAnythingModel

    steps = ["train.total_steps=4", "train.checkpoint_every=2", "train.keep_last=3"]
    steps.append("recon.model.pose_matching=false")  # as released (the CPU default has it on)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_main(_mapanything_run(assets, straight, *steps))
    log = read_log(straight / "log.jsonl")
    assert [e["step"] for e in log] == [0, 1, 2, 3] and all(math.isfinite(e["loss"]) for e in log)
    assert not any("loss_match" in e for e in log)  # no pose matching: the released architecture
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_00000004")
    write_last_pointer(resumed / "checkpoints", resumed / "checkpoints" / "step_00000002")
    train_main(_mapanything_run(assets, resumed, *steps))
    assert [e["loss"] for e in read_log(resumed / "log.jsonl")] == [e["loss"] for e in log]
    _state_equal(straight / "checkpoints", resumed / "checkpoints")
    # another size into the same run is refused, naming the setting
    with pytest.raises(SystemExit, match=r"dim.*new output_dir"):
        train_main(_mapanything_run(assets, resumed, *steps, "recon.model.dim=48"))
    model, config = load_model(straight / "checkpoints")
    assert isinstance(model, MapAnythingModel) and config["task"] == "reconstruction"
    assert config["model_config"]["architecture"] == "mapanything"
    assert not config["encoder_in_checkpoint"]  # the frozen encoder stays where it was
    sample = MultiViewDataset(assets / "scenes", 2)[0]
    prediction = model.infer(sample["images"][None], sample["intrinsics"][None])
    assert prediction["pts3d"].shape == (1, 2, 48, 64, 3)
    torch.testing.assert_close(prediction["intrinsics"][0], sample["intrinsics"])
    # the trained weights changed from a fresh build's (training reached the heads)
    fresh = build_model("reconstruction", model.encoder, config["model_config"])
    assert not torch.equal(fresh.pose_head.fc_t.weight, model.pose_head.fc_t.weight)
    # and pixio-recon-eval scores it like any reconstruction checkpoint
    out = tmp_path / "eval"
    eval_main([str(straight / "checkpoints"), "--scenes", str(assets / "scenes"), "--views", "2",
               "--out", str(out)])  # fmt: skip
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["views"] for r in rows] == [2] and all(
        math.isfinite(v) for v in rows[0].values() if isinstance(v, float)
    )


def test_the_released_architecture_keeps_pose_matching_as_an_option(assets, tmp_path):
    from pixio_3d.pipeline import predict

    run = tmp_path / "matching"
    train_main(
        _mapanything_run(assets, run, "train.total_steps=2", "recon.model.pose_matching=true")
    )
    assert all("loss_match" in e for e in read_log(run / "log.jsonl"))  # the match loss trains it
    model, config = load_model(run / "checkpoints")
    assert config["model_config"]["pose_matching"] and model.lr_scales == {
        "match_logit_scale": 10.0
    }
    sample = MultiViewDataset(assets / "scenes", 3)[0]
    out = predict(model, sample["images"][None], sample["intrinsics"][None], pose_solver="matches")
    assert out["camera_poses"].shape == (1, 3, 4, 4) and out["pose_support"].shape == (1, 3)
