"""The released MapAnything-with-Pixio architecture: full size on the meta device, both published
folder layouts written from random weights and loaded back strictly, the inference contract,
and clear errors for checkpoints it cannot load (no download anywhere)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from pixio_3d.models.mapanything import (
    MapAnythingConfig,
    MapAnythingModel,
    UnsupportedReconstructionConfig,
    mapanything_sizes,
)
from pixio_3d.models.released import (
    RELEASED_REPO,
    config_from_reference,
    load_reconstruction_model,
    reference_config,
    save_hub_folder,
)
from pixio_core.checkpoint import CheckpointMismatchError

# measured from MapAnything's own model (map-anything configs/model/pixio.yaml + UniCeption
# 0.1.7) built on the meta device: 896,185,622 parameters under 928 state-dict keys
RELEASED_PARAMETERS = 896_185_622
RELEASED_KEYS = 928


@pytest.fixture(scope="module")
def tiny() -> MapAnythingModel:
    torch.manual_seed(0)
    return MapAnythingModel(mapanything_sizes()["tiny"]).eval()


def test_released_configuration_builds_on_meta_with_the_released_parameter_count():
    with torch.device("meta"):
        model = MapAnythingModel(MapAnythingConfig())
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS
    assert len(state) == RELEASED_KEYS
    # names as the released files have them: checkpointing wrapper, shared DPT convs, 8 cls
    assert tuple(state["encoder.blocks.31.inner.attn.qkv.weight"].shape) == (3840, 1280)
    assert tuple(state["encoder.cls_token"].shape) == (1, 8, 1280)
    assert tuple(state["encoder.pos_embed"].shape) == (1, 264, 1280)
    assert tuple(state["info_sharing.self_attention_blocks.23.mlp.fc2.weight"].shape) == (768, 3072)
    assert tuple(state["info_sharing.view_pos_table"].shape) == (1, 768)
    assert tuple(state["dpt_feature_head.input_process.0.0.0.weight"].shape) == (96, 1280, 1, 1)
    assert tuple(state["dense_head.1.conv2.2.weight"].shape) == (6, 128, 1, 1)
    assert tuple(state["pose_head.proj.weight"].shape) == (1024, 768, 1, 1)
    assert tuple(state["scale_head.output_proj.weight"].shape) == (1, 196)
    assert tuple(state["ray_dirs_encoder.conv_in.weight"].shape) == (588, 768, 3, 3)
    assert tuple(state["cam_rot_encoder.encoder.0.0.0.0.weight"].shape) == (128, 4)


def test_the_released_configs_of_both_flavours_parse_to_the_released_model():
    mapanything = reference_config(MapAnythingConfig())
    assert config_from_reference(mapanything) == MapAnythingConfig()
    # the Pixio repo's config.json: encoder by size, with its own keys
    pixio = json.loads(json.dumps(mapanything))
    pixio["name"] = "mapanything_pixio"
    pixio["encoder_config"] = {
        "data_norm_type": "pixio", "size": "huge", "img_size": 256, "patch_size": 16,
        "n_cls_tokens": 8, "pretrained_checkpoint_path": None, "gradient_checkpointing": True,
    }  # fmt: skip
    assert config_from_reference(pixio) == MapAnythingConfig()
    # MapAnything's own yaml leaves dim/num_heads to the transformer's defaults (768 / 12)
    for key in ("dim", "num_heads", "mlp_ratio", "qkv_bias", "qk_norm", "init_values"):
        del mapanything["info_sharing_config"]["module_args"][key]
    for key in (
        "embed_dim",
        "depth",
        "num_heads",
        "mlp_ratio",
        "patch_size",
        "img_size",
        "n_cls_tokens",
    ):
        del mapanything["encoder_config"][key]
    assert config_from_reference(mapanything) == MapAnythingConfig()


def test_mapanything_hub_folder_round_trip_is_strict_and_exact(tiny, tmp_path):
    folder = save_hub_folder(tiny, tmp_path / "hub")
    with safe_open(folder / "model.safetensors", "pt") as f:
        stored = set(f.keys())
    assert len(stored) < len(tiny.state_dict())  # shared tensors stored once
    loaded = load_reconstruction_model(folder)
    assert isinstance(loaded, MapAnythingModel) and not loaded.training
    for name, tensor in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    images = torch.randn(1, 2, 3, 48, 80)
    a, b = tiny.infer(images), loaded.infer(images)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(FileExistsError):
        save_hub_folder(tiny, folder)  # never over a user's files


def test_pixio_repo_folder_loads_strictly_from_a_plain_state_dict(tiny, tmp_path):
    folder = tmp_path / "pixio"
    folder.mkdir()
    torch.save(tiny.state_dict(), folder / "model.pth")
    config = reference_config(tiny.config)
    config["name"] = "mapanything_pixio"
    enc = tiny.config.encoder
    config["encoder_config"] = {
        "data_norm_type": "pixio", "size": "huge", "img_size": enc.image_size, "patch_size": 16,
        "n_cls_tokens": enc.num_class_tokens, "gradient_checkpointing": True,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    # a ViT-H config with the tiny weights: every mismatch is listed
    with pytest.raises(CheckpointMismatchError, match="wrong shapes"):
        load_reconstruction_model(folder)
    # view_pos_table is a fixed function of the config: a file without it still loads
    state = {k: v for k, v in tiny.state_dict().items() if k != "info_sharing.view_pos_table"}
    torch.save(state, folder / "model.pth")
    config["encoder_config"].pop("size")
    config["encoder_config"].update(
        embed_dim=enc.embed_dim, depth=enc.depth, num_heads=enc.num_heads
    )
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_reconstruction_model(folder)
    assert loaded.load_report["skipped_derived"] == ["info_sharing.view_pos_table"]
    images = torch.randn(1, 2, 3, 64, 64)
    torch.testing.assert_close(loaded.infer(images)["pts3d"], tiny.infer(images)["pts3d"])


def test_infer_contract_world_is_view_zero_and_given_cameras_are_honoured(tiny):
    torch.manual_seed(1)
    images = torch.randn(2, 3, 3, 48, 64)
    out = tiny.infer(images)
    for key in ("pts3d", "pts3d_cam", "ray_directions"):
        assert out[key].shape == (2, 3, 48, 64, 3)
    for key in ("depth_along_ray", "depth_z", "conf", "non_ambiguous_mask"):
        assert out[key].shape == (2, 3, 48, 64)
    assert out["camera_poses"].shape == (2, 3, 4, 4) and out["metric_scaling_factor"].shape == (2,)
    torch.testing.assert_close(out["camera_poses"][:, 0], torch.eye(4).expand(2, 4, 4))
    torch.testing.assert_close(out["pts3d"][:, 0], out["pts3d_cam"][:, 0])
    assert (out["conf"] >= 1).all()
    torch.testing.assert_close(out["ray_directions"].norm(dim=-1), torch.ones(2, 3, 48, 64))
    # known intrinsics condition the network and come back as given
    intrinsics = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]).expand(2, 3, 3, 3)
    known = tiny.infer(images, intrinsics)
    torch.testing.assert_close(known["intrinsics"], intrinsics)
    assert not torch.allclose(known["depth_z"], out["depth_z"])
    # a metric depth input passes its scale to the network; a non-metric one does not
    depth = torch.full((2, 3, 48, 64), 4.0)
    metric = tiny.infer(images, intrinsics, depth_z=depth, is_metric_scale=True)
    unscaled = tiny.infer(images, intrinsics, depth_z=depth, is_metric_scale=False)
    assert not torch.allclose(metric["metric_scaling_factor"], unscaled["metric_scaling_factor"])
    # views in chunks give the same result as all at once
    chunked = tiny.infer(images, views_per_chunk=1)
    torch.testing.assert_close(chunked["pts3d"], out["pts3d"], atol=1e-5, rtol=1e-5)


def test_dense_heads_stay_fp32_unless_asked_and_predict_asks_on_a_cpu(tiny):
    """MapAnything keeps its DPT heads in fp32 under autocast; ``dense_head_autocast`` runs them
    in the autocast dtype too, and ``predict`` does that for bf16 on a CPU (~3x faster heads).
    Every output stays fp32 and close."""
    from pixio_3d.pipeline import predict

    seen: list[torch.dtype] = []
    hook = tiny.dpt_regressor_head.conv1.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype)
    )
    torch.manual_seed(3)
    images = torch.randn(1, 2, 3, 48, 64)
    intrinsics = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]).expand(1, 2, 3, 3)
    try:
        with torch.inference_mode():
            heads_fp32 = tiny.infer(images, intrinsics, autocast_dtype=torch.bfloat16)
            heads_bf16 = tiny.infer(
                images, intrinsics, autocast_dtype=torch.bfloat16, dense_head_autocast=True
            )
            fp32 = predict(tiny, images, intrinsics, precision="fp32")
            bf16 = predict(tiny, images, intrinsics, precision="bf16")
    finally:
        hook.remove()
    assert seen == [torch.float32, torch.bfloat16, torch.float32, torch.bfloat16]
    for out in (heads_bf16, bf16):
        assert out["depth_z"].dtype == torch.float32
        relative = (out["depth_z"] - fp32["depth_z"]).abs() / fp32["depth_z"]
        assert 0 < relative.max() and relative.median() < 0.02
    assert not torch.equal(heads_fp32["depth_z"], heads_bf16["depth_z"])


def test_an_untrained_model_starts_from_forward_rays(tiny):
    """Training from scratch starts from rays along the optical axis (the ray-z bias of the
    last dense conv); a loaded checkpoint replaces it."""
    with torch.no_grad():
        rays = tiny.infer(torch.randn(1, 2, 3, 64, 96))["ray_directions"]
    assert rays[..., 2].min() > 0.9  # within about 25 degrees of +z everywhere
    assert tiny.dpt_regressor_head.conv2[-1].bias[2] == 1.0


def test_a_narrower_pose_head_for_cpu_training_has_no_released_config():
    """The CPU sizes may narrow the pose head (released: 4 x 16^2 = 1024 channels); such a model
    is saved as a pixio_3d checkpoint, and writing it as a MapAnything folder is refused."""
    config = mapanything_sizes()["tiny"]
    narrow = MapAnythingModel(MapAnythingConfig(**{**config.__dict__, "pose_head_width": 32}))
    assert tuple(narrow.pose_head.proj.weight.shape) == (32, config.dim, 1, 1)
    assert tuple(narrow.pose_head.fc_rot.weight.shape) == (4, 32)
    assert reference_config(config)  # the default width is the released one
    with pytest.raises(UnsupportedReconstructionConfig, match="pose_head_width=32.*1024"):
        reference_config(narrow.config)
    with pytest.raises(ValueError, match="pose_head_width must be a positive int"):
        MapAnythingConfig(pose_head_width=0)


def test_a_mapanything_checkpoint_with_another_encoder_is_refused(tiny, tmp_path):
    folder = save_hub_folder(tiny, tmp_path / "dino")
    config = json.loads((folder / "config.json").read_text())
    config["encoder_config"] = {"encoder_str": "dinov2", "name": "dinov2_large", "size": "large",
                                "with_registers": False, "data_norm_type": "dinov2"}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedReconstructionConfig, match="dinov2.*Pixio encoder only"):
        load_reconstruction_model(folder)
    # DINOv2 weights under a Pixio config: the mismatching keys are listed
    config["encoder_config"] = reference_config(tiny.config)["encoder_config"]
    (folder / "config.json").write_text(json.dumps(config))
    state = {k: v for k, v in tiny.state_dict().items() if not k.startswith("encoder.")}
    state["encoder.model.blocks.0.ls1.gamma"] = torch.ones(64)
    torch.save(state, folder / "model.pth")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointMismatchError) as error:
        load_reconstruction_model(folder)
    message = str(error.value)
    assert "missing keys" in message and "encoder.cls_token" in message
    assert "unexpected keys (1): encoder.model.blocks.0.ls1.gamma" in message


def test_truncated_weights_and_unknown_representations_get_clear_errors(tiny, tmp_path):
    folder = save_hub_folder(tiny, tmp_path / "hub")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(
        CheckpointMismatchError, match="model.safetensors is not a readable safetensors"
    ):
        load_reconstruction_model(folder)
    config = json.loads((folder / "config.json").read_text())
    config["pred_head_config"]["adaptor_type"] = "pointmap+confidence"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        UnsupportedReconstructionConfig, match="'pointmap\\+confidence' is not supported"
    ):
        load_reconstruction_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(UnsupportedReconstructionConfig, match="not valid JSON"):
        load_reconstruction_model(folder)


def test_an_offline_hub_id_says_which_files_to_place_where(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="config.json and model.pth") as error:
        load_reconstruction_model(RELEASED_REPO)
    assert f"huggingface-cli download {RELEASED_REPO} --local-dir DIR" in str(error.value)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a hub repo id"):
        load_reconstruction_model(str(tmp_path / "no" / "such" / "folder"))


def test_pixio_recon_runs_a_released_layout_folder(tiny, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from pixio_3d.cli.recon import main

    folder = save_hub_folder(tiny, tmp_path / "hub")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(
            photos / f"{i}.png"
        )
    main([str(photos), "--out", str(tmp_path / "out"), "--model", str(folder), "--long-side", "128",
          "--focal-px", "100", "--pose-solver", "head", "--no-progress"])  # fmt: skip
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_views"] == 2 and (tmp_path / "out" / "points.ply").is_file()
    assert "reconstructed 2 photos" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="cannot load --model"):
        main([str(photos), "--out", str(tmp_path / "out2"), "--model", str(tmp_path / "none")])
