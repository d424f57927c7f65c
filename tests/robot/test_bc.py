"""Behavior cloning end to end at a tiny size: demos -> features -> MLP -> rollouts in MuJoCo."""

import h5py
import imageio.v3 as iio
import pixio_envs  # noqa: F401
import pytest
import torch
from pixio_envs.push_block import PushBlockExpert

from pixio_core import create_encoder
from pixio_robot.bc import DemoFeatureDataset, train_bc
from pixio_robot.demos import collect_demos
from pixio_robot.evaluation import evaluate
from pixio_robot.features import cached_demo_features
from pixio_robot.policies import make_policy

ENV = "pixio_envs/PushBlock-v0"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bc")
    path = root / "push.hdf5"
    collect_demos(
        ENV,
        PushBlockExpert(),
        path,
        num_demos=4,
        env_kwargs={"image_size": 32},
        valid_fraction=0.25,
        progress=False,
    )
    torch.manual_seed(0)
    encoder = create_encoder("pixio_vitt16", depth=2).eval()
    features, _ = cached_demo_features(
        path, encoder, "tiny", root / "cache", image_size=32, progress=False
    )
    return path, encoder, features


def test_dataset_stacks_history_with_first_frame_padding(setup):
    path, _, features = setup
    dataset = DemoFeatureDataset(str(path), features, frame_history=3, split="train")
    assert len(dataset) > 0
    first = dataset[0]
    assert (
        first["features"].shape == (3, 192)
        and first["proprio"].shape == (4,)
        and first["action"].shape == (2,)
    )
    torch.testing.assert_close(first["features"][0], first["features"][2])  # padded with frame 0
    later = dataset[2]
    demo = dataset.features[0]
    torch.testing.assert_close(later["features"], demo[[0, 1, 2]])
    with pytest.raises(KeyError, match="no cached features"):
        DemoFeatureDataset(str(path), {}, split="train")


def test_dataset_action_chunks_pad_past_the_end(setup):
    path, _, features = setup
    dataset = DemoFeatureDataset(str(path), features, split="train", action_horizon=5)
    actions = dataset.actions[0]
    start = dataset[0]
    torch.testing.assert_close(start["action_chunk"], actions[:5])
    assert not start["action_is_pad"].any()
    last = dataset[len(actions) - 2]  # two real steps left in demo 0
    assert last["action_is_pad"].tolist() == [False, False, True, True, True]
    torch.testing.assert_close(last["action_chunk"][2:], actions[-1].expand(3, -1))


def test_batches_are_the_data_loaders_gathered_at_once(setup):
    from torch.utils.data import DataLoader

    from pixio_robot.bc import _epochs

    path, _, features = setup
    for horizon in (1, 4):
        dataset = DemoFeatureDataset(str(path), features, split="train", action_horizon=horizon)
        loader = DataLoader(
            dataset, batch_size=8, shuffle=True, drop_last=True,
            generator=torch.Generator().manual_seed(5),
        )  # fmt: skip
        gathered = _epochs(dataset, 8, True, torch.Generator().manual_seed(5))
        for _ in range(3):  # epochs: each reshuffles the same way
            for expected in loader:
                batch = next(gathered)
                assert batch.keys() == expected.keys()
                for key, value in expected.items():
                    assert torch.equal(batch[key], value), key


def test_train_then_evaluate_in_mujoco(setup):
    path, encoder, features = setup
    dataset = DemoFeatureDataset(str(path), features, split="train")
    policy = make_policy("mlp", feature_dim=192, proprio_dim=4, action_dim=2)
    losses = train_bc(policy, dataset, steps=150, batch_size=64, progress=False)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    result = evaluate(
        policy,
        encoder,
        ENV,
        {"image_size": 32},
        seeds=[0, 1],
        episodes_per_seed=2,
        image_size=32,
        num_envs=3,
        video_dir=path.parent / "videos",
        videos_per_seed=1,
        progress=False,
    )
    assert set(result.success_per_seed) == {0, 1}
    assert 0.0 <= result.success_rate <= 1.0 and 1 <= result.mean_episode_steps <= 150
    assert [(e["seed"], e["episode"]) for e in result.episodes] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # evaluation never starts from a demo's initial state (demos reset with small seeds)
    with h5py.File(path, "r") as handle:
        demo_seeds = {int(group.attrs["seed"]) for group in handle["data"].values()}
    assert not demo_seeds & {e["reset_seed"] for e in result.episodes}
    assert len(result.videos) == 2
    frames = iio.imread(result.videos[0])
    episode = result.episodes[0]
    assert frames.shape == (episode["steps"], 32, 32, 3)
    # parallel workers give the same rollouts as one env in this process
    single = evaluate(
        policy, encoder, ENV, {"image_size": 32}, seeds=[0, 1], episodes_per_seed=2,
        image_size=32, num_envs=1, progress=False,
    )  # fmt: skip
    rewards = ("sum_reward", "max_reward")  # the same up to float rounding across processes
    strip = [{k: v for k, v in e.items() if k not in rewards} for e in single.episodes]
    assert strip == [{k: v for k, v in e.items() if k not in rewards} for e in result.episodes]
    for key in rewards:
        assert [e[key] for e in single.episodes] == pytest.approx([e[key] for e in result.episodes])


def test_a_non_finite_demo_stops_training_before_the_weights_change(setup):
    from pixio_core.engine import NonFiniteLossError

    path, _, features = setup
    dataset = DemoFeatureDataset(str(path), features, split="train")
    dataset.actions[0][0, 0] = float("nan")  # one bad action in one demo
    policy = make_policy("mlp", feature_dim=192, proprio_dim=4, action_dim=2)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        train_bc(policy, dataset, steps=50, batch_size=len(dataset), progress=False)
    assert all(torch.isfinite(p).all() for p in policy.parameters())
