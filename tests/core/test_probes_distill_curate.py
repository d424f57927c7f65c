"""Probes (k-NN, linear, caching), distillation and self-curation, at tiny sizes."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from pixio_core import create_encoder, load_encoder, save_encoder
from pixio_core.checkpoint import save_checkpoint, write_last_pointer
from pixio_core.cli.common import CONFIG_DIR
from pixio_core.data import make_shapes_dataset
from pixio_core.data.curation import color_histogram_entropy, keep_probabilities, read_curation
from pixio_core.data.sampler import StepBatchSampler
from pixio_core.distill import DistillStudent, teacher_tokens
from pixio_core.masking import sample_block_mask
from pixio_core.models import MaskingConfig, create_mae
from pixio_core.probes import ClassFolderDataset, knn_predict, linear_probe, split_per_class


def compose_config(name, overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=overrides)


def test_knn_votes_with_temperature():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_predict(train, labels, test, k=3, num_classes=2).tolist() == [0, 1]
    # k larger than the train set is clipped, not an error
    assert knn_predict(train, labels, test, k=10, num_classes=2).tolist() == [0, 1]


def test_linear_probe_separates_separable_features():
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=generator) * 3
    labels = torch.arange(3).repeat_interleave(40)
    features = centers[labels] + torch.randn(120, 16, generator=generator)
    predictions = linear_probe(features[::2], labels[::2], features[1::2], 3)
    assert (predictions == labels[1::2]).float().mean() > 0.95


def test_split_is_stratified_and_deterministic(tmp_path):
    root = make_shapes_dataset(tmp_path, images_per_class=4, image_size=32, progress=False)
    dataset = ClassFolderDataset(root, 32)
    train, val = split_per_class(dataset, 0.25, seed=0)
    assert len(val) == 8 and len(train) == 24 and not set(train) & set(val)
    assert split_per_class(dataset, 0.25, seed=0) == (train, val)


def _color_classes(root, per_class=8):
    """Three classes that differ by color (with noise): even a random encoder separates them."""
    generator = torch.Generator().manual_seed(0)
    for name, color in (
        ("red", (0.8, 0.1, 0.1)),
        ("green", (0.1, 0.8, 0.1)),
        ("blue", (0.1, 0.1, 0.8)),
    ):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = torch.tensor(color).view(1, 1, 3) + 0.2 * torch.rand(
                64, 64, 3, generator=generator
            )
            Image.fromarray((pixels.clamp(0, 1) * 255).to(torch.uint8).numpy()).save(
                root / name / f"{index}.png"
            )
    return root


def test_probe_cli_caches_features_and_separates_easy_classes(tmp_path, capsys):
    from pixio_core.cli.probe import run

    encoder = create_encoder("pixio_vitt16", depth=2)
    save_encoder(encoder, tmp_path / "enc")
    data = _color_classes(tmp_path / "colors")
    cfg = compose_config(
        "probe",
        [
            f"encoder={tmp_path / 'enc'}",
            f"output_dir={tmp_path / 'probe'}",
            "data.kind=folder",
            f"data.root={data}",
            "image_size=64",
            "linear.epochs=50",
        ],
    )
    results = run(cfg)
    assert set(results["knn"]) == {"10", "20"} and results["num_classes"] == 3
    assert results["num_train"] == 18 and results["num_val"] == 6
    assert json.loads((tmp_path / "probe" / "probe.json").read_text()) == results
    assert results["knn"]["10"] == 1.0 and results["linear"] == 1.0
    cache = sorted((tmp_path / "probe" / "cache").glob("*.safetensors"))
    assert len(cache) == 2
    stamp = [p.stat().st_mtime_ns for p in cache]
    assert run(cfg) == results  # second run reads the cache
    assert [p.stat().st_mtime_ns for p in cache] == stamp
    assert "k-NN" in capsys.readouterr().out


def test_student_learns_to_match_a_tiny_teacher():
    torch.manual_seed(0)
    teacher = (
        create_encoder("pixio_vitt16", depth=2, embed_dim=96, num_heads=4)
        .eval()
        .requires_grad_(False)
    )
    student = create_encoder("pixio_vitt16", depth=2, embed_dim=64, num_heads=4)
    model = DistillStudent(student, teacher_dim=96, teacher_class_tokens=8)
    images = torch.nn.functional.interpolate(torch.randn(8, 3, 4, 4), size=64, mode="bilinear")
    targets = teacher_tokens(teacher, images)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    mask = sample_block_mask(
        8, 4, 4, mask_grid=2, mask_ratio=0.5, generator=torch.Generator().manual_seed(0)
    )
    losses = []
    for _ in range(60):
        out = model(images, targets, mask=mask)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.3 * losses[0]
    with pytest.raises(ValueError, match="num_class_tokens=8"):
        DistillStudent(create_encoder("pixio_vitt16", depth=1, num_class_tokens=1), 96, 8)


def test_distill_cli_saves_a_plain_student(tmp_path):
    from pixio_core.cli.distill import run

    teacher = create_encoder("pixio_vitt16", depth=2)
    save_encoder(teacher, tmp_path / "teacher")
    cfg = compose_config(
        "distill",
        [
            f"teacher={tmp_path / 'teacher'}",
            f"output_dir={tmp_path / 'run'}",
            f"data.root={tmp_path / 'data'}",
            "data.images_per_class=1",
            "student.image_size=64",
            "student.mask_ratio=0.5",
            "student.encoder=pixio_vitt16",
            "train.total_steps=3",
            "train.global_batch_size=4",
            "train.checkpoint_every=3",
            "optim.warmup_steps=1",
        ],
    )
    out = run(cfg)
    student = load_encoder(out / "student")
    assert student.config.embed_dim == 192 and student.num_class_tokens == 8
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and 0 < summary["loss_first"] <= 2


def test_entropy_ranks_flat_below_busy_images():
    flat = Image.new("RGB", (64, 64), (200, 30, 30))
    noise = Image.fromarray((torch.rand(64, 64, 3) * 255).to(torch.uint8).numpy())
    assert color_histogram_entropy(flat) == 0.0
    assert color_histogram_entropy(noise) > 8.5  # close to the 9-bit maximum


def test_curation_weights_and_filters(tmp_path):
    files = [tmp_path / f"{name}.png" for name in ("easy", "hard", "tiny", "text", "unscored")]
    lines = [
        {"path": "easy.png", "loss": 0.2, "entropy": 7.0, "height": 400, "width": 400},
        {"path": "hard.png", "loss": 1.5, "entropy": 7.0, "height": 400, "width": 400},
        {"path": "tiny.png", "loss": 0.9, "entropy": 7.0, "height": 100, "width": 400},
        {"path": "text.png", "loss": 0.9, "entropy": 3.0, "height": 400, "width": 400},
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    keep = keep_probabilities(
        files, tmp_path, tmp_path / "c.jsonl", loss_scale=1.0, min_side=320, entropy_threshold=4.5
    )
    assert keep.tolist() == [0.2, 1.0, 0.0, 0.0, 1.0]
    (tmp_path / "bad.jsonl").write_text('{"path": "a.png"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_curation(tmp_path / "bad.jsonl")


def test_curated_sampler_redraws_every_pass_and_prefers_hard_images():
    keep = torch.tensor([0.1] * 50 + [1.0] * 50)
    sampler = StepBatchSampler(100, 10, 100, seed=0, keep_probability=keep)
    first, second = set(sampler.epoch_order(0).tolist()), set(sampler.epoch_order(1).tolist())
    assert set(range(50, 100)) <= first and set(range(50, 100)) <= second  # always kept
    easy_first, easy_second = first - set(range(50, 100)), second - set(range(50, 100))
    assert easy_first != easy_second and len(easy_first) < 15  # about 5 of 50, re-drawn


def test_curate_cli_writes_scores_beside_the_data(tmp_path, capsys):
    from pixio_core.cli.curate import run

    data = make_shapes_dataset(tmp_path / "data", images_per_class=2, image_size=64, progress=False)
    (data / "disc" / "broken.png").write_bytes(b"garbage")
    mae = create_mae("pixio_vitt16", depth=1, image_size=64, masking=MaskingConfig(0.75, 2))
    path = save_checkpoint(
        tmp_path / "run" / "step_1", mae.state_dict(), {"kind": "mae", **mae.config_dict()}
    )
    write_last_pointer(tmp_path / "run", path)
    cfg = compose_config(
        "curate", [f"checkpoint={tmp_path / 'run'}", f"data.root={data}", "num_masks=2"]
    )
    output = run(cfg)
    records = read_curation(output)
    assert output == data / "pixio_curation.jsonl" and len(records) == 16
    assert "disc/broken.png" not in records
    assert all(
        r["loss"] > 0 and r["height"] == 64 and 0 < r["entropy"] <= 9 for r in records.values()
    )
    assert (data / "pixio_curation_histogram.png").is_file()
    assert "skipped 1 unreadable" in capsys.readouterr().out
    encoder_only = tmp_path / "enc"
    save_encoder(mae.encoder, encoder_only)
    with pytest.raises(ValueError, match="decoder is needed"):
        run(compose_config("curate", [f"checkpoint={encoder_only}", f"data.root={data}"]))
