"""pixio-robot frames: simulator frames as WebDataset shards, deterministic, read by pretraining."""

import hashlib
import json
import tarfile

import numpy as np
import pytest

from pixio_core.cli.console import compose_config
from pixio_core.data.folder import pretrain_transform
from pixio_core.data.shards import ShardDataset, expand_urls
from pixio_robot.frames import MANIFEST, FrameSettings, env_frames, write_frame_shards


def digest(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.tar"))
    }


def settings(**overrides):
    base = dict(sources={"push_block": 14, "rooms": 8}, image_size=32, samples_per_shard=10)
    return FrameSettings(**{**base, **overrides})


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("frames")
    write_frame_shards(out, settings(), progress=False)
    return out


def test_shards_hold_every_frame_and_a_manifest(frames_dir):
    manifest = json.loads((frames_dir / MANIFEST).read_text())
    assert manifest["frames"] == 22
    assert manifest["frames_per_source"] == {"push_block": 14, "rooms": 8}
    assert manifest["shards"] == ["frames-000000.tar", "frames-000001.tar", "frames-000002.tar"]
    sources = []
    for shard in manifest["shards"]:
        with tarfile.open(frames_dir / shard) as tar:
            names = tar.getnames()
            assert all(m.mtime == 0 for m in tar.getmembers())
            metas = [json.loads(tar.extractfile(n).read()) for n in names if n.endswith(".json")]
        assert len([n for n in names if n.endswith(".png")]) == len(metas)
        sources += [m["source"] for m in metas]
    # interleaved in proportion, not one source after the other
    assert sources.count("rooms") == 8 and "rooms" in sources[:4]


def test_same_seed_same_bytes_other_seed_other_frames(frames_dir, tmp_path):
    write_frame_shards(tmp_path / "again", settings(), progress=False)
    assert digest(tmp_path / "again") == digest(frames_dir)
    write_frame_shards(tmp_path / "other", settings(seed=1), progress=False)
    assert digest(tmp_path / "other") != digest(frames_dir)


def test_pretraining_reads_the_folder(frames_dir):
    urls = expand_urls(str(frames_dir))
    assert len(urls) == 3
    stream = iter(ShardDataset(urls, pretrain_transform(32), seed=0, shuffle_buffer=4))
    item = next(stream)
    assert item["image"].shape == (3, 32, 32) and int(item["skipped"]) == 0


def test_camera_jitter_moves_the_view_and_noise_is_seeded():
    import gymnasium as gym
    from pixio_envs.push_block import PushBlockExpert

    still = settings(camera_jitter=0.0, action_noise=0.0)
    frame, meta = next(
        env_frames("pixio_envs/PushBlock-v0", {}, PushBlockExpert(), still, "push_block")
    )
    assert meta == {"episode": 0, "step": 0}
    # without jitter the first frame is the env's own reset frame for the episode's seed
    from pixio_robot.frames import _episode_rng

    env = gym.make("pixio_envs/PushBlock-v0", image_size=32)
    rng = _episode_rng(0, "push_block", None, 0)
    rng.uniform(-1, 1, 3)  # the jitter draw (scaled by 0 here)
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    env.close()
    np.testing.assert_array_equal(frame, obs["pixels"])
    moved, _ = next(
        env_frames("pixio_envs/PushBlock-v0", {}, PushBlockExpert(), settings(), "push_block")
    )
    assert np.abs(moved.astype(int) - frame.astype(int)).mean() > 1.0


def test_existing_shards_are_kept_unless_overwrite(frames_dir, tmp_path):
    out = tmp_path / "mine"
    write_frame_shards(out, settings(sources={"push_block": 3}), progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=true"):
        write_frame_shards(out, settings(sources={"push_block": 3}), progress=False)
    write_frame_shards(out, settings(sources={"push_block": 2}), overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / MANIFEST).read_text())["frames"] == 2


@pytest.mark.parametrize(
    "sources, match",
    [
        ({"pushblock": 3}, "unknown frame source"),
        ({"push_block": -1}, "frame count"),
        ({"push_block": 0}, "no frames requested"),
        ({"metaworld": 5}, "map task names"),
    ],
)
def test_bad_sources_are_refused(sources, match):
    with pytest.raises(ValueError, match=match):
        FrameSettings(sources=sources)


def test_cli_renders_metaworld_and_names_a_bad_task(tmp_path, capsys):
    from pixio_robot.cli import frames

    out = tmp_path / "mw"
    frames(
        compose_config(
            "robot_frames",
            [f"output={out}", "sources.push_block=0", "sources.metaworld={hammer-v3:3}",
             "image_size=32", "camera_jitter=0.05"],
        )
    )  # fmt: skip
    assert "3 frames (metaworld:hammer-v3 3) in 1 shards" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no-such-task"):
        frames(
            compose_config(
                "robot_frames",
                [f"output={tmp_path / 'bad'}", "sources.push_block=0",
                 "sources.metaworld={no-such-task:3}", "image_size=32"],
            )
        )  # fmt: skip
    assert not list((tmp_path / "bad").glob("*.tar"))


def test_pixio_pretrain_trains_on_sim_frames(frames_dir, tmp_path, capsys):
    from pixio_core.cli.pretrain import run as pretrain

    out = pretrain(
        compose_config(
            "pretrain",
            [f"output_dir={tmp_path / 'run'}", "data=sim_frames", f"data.urls={frames_dir}",
             "data.num_workers=0", "model.image_size=64", "train.total_steps=2",
             "train.global_batch_size=4", "train.checkpoint_every=2", "train.recon_every=2",
             "optim.warmup_steps=1", "precision=fp32"],
        )
    )  # fmt: skip
    assert (out / "checkpoints" / "step_00000002").is_dir()
    assert "3 WebDataset shards" in capsys.readouterr().out
