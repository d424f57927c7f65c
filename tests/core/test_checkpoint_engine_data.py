"""Atomic checkpoints, schedules, optimizer groups, data, and the demo end to end (tiny)."""

import copy
import os

import pytest
import torch

from pixio_core.checkpoint import (
    clean_state_dict,
    load_checkpoint,
    resolve_checkpoint_dir,
    save_checkpoint,
    write_last_pointer,
)
from pixio_core.data import (
    SHAPE_CLASSES,
    ImageFolderDataset,
    make_shapes_dataset,
    pretrain_transform,
    read_rgb,
)
from pixio_core.data.sampler import mix_seed
from pixio_core.engine import NonFiniteLossError, cosine_schedule, param_groups, pretrain_steps
from pixio_core.models import MaskingConfig, create_mae
from pixio_core.precision import resolve_precision


def test_checkpoint_round_trip_with_train_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    path = save_checkpoint(
        tmp_path / "step_1",
        model.state_dict(),
        {"kind": "test", "width": 3},
        {"step": 1, "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()},
    )
    write_last_pointer(tmp_path, path)
    state, config, train_state = load_checkpoint(tmp_path, with_train_state=True)
    assert config["kind"] == "test" and config["pixio_checkpoint"] == 1
    torch.testing.assert_close(state["weight"], model.weight)
    assert train_state["step"] == 1
    fresh = torch.optim.AdamW(model.parameters())
    fresh.load_state_dict(train_state["optimizer"])  # loads back with weights_only=True
    assert sorted(os.listdir(tmp_path)) == ["last", "step_1"]  # no temp files left


def test_overwriting_a_checkpoint_replaces_it_whole(tmp_path):
    save_checkpoint(tmp_path / "ck", {"a": torch.zeros(2)}, {"v": 1}, {"step": 1})
    save_checkpoint(tmp_path / "ck", {"a": torch.ones(2)}, {"v": 2})
    state, config, _ = load_checkpoint(tmp_path / "ck")
    assert config["v"] == 2 and state["a"].tolist() == [1.0, 1.0]
    assert not (tmp_path / "ck" / "train_state.pt").exists()
    assert sorted(os.listdir(tmp_path)) == ["ck"]


def test_failed_write_leaves_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "ck", {"a": torch.zeros(2)}, {"v": 1})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "ck", {"a": torch.ones(2)}, {"v": object()})  # not JSON
    state, config, _ = load_checkpoint(tmp_path / "ck")
    assert config["v"] == 1 and sorted(os.listdir(tmp_path)) == ["ck"]


def test_resolve_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a Pixio checkpoint folder"):
        resolve_checkpoint_dir(tmp_path)
    (tmp_path / "last").write_text("step_9\n")
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint folder"):
        resolve_checkpoint_dir(tmp_path)


def test_clean_state_dict():
    assert list(clean_state_dict({"module._orig_mod.a.b": 1, "c": 2})) == ["a.b", "c"]


def test_cosine_schedule():
    values = cosine_schedule(1.0, 10, 2, final=0.1)
    assert values[0] == 0.0 and values[1] == 0.5 and values[2] == 1.0
    assert values[-1] > 0.1 and all(a >= b for a, b in zip(values[2:], values[3:], strict=False))
    with pytest.raises(ValueError):
        cosine_schedule(1.0, 10, 11)


def test_param_groups_no_decay_on_norms_and_biases():
    model = create_mae("pixio_vitt16", depth=1)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert (
        "encoder.pos_embed" in decayed
        and "encoder.cls_token" in decayed
        and "mask_token" in decayed
    )
    assert not any(n.endswith(".bias") or ".norm" in n for n in decayed)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_precision_choice():
    assert resolve_precision("fp32", "cpu") == torch.float32
    assert resolve_precision("bf16", "cpu") == torch.bfloat16
    assert resolve_precision("auto", "cpu") in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")


def test_shapes_dataset_is_deterministic_and_skips_bad_files(tmp_path):
    root = make_shapes_dataset(tmp_path / "a", images_per_class=2, image_size=32, progress=False)
    again = make_shapes_dataset(tmp_path / "b", images_per_class=2, image_size=32, progress=False)
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    assert len(files) == 2 * len(SHAPE_CLASSES)
    for rel in files:
        assert (root / rel).read_bytes() == (again / rel).read_bytes()
    (root / "disc" / "broken.png").write_bytes(b"not a png")
    dataset = ImageFolderDataset(root, pretrain_transform(32))
    index = dataset.files.index(root / "disc" / "broken.png")
    sample = dataset[index]
    assert (
        sample["image"].shape == (3, 32, 32) and sample["index"] != index and sample["skipped"] == 1
    )
    assert dataset.skipped == {root / "disc" / "broken.png"}
    # the shared decoder behind folders, shards and curation: paths or bytes; None when unreadable
    good = root / files[0]
    assert read_rgb(good).mode == "RGB" and read_rgb(good.read_bytes()).size == (32, 32)
    assert read_rgb(root / "disc" / "broken.png") is None
    assert read_rgb(b"not a png") is None and read_rgb(None) is None


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope", pretrain_transform(32))
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolderDataset(tmp_path, pretrain_transform(32))


def test_pretrain_steps_learns_and_logs(tmp_path):
    torch.manual_seed(0)
    model = create_mae("pixio_vitt16", depth=2, masking=MaskingConfig(0.75, 2))
    # smooth images: masked patches are predictable from their neighbours
    fixed = torch.nn.functional.interpolate(
        torch.randn(4, 3, 2, 2), size=64, mode="bilinear", align_corners=True
    )
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3, betas=(0.9, 0.95))
    schedule = cosine_schedule(3e-3, 100, 5)
    logged = []

    def same_batch():
        while True:
            yield {"image": fixed, "skipped": torch.tensor([0, 1, 0, 0])}

    losses = pretrain_steps(
        model,
        batches=same_batch(),
        optimizer=optimizer,
        lr_schedule=schedule,
        start_step=0,
        end_step=100,
        device=torch.device("cpu"),
        seed=0,
        log_fn=lambda step, scalars: logged.append((step, scalars)),
        progress=False,
    )
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
    assert [step for step, _ in logged] == list(range(100))
    assert logged[5][1]["lr"] == schedule[5] and logged[5][1]["skipped_images"] == 1


def test_gradient_accumulation_averages_the_micro_batch_gradients():
    images = torch.randn(4, 3, 64, 64)
    model = create_mae("pixio_vitt16", depth=1, masking=MaskingConfig(0.75, 2))
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pretrain_steps(
        model,
        batches=iter([images[:2], images[2:]]),
        optimizer=optimizer,
        lr_schedule=[0.1],
        start_step=0,
        end_step=1,
        device=torch.device("cpu"),
        seed=3,
        accumulation_steps=2,
        progress=False,
    )
    for micro in range(2):  # masks are a pure function of (seed, step, micro)
        mask = reference.sample_mask(2, 4, 4, torch.Generator().manual_seed(mix_seed(3, 0, micro)))
        (reference(images[2 * micro : 2 * micro + 2], mask=mask)["loss"] / 2).backward()
    for (name, trained), expected in zip(
        model.named_parameters(), reference.parameters(), strict=True
    ):
        torch.testing.assert_close(trained, expected - 0.1 * expected.grad, msg=name)


def test_non_finite_loss_stops_with_clear_error():
    model = create_mae("pixio_vitt16", depth=1, masking=MaskingConfig(0.75, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def nan_batches():
        while True:
            yield torch.full((2, 3, 64, 64), float("nan"))

    with pytest.raises(NonFiniteLossError, match="at step 0"):
        pretrain_steps(
            model,
            batches=nan_batches(),
            optimizer=optimizer,
            lr_schedule=[0.1],
            start_step=0,
            end_step=1,
            device=torch.device("cpu"),
            progress=False,
        )


def test_demo_runs_end_to_end(tmp_path, capsys):
    from pixio_core.cli.demo import main

    main(
        [
            f"output_dir={tmp_path}",
            "train.total_steps=4",
            "train.global_batch_size=4",
            "model.image_size=64",
            "data.images_per_class=1",
            "train.checkpoint_every=2",
            "train.recon_every=2",
            "optim.warmup_steps=1",
        ]
    )
    for name in (
        "loss_curve.png",
        "log.jsonl",
        "config.yaml",
        "summary.json",
        "checkpoints/last",
        "reconstructions/step_00000004.png",
        "checkpoints/step_00000004/model.safetensors",
    ):
        assert (tmp_path / name).is_file(), name
    assert "reloaded the encoder" in capsys.readouterr().out
