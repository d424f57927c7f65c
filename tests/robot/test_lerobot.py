"""LeRobotDataset v3: our writer and reader on real demos, real parquet and real mp4 files."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pixio_envs  # noqa: F401
import pyarrow.parquet as pq
import pytest
import torch
from pixio_envs.push_block import PushBlockExpert

from pixio_core import create_encoder
from pixio_robot.cli import main
from pixio_robot.demos import collect_demos, inspect_demos
from pixio_robot.features import cached_demo_features
from pixio_robot.lerobot import (
    LeRobotReader,
    array_stats,
    demos_as_hdf5,
    hdf5_to_lerobot,
    lerobot_to_hdf5,
    read_tasks,
)

ENV = "pixio_envs/PushBlock-v1"


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("lerobot") / "push.hdf5"
    collect_demos(
        ENV, PushBlockExpert(), path, num_demos=3, env_kwargs={"image_size": 32},
        valid_fraction=0.34, progress=False,
    )  # fmt: skip
    return path


def arrays(path):
    out = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda k, v: out.__setitem__(k, v[:]) if isinstance(v, h5py.Dataset) else None
        )
        groups = ["data", *(f"data/{name}" for name in handle["data"])]
        attrs = {group: dict(handle[group].attrs) for group in groups}
    return out, attrs


def test_layout_follows_lerobot_v3(demos, tmp_path):
    root = hdf5_to_lerobot(demos, tmp_path / "ds", progress=False)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20.0
    assert info["total_episodes"] == 3 and info["total_tasks"] == 1
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == (
        "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    )
    features = info["features"]
    video = features["observation.images.pixels"]
    assert video["dtype"] == "video" and video["shape"] == [32, 32, 3]
    assert video["names"] == ["height", "width", "channels"]
    assert video["info"]["video.codec"] == "av1" and video["info"]["video.fps"] == 20.0
    assert features["observation.state"]["dtype"] == "float32"
    assert features["action"]["shape"] == [2] and features["next.done"]["dtype"] == "bool"
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[name]["shape"] == [1]

    with h5py.File(demos, "r") as handle:
        lengths = [handle[f"data/demo_{i}/actions"].shape[0] for i in range(3)]
    assert info["total_frames"] == sum(lengths)
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert data.num_rows == sum(lengths)
    assert "observation.images.pixels" not in data.column_names  # frames live in the mp4
    assert data.column("index").to_pylist() == list(range(sum(lengths)))
    assert data.schema.field("action").type.value_type.bit_width == 32
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    rows = episodes.to_pylist()
    assert [r["length"] for r in rows] == lengths
    assert [r["dataset_from_index"] for r in rows] == [0, lengths[0], lengths[0] + lengths[1]]
    assert rows[1]["videos/observation.images.pixels/from_timestamp"] == lengths[0] / 20
    assert rows[0]["tasks"] == ["pixio_envs/PushBlock-v1"]
    assert read_tasks(root) == {0: "pixio_envs/PushBlock-v1"}
    # pandas (what LeRobot reads it with) would see the task text as the index named "task"
    pandas_meta = json.loads(pq.read_schema(root / "meta" / "tasks.parquet").metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["task"]

    stats = json.loads((root / "meta" / "stats.json").read_text())
    image = stats["observation.images.pixels"]
    assert np.asarray(image["mean"]).shape == (3, 1, 1)
    assert 0 <= np.min(image["min"]) and np.max(image["max"]) <= 1
    with h5py.File(demos, "r") as handle:
        actions = np.concatenate([handle[f"data/demo_{i}/actions"][:] for i in range(3)])
    assert stats["action"]["count"] == [len(actions)]
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["q50"], np.quantile(actions, 0.5, 0), rtol=1e-5)

    with pytest.raises(FileExistsError, match="already exists"):
        hdf5_to_lerobot(demos, root, progress=False)


@pytest.mark.parametrize("codec", ["av1", "lossless"])
def test_round_trip_keeps_every_array(demos, tmp_path, codec):
    root = hdf5_to_lerobot(demos, tmp_path / "ds", codec=codec, progress=False)
    back = lerobot_to_hdf5(root, tmp_path / "back.hdf5", progress=False)
    before, attrs_before = arrays(demos)
    after, attrs_after = arrays(back)
    assert sorted(before) == sorted(after)
    assert attrs_before == attrs_after  # env_args, total, seeds, num_samples, action_noise
    for key, value in before.items():
        assert after[key].dtype == value.dtype and after[key].shape == value.shape, key
        if "pixels" not in key:
            assert np.array_equal(after[key], value), key  # bit for bit
        elif key.startswith("data/") and "/obs/" in key:
            error = np.abs(after[key].astype(float) - value).mean()
            if codec == "lossless":
                assert error == 0, key
            else:
                assert 0 < error < 8, (key, error)  # AV1 at crf 30 on 32 px: ~3 of 255
    info = inspect_demos(back, env_name=ENV, action_dim=2)
    assert info.num_demos == 3


def test_reader_episodes_and_bad_input(demos, tmp_path):
    root = hdf5_to_lerobot(demos, tmp_path / "ds", codec="lossless", progress=False)
    reader = LeRobotReader(root)
    episode = reader.episode(2)
    with h5py.File(demos, "r") as handle:
        np.testing.assert_array_equal(
            episode["observation.images.pixels"], handle["data/demo_2/obs/pixels"][:]
        )
        np.testing.assert_array_equal(
            episode["observation.state"], handle["data/demo_2/obs/proprio"][:]
        )
    with pytest.raises(FileNotFoundError, match="no meta/info.json"):
        LeRobotReader(tmp_path)
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(ValueError, match="version v2.1"):
        LeRobotReader(root)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    next(root.glob("videos/*/chunk-000/file-000.mp4")).unlink()
    with pytest.raises(FileNotFoundError, match="video file .* is missing"):
        LeRobotReader(root).episode(0)


def test_training_reads_either_layout(demos, tmp_path):
    root = hdf5_to_lerobot(demos, tmp_path / "ds", codec="lossless", progress=False)
    torch.manual_seed(0)
    encoder = create_encoder("pixio_vitt16", depth=1)
    cache = tmp_path / "cache"
    converted = demos_as_hdf5(root, cache, progress=False)
    assert converted.parent == cache and demos_as_hdf5(root, cache, progress=False) == converted
    assert demos_as_hdf5(demos, cache) == demos
    ours, _ = cached_demo_features(demos, encoder, "e", cache, image_size=32, progress=False)
    theirs, _ = cached_demo_features(converted, encoder, "e", cache, image_size=32, progress=False)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert torch.equal(ours[name], theirs[name])  # lossless video: the same features
    with pytest.raises(ValueError, match="not a LeRobot dataset"):
        demos_as_hdf5(tmp_path, cache)


def test_cli_collect_export_and_import(demos, tmp_path, capsys):
    out = tmp_path / "collected"
    main(
        [
            "collect",
            "num_demos=2",
            "env.kwargs.image_size=16",
            "format=lerobot",
            f"output={out}.hdf5",
        ]
    )
    assert LeRobotReader(out).info["total_episodes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collected"]  # no scratch left
    with pytest.raises(SystemExit, match="already exists"):
        main(["collect", "num_demos=2", "format=lerobot", f"output={out}"])

    main(["export-lerobot", str(demos), str(tmp_path / "exported"), "--codec", "h264"])
    assert "exported" in capsys.readouterr().out
    info = json.loads((tmp_path / "exported" / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.pixels"]["info"]["video.codec"] == "h264"
    main(["import-lerobot", str(tmp_path / "exported"), str(tmp_path / "back.hdf5")])
    assert inspect_demos(tmp_path / "back.hdf5").num_demos == 3
    with pytest.raises(SystemExit, match="does not exist"):
        main(["export-lerobot", str(tmp_path / "nope.hdf5"), str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="not a LeRobot dataset"):
        main(["import-lerobot", str(demos), str(tmp_path / "y.hdf5")])


REFERENCE = Path(__file__).parent / "data" / "lerobot_reference"


def test_reads_a_dataset_written_by_lerobot_itself(tmp_path):
    """``data/lerobot_reference`` was written by the ``lerobot`` package (see
    ``data/make_lerobot_reference.py``); our reader gets back what went in."""
    sys.path.insert(0, str(REFERENCE.parent))
    from make_lerobot_reference import LENGTHS, TASKS, reference_frame

    reader = LeRobotReader(REFERENCE)
    assert len(reader) == 3 and reader.video_keys == ["observation.images.cam"]
    assert read_tasks(REFERENCE) == {0: "pick", 1: "place"}
    for episode, length in enumerate(LENGTHS):
        arrays = reader.episode(episode)
        expected = [reference_frame(episode, t) for t in range(length)]
        for key in ("observation.state", "action"):
            assert np.array_equal(arrays[key], np.stack([e[key] for e in expected]))
        frames = np.stack([e["observation.images.cam"] for e in expected])
        assert np.abs(arrays["observation.images.cam"].astype(float) - frames).mean() < 8
        assert arrays["next.done"].tolist() == [t == length - 1 for t in range(length)]
        assert arrays["frame_index"].tolist() == list(range(length))
        assert reader.episodes[episode]["tasks"] == [TASKS[episode]]
    # our own files carry the same statistics names and feature layout as LeRobot's
    theirs = json.loads((REFERENCE / "meta" / "stats.json").read_text())
    assert set(theirs["action"]) == set(array_stats(np.zeros((2, 3))))
    # a foreign dataset converts to HDF5 demos with the camera as obs/pixels
    back = lerobot_to_hdf5(REFERENCE, tmp_path / "ref.hdf5", progress=False)
    info = inspect_demos(back)
    assert info.num_demos == 3 and info.obs_shapes["pixels"] == (48, 64, 3)
    assert info.obs_shapes["proprio"] == (3,) and info.action_dim == 3
