"""Frozen-encoder features of demo frames: correctness, caching, keys, bad input."""

import os

import numpy as np
import pixio_envs  # noqa: F401
import pytest
import torch
from pixio_envs.push_block import PushBlockExpert

from pixio_core import create_encoder
from pixio_robot.demos import collect_demos
from pixio_robot.features import cached_demo_features, embed_frames, preprocess_frames


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "push.hdf5"
    collect_demos(
        "pixio_envs/PushBlock-v0",
        PushBlockExpert(),
        path,
        num_demos=2,
        env_kwargs={"image_size": 32},
        valid_fraction=0.5,
        progress=False,
    )
    return path


def test_features_equal_the_encoder_on_each_frame_and_are_cached(demos, tmp_path):
    import h5py

    torch.manual_seed(0)
    encoder = create_encoder("pixio_vitt16", depth=2).eval()
    features, stats = cached_demo_features(
        demos, encoder, "tiny-a", tmp_path, image_size=32, progress=False
    )
    with h5py.File(demos, "r") as handle:
        frames = handle["data/demo_1/obs/pixels"][:]
    assert (
        features["demo_1"].shape == (len(frames), 192)
        and stats["cached"] == 0.0
        and stats["images_per_s"] > 0
    )
    with torch.no_grad():
        expected = encoder.forward_features(preprocess_frames(frames[:3], 32))["pooled"]
    torch.testing.assert_close(features["demo_1"][:3], expected)

    files = sorted(tmp_path.glob("features_*.safetensors"))
    stamp = files[0].stat().st_mtime_ns
    again, stats = cached_demo_features(
        demos, encoder, "tiny-a", tmp_path, image_size=32, progress=False
    )
    assert stats["cached"] == 1.0 and files[0].stat().st_mtime_ns == stamp
    torch.testing.assert_close(again["demo_0"], features["demo_0"])
    # another encoder (or a changed demo file) gets its own cache entry
    cached_demo_features(demos, encoder, "tiny-b", tmp_path, image_size=32, progress=False)
    os.utime(demos)
    cached_demo_features(demos, encoder, "tiny-a", tmp_path, image_size=32, progress=False)
    assert len(list(tmp_path.glob("features_*.safetensors"))) == 3


def test_patch_features_and_resizing():
    encoder = create_encoder("pixio_vitt16", depth=1).eval()
    frames = torch.randint(0, 255, (3, 40, 40, 3), dtype=torch.uint8).numpy()
    patches = embed_frames(encoder, frames, image_size=48, feature="patch")
    assert patches.shape == (3, 9, 192)
    with pytest.raises(ValueError, match="feature must be one of"):
        embed_frames(encoder, frames, 48, feature="cls")


def test_grid_features_are_the_mean_patch_token_of_each_image_quarter():
    torch.manual_seed(0)
    encoder = create_encoder("pixio_vitt16", depth=1).eval()
    frames = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8).numpy()
    grid = embed_frames(encoder, frames, image_size=64, feature="grid")
    patches = embed_frames(encoder, frames, image_size=64, feature="patch").reshape(2, 4, 4, 192)
    assert grid.shape == (2, 4 * 192)
    quarters = [patches[:, r : r + 2, c : c + 2].mean((1, 2)) for r in (0, 2) for c in (0, 2)]
    torch.testing.assert_close(grid, torch.cat(quarters, dim=1))
    # the top-left cell moves when only the top-left corner of the frame changes
    changed = frames.copy()
    changed[:, :16, :16] = 255 - changed[:, :16, :16]
    other = embed_frames(encoder, changed, image_size=64, feature="grid").reshape(2, 4, 192)
    assert (other[:, 0] - grid.reshape(2, 4, 192)[:, 0]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="expected uint8 frames"):
        preprocess_frames(frames.astype("float32"), 48)


def test_missing_observation_key_is_named(demos, tmp_path):
    encoder = create_encoder("pixio_vitt16", depth=1)
    with pytest.raises(KeyError, match="obs/rgb"):
        cached_demo_features(
            demos, encoder, "x", tmp_path, obs_key="rgb", image_size=32, progress=False
        )


def test_random_encoder_reference_is_reproducible():
    from pixio_core.loading import load_frozen_encoder

    first, identity = load_frozen_encoder("random:pixio_vitt16", seed=5)
    again, _ = load_frozen_encoder("random:pixio_vitt16", seed=5)
    other, other_identity = load_frozen_encoder("random:pixio_vitt16", seed=6)
    assert identity == "random:pixio_vitt16:seed5" and other_identity != identity
    torch.testing.assert_close(first.pos_embed, again.pos_embed)
    assert not torch.allclose(first.pos_embed, other.pos_embed)
    assert not any(p.requires_grad for p in first.parameters()) and not first.training
    with pytest.raises(ValueError, match="pixio_vitt16"):
        load_frozen_encoder("random:pixio_vit_nope")


def test_int8_encoder_features_are_close_to_fp32():
    from pixio_core.loading import load_frozen_encoder
    from pixio_core.quantization import quantize_linear_int8

    fp32, identity = load_frozen_encoder("random:pixio_vitt16", seed=5)
    int8, int8_identity = load_frozen_encoder("random:pixio_vitt16", seed=5, precision="int8")
    assert int8_identity == f"{identity}:int8"  # cached apart from the fp32 features
    assert not any(isinstance(m, torch.nn.Linear) for m in int8.modules())
    assert sum(isinstance(m, torch.nn.Linear) for m in fp32.modules()) == 12 * 4
    again = quantize_linear_int8(fp32)  # a copy: the fp32 encoder keeps its layers
    assert sum(isinstance(m, torch.nn.Linear) for m in fp32.modules()) == 12 * 4
    shipped, _ = load_frozen_encoder("pixio_sim_vitt16")
    shipped_int8, _ = load_frozen_encoder("pixio_sim_vitt16", precision="int8")
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    # measured: 0.3-0.4 % for the shipped encoder, 2.5-2.9 % for the random one
    pairs = [(shipped, shipped_int8, 0.01), (fp32, int8, 0.05), (fp32, again, 0.05)]
    with torch.no_grad():
        for feature in ("pooled", "patch"):
            for full, quantized_encoder, bound in pairs:
                reference = embed_frames(full, frames, 64, feature)
                quantized = embed_frames(quantized_encoder, frames, 64, feature)
                assert quantized.shape == reference.shape and quantized.dtype == torch.float32
                error = (quantized - reference).norm() / reference.norm()
                assert 0 < error < bound, (feature, float(error))
    with pytest.raises(ValueError, match=r"one of \('fp32', 'int8'\), got 'int4'"):
        load_frozen_encoder("random:pixio_vitt16", precision="int4")
    with pytest.raises(ValueError, match="runs on the CPU, not on meta"):
        load_frozen_encoder("random:pixio_vitt16", device="meta", precision="int8")
