"""Policies over every registry entry: shapes, learning, normalization, history, round trip."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from pixio_robot.policies import POLICIES, make_policy
from pixio_robot.policies.mlp.configuration_mlp import MLPPolicyConfig

SMALL = {
    "act": {
        "dim_model": 32,
        "n_heads": 4,
        "dim_feedforward": 64,
        "chunk_size": 4,
        "n_action_steps": 2,
    }
}


def batch(size=32, generator=None, chunk=4):
    features = torch.randn(size, 3, 8, generator=generator)
    proprio = torch.randn(size, 4, generator=generator)
    # an action that depends on the newest frame and the proprio: learnable
    action = torch.stack(
        [features[:, -1, 0] + proprio[:, 0], features[:, 0, 1] - proprio[:, 1]], dim=1
    )
    action = action * 3 + 5
    # chunks: the action drifts linearly over the future steps; the last step is padding
    steps = torch.arange(chunk).view(1, chunk, 1)
    return {
        "features": features,
        "proprio": proprio,
        "action": action,
        "action_chunk": action.unsqueeze(1) + 0.5 * steps,
        "action_is_pad": (steps.squeeze(-1) == chunk - 1).expand(size, chunk),
    }


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_learns_a_simple_mapping(name):
    torch.manual_seed(0)
    policy = make_policy(name, feature_dim=8, proprio_dim=4, action_dim=2, **SMALL.get(name, {}))
    data = batch(256, torch.Generator().manual_seed(0))
    actions = data["action"]
    policy.set_normalization({"action": (actions.mean(0), actions.std(0))})
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss, info = policy(data)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first and info


def test_select_action_uses_history_and_denormalizes():
    torch.manual_seed(0)
    policy = make_policy("mlp", feature_dim=8, proprio_dim=4, action_dim=2).eval()
    policy.set_normalization({"action": (torch.tensor([10.0, -10.0]), torch.tensor([2.0, 2.0]))})
    frame = torch.randn(2, 8)  # a batch of two environments
    proprio = torch.randn(2, 4)
    policy.reset()
    first = policy.select_action({"features": frame, "proprio": proprio})
    direct = policy._predict(frame.unsqueeze(1).repeat(1, 3, 1), proprio) * 2 + torch.tensor(
        [10.0, -10.0]
    )
    torch.testing.assert_close(first, direct)
    second = policy.select_action({"features": torch.randn(2, 8), "proprio": proprio})
    assert not torch.allclose(first, second)
    policy.reset()
    torch.testing.assert_close(policy.select_action({"features": frame, "proprio": proprio}), first)
    # each environment's action depends on its own frames only
    alone = policy.reset() or policy.select_action({"features": frame[1:], "proprio": proprio[1:]})
    torch.testing.assert_close(alone, first[1:])


def test_weights_and_statistics_round_trip(tmp_path):
    policy = make_policy("mlp", feature_dim=8, proprio_dim=4, action_dim=2)
    policy.set_normalization({"feature": (torch.ones(8), torch.full((8,), 2.0))})
    save_file(policy.state_dict(), tmp_path / "policy.safetensors")
    clone = make_policy("mlp", **policy.config.to_dict())
    clone.load_state_dict(load_file(tmp_path / "policy.safetensors"))
    data = batch(4)
    torch.testing.assert_close(clone(data)[0], policy(data)[0])


def test_bad_configs_and_inputs():
    with pytest.raises(ValueError, match="unknown policy 'diffusion'"):
        make_policy("diffusion", feature_dim=8, proprio_dim=4, action_dim=2)
    with pytest.raises(ValueError, match="n_action_steps .* cannot exceed"):
        make_policy(
            "act", feature_dim=8, proprio_dim=4, action_dim=2, chunk_size=4, n_action_steps=5
        )
    with pytest.raises(ValueError, match="set n_action_steps=1"):
        make_policy("act", feature_dim=8, proprio_dim=4, action_dim=2, temporal_ensemble_coeff=0.01)
    with pytest.raises(ValueError, match="action_dim must be >= 1"):
        MLPPolicyConfig(feature_dim=8, proprio_dim=4, action_dim=0)
    policy = make_policy("mlp", feature_dim=8, proprio_dim=4, action_dim=2)
    bad = batch(4)
    bad["features"] = bad["features"][:, :2]
    with pytest.raises(ValueError, match=r"features must be \(B, 3, 8\)"):
        policy(bad)
    with pytest.raises(ValueError, match="unknown statistics"):
        policy.set_normalization({"reward": (torch.zeros(1), torch.ones(1))})


def small_act(**overrides):
    torch.manual_seed(0)
    config = {**SMALL["act"], **overrides}
    policy = make_policy("act", feature_dim=8, proprio_dim=4, action_dim=2, **config).eval()
    policy.set_normalization({"action": (torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5]))})
    return policy


def test_act_executes_chunks_then_predicts_again():
    policy = small_act(chunk_size=4, n_action_steps=3)
    obs = {"features": torch.randn(2, 8), "proprio": torch.randn(2, 4)}
    chunk = policy.normalization.unnormalize(
        "action", policy._predict(obs["features"].unsqueeze(1).repeat(1, 3, 1), obs["proprio"])
    )
    policy.reset()
    actions = [policy.select_action(obs) for _ in range(3)]
    # the first three actions come from one chunk predicted at step 0
    torch.testing.assert_close(torch.stack(actions, 1), chunk[:, :3])
    fourth = policy.select_action(obs)  # a new chunk, whose history now holds 4 frames' worth
    assert not torch.allclose(fourth, chunk[:, 3])


def test_act_temporal_ensembling_weights_the_oldest_prediction_most():
    m = 0.5
    policy = small_act(chunk_size=4, n_action_steps=1, temporal_ensemble_coeff=m)
    generator = torch.Generator().manual_seed(1)
    observations = [
        {
            "features": torch.randn(1, 8, generator=generator),
            "proprio": torch.randn(1, 4, generator=generator),
        }
        for _ in range(3)
    ]
    policy.reset()
    chunks, history = [], []
    for step, obs in enumerate(observations):
        history = (history or [obs["features"]] * 2) + [obs["features"]]
        stacked = torch.stack(history[-3:], 1)
        chunks.append(
            policy.normalization.unnormalize("action", policy._predict(stacked, obs["proprio"]))
        )
        action = policy.select_action(obs)
        # chunk k (oldest first, weight exp(-m k)) predicted the current step at index step - k
        predictions = torch.stack([chunks[k][:, step - k] for k in range(step + 1)])
        weights = torch.exp(-m * torch.arange(step + 1.0))
        expected = (predictions * (weights / weights.sum()).view(-1, 1, 1)).sum(0)
        torch.testing.assert_close(action, expected)


def test_act_reads_patch_tokens():
    policy = make_policy(
        "act", feature_dim=8, proprio_dim=0, action_dim=2, tokens_per_frame=5, **SMALL["act"]
    )
    data = batch(4)
    data["features"] = torch.randn(4, 3, 5, 8)
    loss, _ = policy(data)
    assert loss.isfinite()
    policy.eval().reset()
    action = policy.select_action({"features": torch.randn(4, 5, 8), "proprio": torch.zeros(4, 0)})
    assert action.shape == (4, 2)
    with pytest.raises(ValueError, match=r"features must be \(B, 3, 5, 8\)"):
        policy({**data, "features": torch.randn(4, 3, 8)})


def test_action_chunks_queue_and_ensemble():
    from pixio_robot.policies.base import ActionChunks, FrameHistory

    history = FrameHistory(3)
    first = torch.tensor([[1.0]])
    assert history.push(first).tolist() == [[[1.0], [1.0], [1.0]]]  # the first frame fills it
    assert history.push(first + 1).tolist() == [[[1.0], [1.0], [2.0]]]
    queue = ActionChunks(chunk_size=4, n_action_steps=2)
    chunk = torch.arange(4.0).view(1, 4, 1)
    assert not queue.ready() and queue.add(chunk).item() == 0.0
    assert queue.ready() and queue.pop().item() == 1.0 and not queue.ready()
    ensemble = ActionChunks(chunk_size=4, n_action_steps=1, temporal_ensemble_coeff=0.0)
    assert ensemble.add(chunk).item() == 0.0
    # equal weights: the mean of the older chunk's step 1 and the new chunk's step 0
    assert not ensemble.ready() and ensemble.add(chunk + 10).item() == pytest.approx(5.5)
    with pytest.raises(ValueError, match="n_action_steps"):
        ActionChunks(chunk_size=2, n_action_steps=3)


def _fit(policy: torch.nn.Module, data: dict[str, torch.Tensor], steps: int) -> float:
    """Full-batch Adam steps on ``data``; the last loss."""
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(steps):
        loss, _ = policy(data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def test_spatial_softmax_keypoints_follow_a_bright_patch_and_the_mlp_learns_its_position():
    from pixio_robot.policies.mlp.modeling_mlp import SpatialSoftmax

    torch.manual_seed(0)
    side, width = 4, 8
    tokens = torch.zeros(256, side * side, width)
    where = torch.randint(0, side * side, (256,))
    tokens[torch.arange(256), where, 0] = 1.0  # one token stands out on channel 0
    rows, cols = where // side, where % side
    softmax = SpatialSoftmax(width, side * side, keypoints=1)
    with torch.no_grad():
        softmax.logits.weight.zero_()
        softmax.logits.weight[0, 0] = 50.0  # attend to channel 0
    points = softmax(tokens)  # (B, 2): x, y in [-1, 1]
    torch.testing.assert_close(points[:, 0], cols / (side - 1) * 2 - 1, atol=1e-3, rtol=0)
    torch.testing.assert_close(points[:, 1], rows / (side - 1) * 2 - 1, atol=1e-3, rtol=0)

    # trained from scratch, the keypoint MLP reads the token's position off patch features
    policy = make_policy(
        "mlp", feature_dim=width, proprio_dim=0, action_dim=2, frame_history=1,
        tokens_per_frame=side * side, keypoints=4,
    )  # fmt: skip
    data = {"features": tokens[:, None], "proprio": torch.zeros(256, 0)}
    data["action"] = torch.stack([cols, rows], dim=1).float()
    assert _fit(policy, data, steps=400) < 0.05
    with pytest.raises(ValueError, match="features must be"):
        policy({**data, "features": tokens[:, None, :9]})
    with pytest.raises(ValueError, match="square grid"):
        MLPPolicyConfig(feature_dim=8, proprio_dim=0, action_dim=2, keypoints=4)


def test_keypoint_hidden_layer_finds_a_token_no_linear_map_can():
    """The marked token differs from the others only in the magnitude of channel 0, its sign
    random like theirs: one keypoint with a linear logit ranks it first only when its sign is
    right, with one hidden layer (``keypoint_hidden``) it finds it either way."""
    torch.manual_seed(0)
    side, width, count = 4, 8, 256
    signs = torch.randint(0, 2, (count, side * side)) * 2 - 1
    tokens = torch.zeros(count, side * side, width)
    tokens[..., 0] = signs.float()
    where = torch.randint(0, side * side, (count,))
    tokens[torch.arange(count), where, 0] *= 3  # the marked one: +-3 among +-1
    rows, cols = where // side, where % side
    data = {"features": tokens[:, None], "proprio": torch.zeros(count, 0)}
    data["action"] = torch.stack([cols, rows], dim=1).float()

    def final_loss(hidden: int) -> float:
        torch.manual_seed(0)
        policy = make_policy(
            "mlp", feature_dim=width, proprio_dim=0, action_dim=2, frame_history=1,
            tokens_per_frame=side * side, keypoints=1, keypoint_hidden=hidden,
        )  # fmt: skip
        return _fit(policy, data, steps=600)

    linear, hidden = final_loss(0), final_loss(32)
    assert hidden < 0.1 < linear, (hidden, linear)
    with pytest.raises(ValueError, match="keypoint_hidden must be >= 0"):
        MLPPolicyConfig(feature_dim=8, proprio_dim=0, action_dim=2, keypoint_hidden=-1)
