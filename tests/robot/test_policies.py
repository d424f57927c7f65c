"""Policies over every registry entry: shapes, learning, normalization, history, round trip."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from pixio_robot.policies import POLICIES, make_policy
from pixio_robot.policies.mlp.configuration_mlp import MLPPolicyConfig


def batch(size=32, generator=None):
    features = torch.randn(size, 3, 8, generator=generator)
    proprio = torch.randn(size, 4, generator=generator)
    # an action that depends on the newest frame and the proprio: learnable
    action = torch.stack(
        [features[:, -1, 0] + proprio[:, 0], features[:, 0, 1] - proprio[:, 1]], dim=1
    )
    return {"features": features, "proprio": proprio, "action": action * 3 + 5}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_learns_a_simple_mapping(name):
    torch.manual_seed(0)
    policy = make_policy(name, feature_dim=8, proprio_dim=4, action_dim=2)
    data = batch(256, torch.Generator().manual_seed(0))
    actions = data["action"]
    policy.set_normalization({"action": (actions.mean(0), actions.std(0))})
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        loss, info = policy(data)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first and "mse" in info


def test_select_action_uses_history_and_denormalizes():
    torch.manual_seed(0)
    policy = make_policy("mlp", feature_dim=8, proprio_dim=4, action_dim=2).eval()
    policy.set_normalization({"action": (torch.tensor([10.0, -10.0]), torch.tensor([2.0, 2.0]))})
    frame = torch.randn(8)
    proprio = torch.randn(4)
    policy.reset()
    first = policy.select_action(frame, proprio)
    direct = policy._predict(frame.repeat(3, 1).unsqueeze(0), proprio.unsqueeze(0)).squeeze(
        0
    ) * 2 + torch.tensor([10.0, -10.0])
    torch.testing.assert_close(first, direct)
    second = policy.select_action(torch.randn(8), proprio)
    assert not torch.allclose(first, second)
    policy.reset()
    torch.testing.assert_close(policy.select_action(frame, proprio), first)


def test_weights_and_statistics_round_trip(tmp_path):
    policy = make_policy("mlp", feature_dim=8, proprio_dim=4, action_dim=2)
    policy.set_normalization({"feature": (torch.ones(8), torch.full((8,), 2.0))})
    save_file(policy.state_dict(), tmp_path / "policy.safetensors")
    clone = make_policy("mlp", **policy.config.to_dict())
    clone.load_state_dict(load_file(tmp_path / "policy.safetensors"))
    data = batch(4)
    torch.testing.assert_close(clone(data)[0], policy(data)[0])


def test_bad_configs_and_inputs():
    with pytest.raises(ValueError, match="unknown policy 'act'"):
        make_policy("act", feature_dim=8, proprio_dim=4, action_dim=2)
    with pytest.raises(ValueError, match="action_dim must be >= 1"):
        MLPPolicyConfig(feature_dim=8, proprio_dim=4, action_dim=0)
    policy = make_policy("mlp", feature_dim=8, proprio_dim=4, action_dim=2)
    bad = batch(4)
    bad["features"] = bad["features"][:, :2]
    with pytest.raises(ValueError, match=r"features must be \(B, 3, 8\)"):
        policy(bad)
    with pytest.raises(ValueError, match="unknown statistics"):
        policy.set_normalization({"reward": (torch.zeros(1), torch.ones(1))})
