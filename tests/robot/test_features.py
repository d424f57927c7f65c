"""Frozen-encoder features of demo frames: correctness, caching, keys, bad input."""

import os

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
