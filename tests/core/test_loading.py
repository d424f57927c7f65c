"""load_encoder from every format: round trips, hub cache, strict errors, unsafe/broken files."""

import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from pixio_core import create_encoder, export_hf, export_official, load_encoder, save_encoder
from pixio_core.checkpoint import save_checkpoint, write_last_pointer
from pixio_core.convert import hf_to_official
from pixio_core.loading import CheckpointMismatchError, read_state_dict
from pixio_core.models import create_mae


def tiny_encoder(**overrides):
    values = {"depth": 3}
    values.update(overrides)
    encoder = create_encoder("pixio_vitt16", **values).eval()
    with torch.no_grad():
        for param in encoder.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return encoder


def same_outputs(a, b, images):
    with torch.no_grad():
        out_a, out_b = a.forward_features(images), b.forward_features(images)
    for key in out_a:
        torch.testing.assert_close(out_a[key], out_b[key], atol=1e-6, rtol=1e-5)


IMAGES = torch.randn(2, 3, 48, 64)


def test_round_trip_official_pth(tmp_path):
    encoder = tiny_encoder()
    path = export_official(encoder, tmp_path / "pixio_tiny.pth")
    state = torch.load(path, weights_only=True)
    assert set(state) == set(encoder.state_dict())  # plain official-layout state dict
    loaded = load_encoder(path)
    assert (
        loaded.config == encoder.config
        and loaded.config.depth == 3
        and loaded.config.num_class_tokens == 8
    )
    assert not loaded.training
    same_outputs(encoder, loaded, IMAGES)


def test_official_training_checkpoint_wrapped_in_model_key_drops_decoder(tmp_path):
    mae = create_mae("pixio_vitt16", depth=2)
    state = {k.removeprefix("encoder."): v for k, v in mae.state_dict().items()}
    torch.save({"model": state, "epoch": 3}, tmp_path / "checkpoint-3.pth")
    loaded = load_encoder(tmp_path / "checkpoint-3.pth")
    same_outputs(mae.encoder.eval(), loaded, IMAGES)


def test_round_trip_project_checkpoint_and_last_pointer(tmp_path):
    encoder = tiny_encoder(num_class_tokens=4, image_size=128)
    save_encoder(encoder, tmp_path / "enc")
    loaded = load_encoder(tmp_path / "enc")
    assert loaded.config == encoder.config
    same_outputs(encoder, loaded, IMAGES)

    mae = create_mae("pixio_vitt16", depth=2)
    run = tmp_path / "run"
    path = save_checkpoint(
        run / "step_00000010", mae.state_dict(), {"kind": "mae", **mae.config_dict()}
    )
    write_last_pointer(run, path)
    same_outputs(mae.encoder.eval(), load_encoder(run), IMAGES)


def test_round_trip_hf_folder_and_in_memory_hf_names(tmp_path):
    encoder = tiny_encoder()
    export_hf(encoder, tmp_path / "hf")
    same_outputs(encoder, load_encoder(tmp_path / "hf"), IMAGES)
    transformers = pytest.importorskip("transformers")
    model = transformers.PixioModel.from_pretrained(tmp_path / "hf")
    # transformers >= 5 names its modules differently from the files it writes: both convert
    converted = hf_to_official(model.state_dict())
    assert set(converted) == set(encoder.state_dict())
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(converted[key], value)


def test_safetensors_file(tmp_path):
    encoder = tiny_encoder()
    save_file(encoder.state_dict(), tmp_path / "enc.safetensors")
    same_outputs(encoder, load_encoder(tmp_path / "enc.safetensors"), IMAGES)


def _fake_hub_cache(cache, repo_id, filename, encoder):
    """The huggingface_hub cache layout: models--org--name/{refs/main, snapshots/<commit>/file}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    export_official(encoder, snapshot / filename)


def test_hub_sources_from_the_huggingface_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = tiny_encoder()
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "facebook/pixio-vitb16", "pixio_vitb16.pth", encoder)
    _fake_hub_cache(cache, "someone/my-pixio", "weights/enc.pth", encoder)
    same_outputs(encoder, load_encoder("pixio_vitb16", cache_dir=cache), IMAGES)
    same_outputs(
        encoder, load_encoder("hf://someone/my-pixio/weights/enc.pth", cache_dir=cache), IMAGES
    )


def test_hub_name_offline_without_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as info:
        load_encoder("pixio_vith16", cache_dir=tmp_path / "empty")
    message = str(info.value)
    assert "facebook/pixio-vith16" in message and "pixio_vith16.pth" in message
    assert "load_encoder('/path/to/pixio_vith16.pth')" in message


def test_unknown_and_unreleased_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="pixio_vith16"):
        load_encoder("pixio_vitz16")
    with pytest.raises(ValueError, match="no released weights"):
        load_encoder("pixio_vitt16")
    with pytest.raises(FileNotFoundError, match="holds no Pixio checkpoint"):
        load_encoder(tmp_path)


def test_checkpoint_of_another_architecture_lists_the_problem(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    torch.save(net.state_dict(), tmp_path / "cnn.pth")
    with pytest.raises(
        CheckpointMismatchError, match=r"not a Pixio encoder checkpoint: missing \['cls_token'"
    ):
        load_encoder(tmp_path / "cnn.pth")


def test_strict_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    state = tiny_encoder().state_dict()
    del state["blocks.1.mlp.fc2.bias"]
    state["blocks.1.extra.weight"] = torch.zeros(2)
    state["blocks.2.norm1.weight"] = torch.zeros(95)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        load_encoder(tmp_path / "broken.pth")
    message = str(info.value)
    assert "missing keys (1): blocks.1.mlp.fc2.bias" in message
    assert "unexpected keys (1): blocks.1.extra.weight" in message
    assert "blocks.2.norm1.weight: checkpoint (95,) vs model (192,)" in message
    assert str(tmp_path / "broken.pth") in message


def test_truncated_and_non_checkpoint_files(tmp_path):
    path = export_official(tiny_encoder(), tmp_path / "full.pth")
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pth is not a readable PyTorch checkpoint"):
        load_encoder(tmp_path / "cut.pth")
    (tmp_path / "notes.pth").write_text("hello, not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth is not a readable PyTorch checkpoint"):
        load_encoder(tmp_path / "notes.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="bad.safetensors is not a readable safetensors file"):
        load_encoder(tmp_path / "bad.safetensors")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path, capsys):
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"cls_token": _Payload()}, handle)
    with pytest.raises(ValueError, match="evil.pth is not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "evil.pth")
    assert "this must never run" not in capsys.readouterr().out


def test_wrong_model_type_in_config(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(ValueError, match="model_type='vit'"):
        load_encoder(tmp_path)


def test_module_prefixes_are_stripped(tmp_path):
    encoder = tiny_encoder()
    torch.save(
        {f"module._orig_mod.{k}": v for k, v in encoder.state_dict().items()}, tmp_path / "ddp.pth"
    )
    same_outputs(encoder, load_encoder(tmp_path / "ddp.pth"), IMAGES)


def test_unregistered_width_needs_num_heads(tmp_path):
    encoder = create_encoder("pixio_vitt16", depth=2, embed_dim=96, num_heads=4).eval()
    path = export_official(encoder, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="width 96 matches no registered size.*num_heads"):
        load_encoder(path)
    same_outputs(encoder, load_encoder(path, num_heads=4), IMAGES)


def test_shipped_encoder_missing_from_the_installation_says_so(tmp_path, monkeypatch):
    import pixio_core.loading as loading

    monkeypatch.setattr(loading, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="missing from this installation"):
        load_encoder("pixio_sim_vitt16")
    with pytest.raises(ValueError, match="not a shipped encoder"):
        loading.shipped_encoder_dir("pixio_vith16")


def test_the_shipped_encoder_loads_by_name_with_its_provenance():
    from pixio_core.loading import load_frozen_encoder, shipped_encoder_dir

    folder = shipped_encoder_dir("pixio_sim_vitt16")
    for name in ("README.md", "command.txt", "training_log.jsonl", "pretrain_config.yaml"):
        assert (folder / name).is_file(), name
    assert (folder / "model.safetensors").stat().st_size <= 25 * 2**20
    assert "pixio-pretrain data=sim_frames" in (folder / "command.txt").read_text()
    encoder = load_encoder("pixio_sim_vitt16")
    assert encoder.embed_dim == 192 and encoder.num_class_tokens == 8
    with torch.no_grad():
        out = encoder.forward_features(torch.randn(1, 3, 128, 128))
    assert out["patch_tokens"].shape == (1, 64, 192) and torch.isfinite(out["pooled"]).all()
    _, identity = load_frozen_encoder("pixio_sim_vitt16")
    assert identity == load_frozen_encoder("pixio_sim_vitt16")[1]
