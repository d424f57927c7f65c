"""Our MJCF task: Gymnasium compliance, determinism, the scripted expert, rendering, bad input."""

import gymnasium as gym
import numpy as np
import pixio_envs
import pytest
from gymnasium.utils.env_checker import check_env
from pixio_envs.push_block import PushBlockEnv, PushBlockExpert


@pytest.fixture
def env():
    environment = gym.make("pixio_envs/PushBlock-v0", image_size=64)
    yield environment
    environment.close()


# the MetaWorld ids are checked the same way in test_metaworld_pixels.py
@pytest.mark.parametrize("env_id", sorted(i for i in pixio_envs.ENVS if "MetaWorld" not in i))
def test_every_registered_env_passes_the_gymnasium_checker(env_id):
    environment = gym.make(env_id, image_size=32)
    try:
        check_env(environment.unwrapped, skip_render_check=False)
        assert environment.spec.max_episode_steps == pixio_envs.ENVS[env_id]["max_episode_steps"]
    finally:
        environment.close()


def test_module_syntax_and_spaces(env):
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
    assert obs["proprio"].shape == (4,) and obs["state"].shape == (6,)
    assert set(info) >= {"is_success", "reward_goal", "reward_reach"}
    other = gym.make("pixio_envs:pixio_envs/PushBlock-v0", image_size=32)  # imports the package
    assert other.observation_space["pixels"].shape == (32, 32, 3)
    other.close()


def _rollout(seed, steps=20):
    environment = gym.make("pixio_envs/PushBlock-v0", image_size=48)
    obs, _ = environment.reset(seed=seed)
    frames, states = [obs["pixels"]], [obs["state"]]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs, *_ = environment.step(rng.uniform(-1, 1, 2).astype(np.float32))
        frames.append(obs["pixels"])
        states.append(obs["state"])
    environment.close()
    return np.stack(frames), np.stack(states)


def test_same_seed_same_rollout_and_different_seeds_differ():
    frames_a, states_a = _rollout(3)
    frames_b, states_b = _rollout(3)
    frames_c, states_c = _rollout(4)
    assert np.array_equal(frames_a, frames_b) and np.array_equal(states_a, states_b)
    assert not np.array_equal(states_a[0], states_c[0])


@pytest.mark.parametrize("env_id", ["pixio_envs/PushBlock-v0", "pixio_envs/PushBlock-v1"])
def test_scripted_expert_succeeds(env_id):
    environment = gym.make(env_id, image_size=16)
    expert = PushBlockExpert()
    successes = 0
    for seed in range(10):
        obs, info = environment.reset(seed=seed)
        expert.reset()
        done = False
        while not done:
            obs, _, terminated, truncated, info = environment.step(expert.get_action(obs))
            done = terminated or truncated
        successes += info["is_success"]
    environment.close()
    assert successes >= 9  # 60/60 seeds measured when it was written


def test_the_expert_is_memoryless_and_v1_fixes_the_goal():
    """An action that depends on the observation alone is what behaviour cloning can learn."""
    environment = gym.make("pixio_envs/PushBlock-v1", image_size=16)
    expert = PushBlockExpert()
    obs, _ = environment.reset(seed=3)
    first = expert.get_action(obs)
    for _ in range(20):  # whatever happened since, the same observation gets the same action
        expert.get_action(environment.step(expert.get_action(obs))[0])
    assert np.array_equal(expert.get_action(obs), first)
    for seed in range(20):
        state = environment.reset(seed=seed)[0]["state"]
        np.testing.assert_allclose(state[4:], [0.0, 0.2], atol=1e-6)
        assert np.linalg.norm(state[2:4] - state[4:]) >= 0.12 - 1e-6
    environment.close()
    with pytest.raises(ValueError, match="goal must be"):
        PushBlockEnv(goal=(0.5, 0.0))


def test_pixels_show_the_scene(env):
    obs, _ = env.reset(seed=1)
    frame = obs["pixels"].astype(int)
    blue = (frame[..., 2] > 150) & (frame[..., 0] < 100)  # the puck
    green = (frame[..., 1] > 120) & (frame[..., 0] < 120) & (frame[..., 2] < 150)  # the goal disc
    assert blue.sum() > 3 and green.sum() > 3
    for _ in range(10):
        obs, *_ = env.step(np.array([1.0, 1.0], dtype=np.float32))
    assert not np.array_equal(obs["pixels"], frame.astype(np.uint8))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown camera 'side'"):
        PushBlockEnv(camera="side")
    with pytest.raises(ValueError, match="render_mode"):
        PushBlockEnv(render_mode="human")
    environment = PushBlockEnv(image_size=16)
    environment.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\), got \(3,\)"):
        environment.step(np.zeros(3))
    environment.close()
    with pytest.raises(gym.error.Error):
        gym.make("pixio_envs/PushBlock-v9")
