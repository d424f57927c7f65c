"""Parity of our MapAnything modules with UniCeption's (an independent implementation, installed
``--no-deps`` for the tests only): each of our modules loads the UniCeption module's state dict
strictly and matches its outputs to float tolerance, at a square and a non-square size and 1, 2
and 4 views. Random weights, perturbed so that zero-initialized or identity parts matter."""

from __future__ import annotations

import pytest
import torch

# installed by the Makefile (pip install --no-deps uniception==0.1.7): a missing reference fails
import uniception.models.info_sharing.alternating_attention_transformer as aat
from uniception.models.encoders.base import (
    EncoderGlobalRepInput,
    ViTEncoderNonImageInput,
)
from uniception.models.encoders.dense_rep_encoder import DenseRepresentationEncoder
from uniception.models.encoders.global_rep_encoder import GlobalRepresentationEncoder
from uniception.models.info_sharing.base import MultiViewTransformerInput
from uniception.models.prediction_heads.adaptors import (
    CamTranslationPlusQuatsAdaptor,
    RayDirectionsPlusDepthWithConfidenceAndMaskAdaptor,
    ScaleAdaptor,
)
from uniception.models.prediction_heads.base import (
    AdaptorInput,
    PredictionHeadInput,
    PredictionHeadLayeredInput,
    PredictionHeadTokenInput,
)
from uniception.models.prediction_heads.dpt import DPTFeature, DPTRegressionProcessor
from uniception.models.prediction_heads.mlp_head import MLPHead
from uniception.models.prediction_heads.pose_head import PoseHead

from pixio_3d.models.mapanything import (
    AlternatingAttentionIFR,
    DenseInputEncoder,
    GlobalInputEncoder,
    MapAnythingConfig,
)
from pixio_3d.models.mapanything_heads import (
    DPTFeatureHead,
    DPTRegressor,
    PoseRegressionHead,
    ScaleMLPHead,
    dense_adaptor,
    positive,
)

INF = float("inf")
SIZES = [(64, 64), (48, 80)]  # square and non-square images (patch 16)
VIEWS = [1, 2, 4]
TOL = dict(atol=2e-5, rtol=1e-5)


def perturbed_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's state with every float weight nudged (LayerNorms off 1/0, biases off 0)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and "view_pos_table" not in name:
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    return module.state_dict()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("views", VIEWS)
def test_alternating_attention_matches_uniception(size, views):
    torch.manual_seed(0)
    reference = aat.MultiViewAlternatingAttentionTransformerIFR(
        name="aat", input_embed_dim=48, dim=32, depth=4, num_heads=4, indices=[1, 2]
    ).eval()
    config = MapAnythingConfig(dim=32, depth=4, num_heads=4, intermediate_layers=(1, 2))
    ours = AlternatingAttentionIFR(config, input_dim=48).eval()
    ours.load_state_dict(perturbed_state(reference), strict=True)
    grid = (size[0] // 16, size[1] // 16)
    features = torch.randn(2, views, 48, *grid)
    scale = torch.randn(2, 1, 48)
    with torch.no_grad():
        final, inter = reference(
            MultiViewTransformerInput(
                features=list(features.unbind(1)), additional_input_tokens=scale.transpose(1, 2)
            )
        )
        our_final, our_scale, our_inter = ours(features, scale)
    torch.testing.assert_close(our_final, torch.stack(final.features, dim=1), **TOL)
    torch.testing.assert_close(our_scale, final.additional_token_features.transpose(1, 2), **TOL)
    for mine, theirs in zip(our_inter, inter, strict=True):
        torch.testing.assert_close(mine, torch.stack(theirs.features, dim=1), **TOL)
    if views > 1:  # the reference view is distinguished: swapping views 0 and 1 changes view 1
        swapped = features[:, [1, 0, *range(2, views)]]
        with torch.no_grad():
            again, _, _ = ours(swapped, scale)
        assert not torch.allclose(again[:, 0], our_final[:, 1], atol=1e-4)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("views", VIEWS)
def test_dpt_head_matches_uniception(size, views):
    torch.manual_seed(0)
    dims = [48, 32, 32, 32]
    feature = DPTFeature(
        patch_size=16, hooks=[0, 1, 2, 3], input_feature_dims=dims, layer_dims=[8, 16, 24, 32],
        feature_dim=16,
    ).eval()  # fmt: skip
    regressor = DPTRegressionProcessor(input_feature_dim=16, output_dim=6).eval()
    our_feature = DPTFeatureHead(dims, (8, 16, 24, 32), 16).eval()
    our_regressor = DPTRegressor(16, 6).eval()
    our_feature.load_state_dict(perturbed_state(feature), strict=True)
    our_regressor.load_state_dict(perturbed_state(regressor), strict=True)
    grid = (size[0] // 16, size[1] // 16)
    maps = [torch.randn(2 * views, d, *grid) for d in dims]
    with torch.no_grad():
        theirs = regressor(
            feature(PredictionHeadLayeredInput(list_features=maps, target_output_shape=size))
        )
        ours = our_regressor(our_feature(maps), size)
    assert ours.shape == (2 * views, 6, *size)
    torch.testing.assert_close(ours, theirs.decoded_channels, **TOL)
    # the three names of each shared projection conv are one tensor
    assert our_feature.scratch.layer_rn[2] is our_feature.input_process[2][1]
    assert our_feature.scratch.layer3_rn is our_feature.scratch.layer_rn[2]


@pytest.mark.parametrize("views", VIEWS)
def test_pose_and_scale_heads_match_uniception(views):
    torch.manual_seed(0)
    pose = PoseHead(patch_size=4, input_feature_dim=32, num_resconv_block=2).eval()
    ours = PoseRegressionHead(32, patch_size=4, blocks=2).eval()
    ours.load_state_dict(perturbed_state(pose), strict=True)
    scale = MLPHead(input_feature_dim=32, output_dim=1, hidden_dim=24).eval()
    our_scale = ScaleMLPHead(32, hidden=24, layers=2).eval()
    our_scale.load_state_dict(perturbed_state(scale), strict=True)
    for grid in ((4, 4), (3, 5)):
        features = torch.randn(2 * views, 32, *grid)
        with torch.no_grad():
            torch.testing.assert_close(
                ours(features),
                pose(PredictionHeadInput(last_feature=features)).decoded_channels,
                **TOL,
            )
    tokens = torch.randn(2, 1, 32)
    with torch.no_grad():
        theirs = scale(
            PredictionHeadTokenInput(last_feature=tokens.transpose(1, 2))
        ).decoded_channels
        torch.testing.assert_close(our_scale(tokens), theirs.transpose(1, 2), **TOL)


@pytest.mark.parametrize("size", SIZES)
def test_adaptors_match_uniception(size):
    torch.manual_seed(0)
    dense = RayDirectionsPlusDepthWithConfidenceAndMaskAdaptor(
        name="dense", ray_directions_mode="linear", ray_directions_normalize_to_unit_sphere=True,
        ray_directions_normalize_to_unit_image_plane=False, ray_directions_vmin=-INF,
        ray_directions_vmax=INF, ray_directions_clamp_min_of_z_dir=False,
        ray_directions_z_dir_min=-INF, depth_mode="exp", depth_vmin=0, depth_vmax=INF,
        confidence_type="exp", confidence_vmin=1, confidence_vmax=INF,
    )  # fmt: skip
    channels = torch.randn(3, 6, *size)
    theirs = dense(AdaptorInput(adaptor_feature=channels, output_shape_hw=size))
    ours = dense_adaptor(channels, "exp", 1.0)
    torch.testing.assert_close(ours["ray_directions"], theirs.value[:, :3].permute(0, 2, 3, 1))
    torch.testing.assert_close(ours["depth_along_ray"], theirs.value[:, 3])
    torch.testing.assert_close(ours["conf"], theirs.confidence[:, 0])
    torch.testing.assert_close(ours["non_ambiguous_mask_logits"], theirs.logits[:, 0])
    assert torch.equal(ours["non_ambiguous_mask_logits"] > 0, theirs.mask[:, 0] > 0.5)
    pose = CamTranslationPlusQuatsAdaptor(
        name="pose", cam_trans_mode="linear", cam_trans_vmin=-INF, cam_trans_vmax=INF,
        quaternions_mode="linear", quaternions_normalize=True, quaternions_vmin=-INF,
        quaternions_vmax=INF,
    )  # fmt: skip
    raw = torch.randn(5, 7)
    expected = pose(AdaptorInput(adaptor_feature=raw, output_shape_hw=size)).value
    torch.testing.assert_close(expected[:, :3], raw[:, :3])
    torch.testing.assert_close(expected[:, 3:], raw[:, 3:] / raw[:, 3:].norm(dim=-1, keepdim=True))
    scale = ScaleAdaptor(name="scale", mode="exp", vmin=1e-8, vmax=INF)
    logits = torch.randn(2, 1, 1) * 30 - 40  # some below log(1e-8): the clip matters
    theirs = scale(AdaptorInput(adaptor_feature=logits, output_shape_hw=size)).value
    torch.testing.assert_close(positive(logits, "exp", 1e-8), theirs)


@pytest.mark.parametrize("size", SIZES)
def test_geometric_input_encoders_match_uniception(size):
    torch.manual_seed(0)
    for channels in (3, 1):  # ray directions, depth
        reference = DenseRepresentationEncoder(
            name="dense", in_chans=channels, enc_embed_dim=40, apply_pe=False, patch_size=16,
            intermediate_dims=[24, 32, 48],
        ).eval()  # fmt: skip
        ours = DenseInputEncoder(channels, 40, 16, (24, 32, 48)).eval()
        ours.load_state_dict(perturbed_state(reference), strict=True)
        x = torch.randn(3, channels, *size)
        with torch.no_grad():
            theirs = reference(ViTEncoderNonImageInput(data=x)).features
            torch.testing.assert_close(ours(x), theirs, **TOL)
    for channels in (4, 3, 1):  # quaternion, translation, log scale
        reference = GlobalRepresentationEncoder(
            name="global", in_chans=channels, enc_embed_dim=40, intermediate_dims=[8, 16, 24]
        ).eval()
        ours = GlobalInputEncoder(channels, 40, (8, 16, 24)).eval()
        ours.load_state_dict(perturbed_state(reference), strict=True)
        x = torch.randn(5, channels)
        with torch.no_grad():
            theirs = reference(EncoderGlobalRepInput(data=x)).features
            torch.testing.assert_close(ours(x), theirs, **TOL)
