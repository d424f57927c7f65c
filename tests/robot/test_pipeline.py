"""The robot jobs end to end at a tiny size: pixio-robot train / eval / compare and bad input."""

import json

import gymnasium as gym
import pixio_envs  # noqa: F401
import pytest
import torch
from pixio_envs.push_block import PushBlockExpert

from pixio_core import create_encoder, save_encoder
from pixio_core.recording import recording_rows
from pixio_robot.checkpoint import check_policy_fits_env, load_policy
from pixio_robot.cli import main
from pixio_robot.demos import collect_demos
from pixio_robot.evaluation import make_env

ENV = "pixio_envs/PushBlock-v1"
TINY_ACT = [
    "policy=act",
    "policy.config.dim_model=32",
    "policy.config.n_heads=2",
    "policy.config.dim_feedforward=64",
    "policy.config.chunk_size=4",
    "policy.config.n_action_steps=2",
]


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    path = root / "push.hdf5"
    collect_demos(
        ENV, PushBlockExpert(), path, num_demos=3, env_kwargs={"image_size": 32},
        valid_fraction=0.0, progress=False,
    )  # fmt: skip
    torch.manual_seed(3)
    save_encoder(create_encoder("pixio_vitt16", depth=2), root / "encoder")
    return path


def tiny_encoder(demos):
    return demos.parent / "encoder"


def train_args(demos, output, *extra):
    return [
        "train",
        f"demos={demos}",
        f"encoder.source={tiny_encoder(demos)}",
        "encoder.image_size=32",
        "steps=20",
        "batch_size=32",
        f"output={output}",
        f"cache_dir={demos.parent / 'cache'}",
        *extra,
    ]


def test_train_then_eval_cli(demos, tmp_path, capsys):
    policy_dir = tmp_path / "policy"
    main(train_args(demos, policy_dir, *TINY_ACT))
    assert "trained act" in capsys.readouterr().out
    policy, config = load_policy(policy_dir)
    assert config["encoder"]["source"] == str(tiny_encoder(demos))
    assert config["env"] == {"id": ENV, "kwargs": {"image_size": 32}}
    assert policy.config.chunk_size == 4 and config["train"]["num_demos"] == 3
    assert (policy_dir / "log.jsonl").is_file() and (policy_dir / "run_config.yaml").is_file()
    with pytest.raises(SystemExit, match="already holds a policy"):
        main(train_args(demos, policy_dir, *TINY_ACT))

    out = tmp_path / "eval"
    eval_args = [
        "eval", f"policies=[{policy_dir}]", "seeds=[0]", "episodes_per_seed=2",
        "num_envs=1", "videos_per_seed=1", "recording=true", f"output={out}",
    ]  # fmt: skip
    main(eval_args)
    printed = capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 1 and rows[0]["name"] == "policy" and rows[0]["env_id"] == ENV
    assert set(rows[0]["success_per_seed"]) == {"0"} and len(rows[0]["episodes"]) == 2
    assert "| policy | pixio_envs/PushBlock-v1 |" in (out / "results.md").read_text()
    assert "results.md" in printed
    assert len(list((out / "videos").glob("*.mp4"))) == 1  # videos_per_seed=1
    # the recorded episodes (one per seed) as a Rerun recording: frames, proprio, actions, outcome
    chunks = recording_rows(out / "recordings" / "policy.rrd")
    steps = rows[0]["episodes"][0]["steps"]
    assert {k: v for k, v in chunks.items() if k.startswith("/episode_0/")} == {
        "/episode_0/camera": steps, "/episode_0/proprio": steps, "/episode_0/action": steps,
        "/episode_0/reward": steps, "/episode_0/outcome": 1,
    }  # fmt: skip
    assert "/episode_1/camera" not in chunks  # videos_per_seed=1: one episode of the one seed
    # LeRobot's eval_info.json shape beside ours
    info = json.loads((out / "eval_info" / "policy" / "eval_info.json").read_text())
    episodes = info["per_episode"]
    assert [e["seed"] for e in episodes] == [e["reset_seed"] for e in rows[0]["episodes"]]
    metrics = info["per_task"][0]["metrics"]
    assert metrics["successes"] == [e["success"] for e in rows[0]["episodes"]]
    assert metrics["sum_rewards"] == [e["sum_reward"] for e in episodes]
    assert info["per_group"][ENV]["pc_success"] == info["overall"]["pc_success"]
    assert info["overall"]["pc_success"] == pytest.approx(100 * rows[0]["success_rate"])
    assert info["overall"]["n_episodes"] == 2 and info["overall"]["eval_s"] > 0
    assert all(e["max_reward"] <= 0 and e["sum_reward"] <= e["max_reward"] for e in episodes)
    before = (out / "results.json").read_bytes()
    with pytest.raises(SystemExit, match="results.json exists"):
        main(eval_args)
    assert (out / "results.json").read_bytes() == before


def test_int8_encoder_is_saved_with_the_policy_and_used_to_evaluate(demos, tmp_path):
    from pixio_robot.pipeline import evaluate_policy

    policy_dir = tmp_path / "int8"
    main(train_args(demos, policy_dir, "encoder.precision=int8"))
    _, config = load_policy(policy_dir)
    assert config["encoder"]["precision"] == "int8"
    caches = sorted(p.name for p in (demos.parent / "cache").iterdir())
    result, _ = evaluate_policy(policy_dir, [0], 1, progress=False)
    with pytest.warns(UserWarning, match="trained on int8 features and is evaluated on fp32"):
        override, _ = evaluate_policy(policy_dir, [0], 1, progress=False, encoder_precision="fp32")
    assert len(result.episodes) == len(override.episodes) == 1
    with pytest.raises(ValueError, match="encoder precision must be one of"):
        evaluate_policy(policy_dir, [0], 1, progress=False, encoder_precision="fp16")
    with pytest.raises(SystemExit, match=r"one of \('fp32', 'int8'\), got 'int4'"):
        main(train_args(demos, tmp_path / "int4", "encoder.precision=int4"))
    assert not (tmp_path / "int4").exists()
    assert sorted(p.name for p in (demos.parent / "cache").iterdir()) == caches


def test_compare_runs_the_same_protocol_for_each_encoder(demos, tmp_path):
    torch.manual_seed(4)
    other = save_encoder(create_encoder("pixio_vitt16", depth=2), tmp_path / "other")
    out = tmp_path / "compare"
    main(
        [
            "compare",
            f"demos={demos}",
            f"encoders=[{tiny_encoder(demos)},{other}]",
            "encoder.image_size=32",
            "steps=10",
            "batch_size=32",
            "seeds=[0]",
            "episodes_per_seed=1",
            "num_envs=1",
            "videos_per_seed=0",
            f"output={out}",
            f"cache_dir={tmp_path / 'cache'}",
        ]
    )
    rows = json.loads((out / "results.json").read_text())
    assert [row["encoder"]["source"] for row in rows] == [str(tiny_encoder(demos)), str(other)]
    assert rows[0]["name"] != rows[1]["name"]
    # the same initial states for every encoder
    assert rows[0]["episodes"][0]["reset_seed"] == rows[1]["episodes"][0]["reset_seed"]
    assert {row["encoder"]["embed_dim"] for row in rows} == {192}
    assert not (out / "videos").exists()


def test_policies_and_demos_that_do_not_fit(demos, tmp_path):
    policy_dir = tmp_path / "mlp"
    main(train_args(demos, policy_dir))
    _, config = load_policy(policy_dir)
    metaworld = make_env("pixio_envs/MetaWorld-drawer-open-v3", {"image_size": 16})
    try:
        with pytest.raises(ValueError, match="trained on 'pixio_envs/PushBlock-v1'"):
            check_policy_fits_env(config, metaworld)
        with pytest.raises(ValueError, match="outputs actions of dimension 2"):
            check_policy_fits_env(
                {**config, "env": {"id": "pixio_envs/MetaWorld-drawer-open-v3"}}, metaworld
            )
    finally:
        metaworld.close()
    push = gym.make(ENV, image_size=16)
    with pytest.raises(ValueError, match="reads proprio of dimension 7"):
        check_policy_fits_env({**config, "proprio_dim": 7}, push)
    push.close()
    # demos of one env cannot train a policy for another
    with pytest.raises(SystemExit, match="holds demos of 'pixio_envs/PushBlock-v1'"):
        main(train_args(demos, tmp_path / "x", "env=metaworld"))
    with pytest.raises(ValueError, match="unknown env 'pixio_envs/Nope-v0'"):
        make_env("pixio_envs/Nope-v0", {})
    with pytest.raises(SystemExit, match="does not exist"):
        main(train_args(tmp_path / "missing.hdf5", tmp_path / "y"))
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not an hdf5 file")
    with pytest.raises(SystemExit, match="not a readable HDF5 file"):
        main(train_args(broken, tmp_path / "z"))
    # a pretraining checkpoint is not a policy
    encoder_dir = save_encoder(create_encoder("pixio_vitt16", depth=1), tmp_path / "enc")
    with pytest.raises(ValueError, match="not a policy checkpoint"):
        load_policy(encoder_dir)
    with pytest.raises(SystemExit, match="usage: pixio-robot"):
        main(["fly"])


def test_demo_command_collects_trains_and_evaluates(demos, tmp_path, capsys):
    args = [
        "demo",
        f"output={tmp_path / 'demo'}",
        f"encoder.source={tiny_encoder(demos)}",
        "encoder.image_size=32",
        "env.kwargs.image_size=32",
        "num_demos=2",
        "steps=10",
        "batch_size=32",
        "seeds=[0]",
        "episodes_per_seed=1",
        "num_envs=1",
        "baselines=[random:pixio_vitt16]",
    ]
    main(args)
    out = capsys.readouterr().out
    assert "expert: 2 successes" in out
    assert f"encoder  {tiny_encoder(demos)}: success rate" in out
    assert "baseline random:pixio_vitt16: success rate" in out
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [row["encoder"]["source"] for row in rows] == [
        str(tiny_encoder(demos)),
        "random:pixio_vitt16",
    ]
    collected = tmp_path / "demo" / "demos" / "push_block_32px_2.hdf5"  # the count in the name
    assert collected.is_file()
    # a second run reuses the demos and rebuilds the rest; a file of another count says so
    main([*args, f"demos={collected}", "num_demos=3"])
    out = capsys.readouterr().out
    assert "expert:" not in out
    assert f"using the 2 demos already in {collected} (num_demos=3 applies" in out
