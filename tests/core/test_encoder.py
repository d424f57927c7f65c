"""The encoder contract: shapes, any aspect ratio, intermediates, registry, Hugging Face parity."""

import pytest
import torch

from pixio_core import create_encoder, export_hf, load_encoder
from pixio_core.models.encoder import evenly_spaced_blocks
from pixio_core.models.registry import ENCODER_SIZES, encoder_config, list_encoders

OFFICIAL = {  # width, depth, heads, MLP hidden (paper Table 9 / released pixio.py)
    "pixio_vitb16": (768, 12, 12, 3072),
    "pixio_vitl16": (1024, 24, 16, 4096),
    "pixio_vith16": (1280, 32, 16, 5120),
    "pixio_vit1b16": (1536, 48, 24, 6144),
    "pixio_vit5b16": (3072, 48, 32, 12288),
}


def tiny(**overrides):
    values = {"depth": 4, "embed_dim": 64, "num_heads": 4}
    values.update(overrides)
    return create_encoder("pixio_vitt16", **values)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_sizes_match_the_release(name):
    config = encoder_config(name)
    dim, depth, heads, hidden = OFFICIAL[name]
    assert (config.embed_dim, config.depth, config.num_heads) == (dim, depth, heads)
    assert int(config.embed_dim * config.mlp_ratio) == hidden
    assert config.num_class_tokens == 8 and config.image_size == 256 and config.patch_size == 16


# parameter counts from the official README (millions, rounded)
RELEASED_PARAMS_M = {
    "pixio_vitb16": 86,
    "pixio_vitl16": 303,
    "pixio_vith16": 631,
    "pixio_vit1b16": 1362,
    "pixio_vit5b16": 5441,
}


@pytest.mark.parametrize("name", list_encoders())
def test_every_registry_entry_builds(name):
    if ENCODER_SIZES[name][0] > 1024:
        with torch.device("meta"):  # the full 1B/5B would need up to 22 GB here: shapes only
            encoder = create_encoder(name)
    else:
        encoder = create_encoder(name)
    if name in RELEASED_PARAMS_M:
        params = sum(p.numel() for p in encoder.parameters()) / 1e6
        assert abs(params - RELEASED_PARAMS_M[name]) < 1.0, params
    state = encoder.state_dict()
    dim = ENCODER_SIZES[name][0]
    assert state["cls_token"].shape == (1, 8, dim)
    assert state["pos_embed"].shape == (1, 264, dim)
    assert state["blocks.0.attn.qkv.weight"].shape == (3 * dim, dim)
    assert not any("ls1" in k or "q_norm" in k or "reg_token" in k for k in state)


@pytest.mark.parametrize("name", ["pixio_vitt16", "pixio_vits16"])
def test_cpu_sizes_run_forward_and_backward(name):
    encoder = create_encoder(name, drop_path_rate=0.1).train()
    images = torch.randn(2, 3, 64, 96)
    features = encoder.forward_features(images)
    loss = features["pooled"].pow(2).mean() + features["patch_tokens"].pow(2).mean()
    loss.backward()
    grads = [p.grad for p in encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert encoder.cls_token.grad.abs().sum() > 0 and encoder.pos_embed.grad.abs().sum() > 0


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="pixio_vith16") as info:
        create_encoder("pixio_vitx16")
    assert "pixio_vitx16" in str(info.value)


def test_forward_features_contract():
    encoder = tiny().eval()
    images = torch.randn(3, 3, 32, 80)
    out = encoder.forward_features(images)
    assert out["cls_tokens"].shape == (3, 8, 64)
    assert out["patch_tokens"].shape == (3, 2 * 5, 64)
    torch.testing.assert_close(out["pooled"], out["cls_tokens"].mean(1))
    # both token sets come after the final LayerNorm: zero mean per token (bias is 0 at init)
    torch.testing.assert_close(out["patch_tokens"].mean(-1), torch.zeros(3, 10), atol=1e-5, rtol=0)


def test_position_embeddings_resize_keeps_class_slots_and_is_identity_at_pretrain_size():
    encoder = tiny()
    cls_pos, patch_pos = encoder.position_embeddings(16, 16)
    torch.testing.assert_close(torch.cat([cls_pos, patch_pos], 1), encoder.pos_embed)
    cls_pos, patch_pos = encoder.position_embeddings(4, 7)
    torch.testing.assert_close(cls_pos, encoder.pos_embed[:, :8])
    assert patch_pos.shape == (1, 28, 64)


def test_intermediates_evenly_spaced_and_last_equals_features():
    assert evenly_spaced_blocks(32, 4) == [7, 15, 23, 31]
    assert evenly_spaced_blocks(24, 4) == [5, 11, 17, 23]
    assert evenly_spaced_blocks(12, 4) == [2, 5, 8, 11]
    encoder = tiny().eval()
    images = torch.randn(2, 3, 48, 48)
    inter = encoder.forward_intermediates(images, 2)
    assert encoder.resolve_blocks(2) == [1, 3]
    final = encoder.forward_features(images)
    for key in ("cls_tokens", "patch_tokens", "pooled"):
        torch.testing.assert_close(inter[-1][key], final[key])
    raw = encoder.forward_intermediates(images, [-1], norm=False)[0]
    torch.testing.assert_close(encoder.norm(raw["patch_tokens"]), final["patch_tokens"])
    with pytest.raises(ValueError, match="out of range"):
        encoder.forward_intermediates(images, [4])


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(3, 32, 32), "rank 3"),
        (torch.randn(1, 4, 32, 32), "3 \\(RGB\\) channels"),
        (torch.randn(1, 3, 32, 40), "multiples of the patch size 16, got 32x40"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "float tensor"),
    ],
)
def test_bad_images_get_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny().forward_features(bad)


def test_drop_path_only_in_training():
    encoder = tiny(drop_path_rate=0.5)
    images = torch.randn(2, 3, 32, 32)
    encoder.eval()
    a, b = encoder(images)["pooled"], encoder(images)["pooled"]
    torch.testing.assert_close(a, b)
    encoder.train()
    torch.manual_seed(1)
    c = encoder(images)["pooled"]
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("size", [(256, 256), (224, 320)])
def test_matches_huggingface_pixio_model(tmp_path, size):
    """Same random weights in transformers' independent PixioModel and ours: same outputs."""
    transformers = pytest.importorskip("transformers")
    config = transformers.PixioConfig(
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        mlp_ratio=4,
        n_cls_tokens=8,
        image_size=256,
        patch_size=16,
        layer_norm_eps=1e-6,
    )
    hf_model = transformers.PixioModel(config).eval()
    with torch.no_grad():  # HF inits pos/cls with randn: make every tensor non-trivial
        for param in hf_model.parameters():
            param.normal_(0, 0.1)
    hf_model.save_pretrained(tmp_path / "hf")
    ours = load_encoder(tmp_path / "hf")
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = hf_model(pixel_values=images)
        got = ours.forward_features(images)
    torch.testing.assert_close(got["pooled"], expected.pooler_output, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        got["cls_tokens"], expected.last_hidden_state[:, :8], atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        got["patch_tokens"], expected.last_hidden_state[:, 8:], atol=1e-5, rtol=1e-4
    )

    # and back: our export loads into transformers and gives the same numbers
    export_hf(ours, tmp_path / "ours_hf")
    reloaded = transformers.PixioModel.from_pretrained(tmp_path / "ours_hf").eval()
    with torch.no_grad():
        again = reloaded(pixel_values=images)
    torch.testing.assert_close(
        again.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=1e-4
    )
