"""DPT head building blocks: shapes on any grid, token layout, gradients, validation."""

import pytest
import torch

from pixio_core.models.dpt import (
    DPTHead,
    FeatureFusionBlock,
    Reassemble,
    ResidualConvUnit,
    tokens_to_feature_map,
)

SMALL = {"features": 16, "out_channels": (8, 16, 32, 32), "hidden_dim": 8}


def maps(batch, channels, grid, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, *grid, generator=generator) for c in channels]


@pytest.mark.parametrize(
    ("grid", "output_size"),
    [
        ((4, 4), (64, 64)),
        ((3, 4), (48, 64)),
        ((5, 3), (80, 48)),
        ((1, 1), (16, 16)),
        ((3, 4), (37, 50)),
    ],
)
def test_output_resolution_on_any_grid(grid, output_size):
    head = DPTHead([24, 24, 24, 24], output_dim=3, **SMALL)
    out = head(maps(2, [24] * 4, grid), output_size)
    assert out.shape == (2, 3, *output_size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("scale", "expected"), [(4.0, (12, 16)), (2.0, (6, 8)), (1.0, (3, 4)), (0.5, (2, 2))]
)
def test_reassemble_pyramid_sizes(scale, expected):
    layer = Reassemble(10, 6, scale)
    assert layer(torch.randn(1, 10, 3, 4)).shape == (1, 6, *expected)


def test_tokens_to_feature_map_is_row_major():
    grid = (3, 5)
    tokens = torch.arange(2 * 15 * 4, dtype=torch.float32).reshape(2, 15, 4)
    feature_map = tokens_to_feature_map(tokens, grid)
    assert feature_map.shape == (2, 4, 3, 5)
    for row in range(3):
        for col in range(5):
            torch.testing.assert_close(feature_map[:, :, row, col], tokens[:, row * 5 + col])
    with pytest.raises(ValueError, match="3x4 grid"):
        tokens_to_feature_map(tokens, (3, 4))


def test_every_parameter_gets_a_gradient():
    head = DPTHead([12, 16, 16, 20], output_dim=2, **SMALL)
    head(maps(1, [12, 16, 16, 20], (3, 4)), (48, 64)).square().mean().backward()
    missing = [name for name, p in head.named_parameters() if p.grad is None]
    assert not missing


def test_head_is_translation_aware_not_constant():
    head = DPTHead([8] * 4, output_dim=1, **SMALL)
    inputs = maps(1, [8] * 4, (3, 4))
    out = head(inputs, (48, 64))
    shifted = head([m.roll(1, dims=-1) for m in inputs], (48, 64))
    assert out.std() > 0 and not torch.allclose(out, shifted)


def test_building_blocks():
    unit = ResidualConvUnit(4)
    x = torch.randn(1, 4, 5, 6)
    torch.nn.init.zeros_(unit.conv2.weight)
    torch.nn.init.zeros_(unit.conv2.bias)
    torch.testing.assert_close(unit(x), x)  # residual: a zero branch is the identity
    fusion = FeatureFusionBlock(4)
    assert fusion(x, x).shape == (1, 4, 10, 12)
    assert fusion(x, x, size=(7, 9)).shape == (1, 4, 7, 9)
    with pytest.raises(ValueError, match="skip"):
        fusion(x)
    assert FeatureFusionBlock(4, with_skip=False)(x).shape == (1, 4, 10, 12)
    assert ResidualConvUnit(4, use_batch_norm=True)(x).shape == x.shape


def test_bad_configuration_and_inputs():
    with pytest.raises(ValueError, match="4 input levels"):
        DPTHead([8, 8, 8], output_dim=1)
    with pytest.raises(ValueError, match="features"):
        DPTHead([8] * 4, output_dim=1, features=1)
    with pytest.raises(ValueError, match="scale"):
        Reassemble(4, 4, 3.0)
    head = DPTHead([8] * 4, output_dim=1, **SMALL)
    with pytest.raises(ValueError, match="4 feature maps"):
        head(maps(1, [8] * 3, (2, 2)), (32, 32))
    with pytest.raises(ValueError, match="one patch grid"):
        head(maps(1, [8] * 3, (2, 2)) + maps(1, [8], (3, 2)), (32, 32))
