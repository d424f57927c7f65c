"""Scripted-expert demos written in robomimic's HDF5 layout, read back and validated."""

import json

import h5py
import numpy as np
import pixio_envs  # noqa: F401  (registers the envs)
import pytest
from pixio_envs.push_block import PushBlockExpert

from pixio_robot.demos import collect_demos, inspect_demos

ENV = "pixio_envs/PushBlock-v0"


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "push.hdf5"
    stats = collect_demos(
        ENV,
        PushBlockExpert(),
        path,
        num_demos=4,
        env_kwargs={"image_size": 32},
        valid_fraction=0.25,
        progress=False,
    )
    assert stats.successes == 4 and stats.attempts >= 4
    return path, stats


def test_layout_matches_robomimic(demo_file):
    path, stats = demo_file
    with h5py.File(path, "r") as handle:
        data = handle["data"]
        assert sorted(data) == ["demo_0", "demo_1", "demo_2", "demo_3"]
        assert data.attrs["total"] == stats.samples
        env_args = json.loads(data.attrs["env_args"])
        assert env_args["env_name"] == ENV and env_args["env_kwargs"] == {"image_size": 32}
        demo = data["demo_0"]
        steps = demo.attrs["num_samples"]
        assert (
            demo["obs/pixels"].shape == (steps, 32, 32, 3) and demo["obs/pixels"].dtype == np.uint8
        )
        assert demo["next_obs/proprio"].shape == (steps, 4)
        assert demo["actions"].shape == (steps, 2) and demo["rewards"].shape == (steps,)
        assert demo["dones"][-1] == 1 and demo["dones"][:-1].sum() == 0
        # next_obs of step t is obs of step t + 1
        np.testing.assert_array_equal(demo["next_obs/state"][:-1], demo["obs/state"][1:])
        train = sorted(name.decode() for name in handle["mask/train"][:])
        valid = sorted(name.decode() for name in handle["mask/valid"][:])
        assert len(valid) == 1 and sorted(train + valid) == sorted(data)
        assert sum(data[name].attrs["num_samples"] for name in data) == stats.samples


def test_replaying_the_actions_reproduces_the_demo(demo_file):
    import gymnasium as gym

    path, _ = demo_file
    with h5py.File(path, "r") as handle:
        demo = handle["data/demo_1"]
        seed, actions, states = (
            int(demo.attrs["seed"]),
            demo["actions"][:],
            demo["next_obs/state"][:],
        )
    env = gym.make(ENV, image_size=32)
    env.reset(seed=seed)
    for action, expected in zip(actions, states, strict=True):
        obs, *_ = env.step(action)
        np.testing.assert_allclose(obs["state"], expected, atol=1e-6)
    env.close()


def test_inspect_and_bad_files(demo_file, tmp_path):
    path, _ = demo_file
    info = inspect_demos(path, env_name=ENV, action_dim=2)
    assert info.num_demos == 4 and info.obs_keys == ("pixels", "proprio", "state")
    with pytest.raises(ValueError, match="not 'Meta-World/MT1'"):
        inspect_demos(path, env_name="Meta-World/MT1")
    with pytest.raises(ValueError, match="dimension 2, the env expects 4"):
        inspect_demos(path, action_dim=4)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inspect_demos(tmp_path / "missing.hdf5")
    (tmp_path / "junk.hdf5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        inspect_demos(tmp_path / "junk.hdf5")
    with h5py.File(tmp_path / "empty.hdf5", "w") as handle:
        handle.create_group("other")
    with pytest.raises(ValueError, match="not a robomimic-layout demo file"):
        inspect_demos(tmp_path / "empty.hdf5")


def test_existing_files_are_never_overwritten(demo_file):
    path, _ = demo_file
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        collect_demos(
            ENV, PushBlockExpert(), path, num_demos=1, env_kwargs={"image_size": 32}, progress=False
        )
    assert path.read_bytes() == before


def test_a_failing_expert_is_a_clear_error(tmp_path):
    class Idle:
        def reset(self):
            pass

        def get_action(self, obs):
            return np.zeros(2, dtype=np.float32)

    with pytest.raises(RuntimeError, match="succeeded in 0 of 2 episodes"):
        collect_demos(
            ENV,
            Idle(),
            tmp_path / "x.hdf5",
            num_demos=1,
            env_kwargs={"image_size": 16},
            max_attempts=2,
            progress=False,
        )
    assert not (tmp_path / "x.hdf5").exists() and not list(tmp_path.iterdir())


def test_robomimic_sequence_dataset_reads_our_file(demo_file):
    """robomimic's own SequenceDataset loads the file: the layout is really robomimic's."""
    ObsUtils = pytest.importorskip("robomimic.utils.obs_utils")
    from robomimic.utils.dataset import SequenceDataset

    path, stats = demo_file
    ObsUtils.initialize_obs_utils_with_obs_specs(
        {"obs": {"low_dim": ["proprio", "state"], "rgb": ["pixels"]}}
    )
    dataset = SequenceDataset(
        hdf5_path=str(path),
        obs_keys=("proprio", "state", "pixels"),
        dataset_keys=("actions", "rewards", "dones"),
        frame_stack=3,
        seq_length=1,
        hdf5_cache_mode=None,
        filter_by_attribute="train",
    )
    sample = dataset[0]
    assert sample["obs"]["state"].shape == (3, 6) and sample["actions"].shape[-1] == 2
    assert sample["obs"]["pixels"].shape[0] == 3
    with h5py.File(path, "r") as handle:
        train = [name.decode() for name in handle["mask/train"][:]]
        expected = sum(int(handle[f"data/{name}"].attrs["num_samples"]) for name in train)
    assert len(dataset) == expected


def test_collect_cli(tmp_path, capsys):
    from pixio_robot.cli import main

    output = tmp_path / "demos.hdf5"
    main(["collect", "num_demos=2", f"output={output}", "env.kwargs.image_size=16"])
    assert inspect_demos(output, env_name="pixio_envs/PushBlock-v1").num_demos == 2  # the default
    assert "kept 2 successful" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists"):
        main(["collect", "num_demos=2", f"output={output}", "env.kwargs.image_size=16"])
    with pytest.raises(SystemExit, match="usage: pixio-robot"):
        main(["fly"])


def test_collect_cli_on_a_metaworld_task(tmp_path):
    from pixio_robot.cli import main

    output = tmp_path / "mw.hdf5"
    main(
        [
            "collect",
            "env=metaworld",
            "env.kwargs.task=button-press-topdown-v3",
            "env.kwargs.image_size=16",
            "num_demos=1",
            f"output={output}",
        ]
    )
    info = inspect_demos(output, env_name="pixio_envs/MetaWorld", action_dim=4)
    assert info.env_kwargs["task"] == "button-press-topdown-v3" and info.obs_keys == (
        "pixels",
        "proprio",
        "state",
    )


def _broken(demo_file, tmp_path, name, change):
    import shutil

    path = tmp_path / f"{name}.hdf5"
    shutil.copy(demo_file[0], path)
    with h5py.File(path, "a") as handle:
        change(handle)
    return path


def _replace(handle, key, values):
    del handle[key]
    handle[key] = values


BREAKAGES = {
    "nan_action": (
        lambda h: h["data/demo_2/actions"].__setitem__((3, 0), np.nan),
        r"demo_2/actions holds non-finite",
    ),
    "short_obs": (
        lambda h: _replace(h, "data/demo_1/obs/proprio", h["data/demo_1/obs/proprio"][:-1]),
        r"demo_1/obs/proprio has \d+ steps, actions \d+",
    ),
    "other_image_size": (
        lambda h: _replace(h, "data/demo_3/obs/pixels", h["data/demo_3/obs/pixels"][:, :16]),
        r"demo_3/obs/pixels is uint8 \(16, 32, 3\), the first demo's uint8 \(32, 32, 3\)",
    ),
    "float_pixels": (
        lambda h: [
            _replace(h, f"data/demo_{i}/obs/pixels", h[f"data/demo_{i}/obs/pixels"][:] / 255.0)
            for i in range(4)
        ],
        r"demo_0/obs/pixels must be uint8 images",
    ),
    "no_actions": (lambda h: h.__delitem__("data/demo_1/actions"), r"a demo lacks"),
    "bad_mask": (
        lambda h: _replace(h, "mask/train", np.array([b"demo_0", b"demo_9"])),
        r"mask/train names demos that do not exist: \['demo_9'\]",
    ),
    "bad_env_args": (
        lambda h: h["data"].attrs.__setitem__("env_args", "{not json"),
        r"env_args'\] is not JSON",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_every_demo_is_checked_up_front(demo_file, tmp_path, name):
    change, message = BREAKAGES[name]
    path = _broken(demo_file, tmp_path, name, change)
    with pytest.raises(ValueError, match=message) as error:
        inspect_demos(path, env_name=ENV)
    assert str(path) in str(error.value)


def test_action_noise_records_the_expert_actions_at_the_perturbed_states(tmp_path):
    path = tmp_path / "noisy.hdf5"
    collect_demos(
        "pixio_envs/PushBlock-v1", PushBlockExpert(), path, num_demos=1,
        env_kwargs={"image_size": 16}, action_noise=0.3, progress=False,
    )  # fmt: skip
    expert = PushBlockExpert()
    with h5py.File(path, "r") as handle:
        demo = handle["data/demo_0"]
        assert demo.attrs["action_noise"] == pytest.approx(0.3)
        states, actions = demo["obs/state"][:], demo["actions"][:]
        labels = np.stack([expert.get_action({"state": state}) for state in states])
        np.testing.assert_allclose(actions, labels, atol=1e-6)  # the clean expert labels
    clean = tmp_path / "clean.hdf5"
    collect_demos(
        "pixio_envs/PushBlock-v1", PushBlockExpert(), clean, num_demos=1,
        env_kwargs={"image_size": 16}, progress=False,
    )  # fmt: skip
    with h5py.File(clean, "r") as handle:
        plain = handle["data/demo_0/obs/state"][:]
    steps = min(len(plain), len(states))
    assert not np.allclose(plain[1:steps], states[1:steps])  # the noise moved the pusher
