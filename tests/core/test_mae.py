"""Block masking and the MAE pre-training model."""

import copy

import pytest
import torch

from pixio_core.masking import block_mask_grid, sample_block_mask
from pixio_core.models import DecoderConfig, MaskingConfig, create_mae
from pixio_core.models.mae import normalize_patches, patchify, unpatchify
from pixio_core.models.registry import ENCODER_SIZES


def test_block_grid_is_aligned():
    blocks = block_mask_grid(4, 4, 2)
    assert blocks.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_pixio_masking_keeps_whole_4x4_blocks():
    mask = sample_block_mask(
        8, 16, 16, mask_grid=4, mask_ratio=0.75, generator=torch.Generator().manual_seed(0)
    )
    assert mask.ids_keep.shape == (8, 64)  # 4 of 16 blocks, 16 patches each
    assert mask.mask.sum(1).tolist() == [192] * 8
    grid = mask.mask.view(8, 16, 16)
    blocks = grid.view(8, 4, 4, 4, 4).permute(0, 1, 3, 2, 4).reshape(8, 16, 16)
    per_block = blocks.float().mean(-1)
    assert ((per_block == 0) | (per_block == 1)).all()  # every block fully kept or fully masked
    assert (per_block == 0).sum(1).tolist() == [4] * 8
    # visible indices are exactly the unmasked patches
    for row in range(8):
        assert set(mask.ids_keep[row].tolist()) == set(
            torch.nonzero(~mask.mask[row]).flatten().tolist()
        )


def test_mask_grid_one_is_mae_per_patch_masking_and_non_square_grids_work():
    mask = sample_block_mask(2, 6, 10, mask_grid=1, mask_ratio=0.75)
    assert mask.ids_keep.shape == (2, 15)
    mask = sample_block_mask(2, 8, 12, mask_grid=4, mask_ratio=0.5)
    assert mask.ids_keep.shape == (2, 3 * 16)


def test_masks_are_reproducible_from_a_seed_and_differ_between_seeds():
    a = sample_block_mask(4, 16, 16, generator=torch.Generator().manual_seed(7))
    b = sample_block_mask(4, 16, 16, generator=torch.Generator().manual_seed(7))
    c = sample_block_mask(4, 16, 16, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.mask, c.mask)


def test_masking_errors_name_the_problem():
    with pytest.raises(ValueError, match="6x8 patch grid cannot be cut into aligned 4x4 blocks"):
        sample_block_mask(1, 6, 8, mask_grid=4)
    with pytest.raises(ValueError, match="keeps no block"):
        sample_block_mask(1, 4, 4, mask_grid=4, mask_ratio=0.75)
    with pytest.raises(ValueError, match="mask_ratio"):
        MaskingConfig(mask_ratio=1.0)


def test_patchify_round_trip():
    images = torch.randn(2, 3, 32, 48)
    patches = patchify(images, 16)
    assert patches.shape == (2, 6, 768)
    torch.testing.assert_close(unpatchify(patches, 16, 2, 3), images)
    # a patch row holds that 16x16 window
    torch.testing.assert_close(
        patches[0, 4].view(16, 16, 3).permute(2, 0, 1), images[0, :, 16:32, 16:32]
    )
    normed = normalize_patches(patches)
    torch.testing.assert_close(normed.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)


def test_presets_follow_the_paper():
    pixio = create_mae("pixio_vitt16")
    assert pixio.encoder.num_class_tokens == 8 and pixio.masking == MaskingConfig(0.75, 4)
    mae = create_mae("pixio_vitt16", recipe="mae")
    assert mae.encoder.num_class_tokens == 1 and mae.masking.mask_grid == 1
    assert len(pixio.decoder_blocks) == 4 * len(mae.decoder_blocks)
    with pytest.raises(ValueError, match="valid names are: mae, pixio"):
        create_mae("pixio_vitt16", recipe="beit")


@pytest.mark.parametrize("recipe, depth", [("pixio", 32), ("mae", 8)])
@pytest.mark.parametrize("size", ["pixio_vitb16", "pixio_vith16", "pixio_vit5b16"])
def test_full_size_presets_have_the_paper_decoder(recipe, depth, size):
    # build on the meta device: no memory, only the architecture
    with torch.device("meta"):
        model = create_mae(size, recipe=recipe)
    assert model.decoder_config == DecoderConfig(512, depth, 16)
    assert model.decoder_pos_embed.shape == (1, model.encoder.num_class_tokens + 256, 512)
    assert model.encoder.embed_dim == ENCODER_SIZES[size][0]
    if size == "pixio_vith16" and recipe == "pixio":
        decoder_params = sum(
            p.numel() for n, p in model.named_parameters() if not n.startswith("encoder.")
        )
        assert 100e6 < decoder_params < 105e6  # paper Table 10: about 103 M


def test_forward_backward_loss_only_on_masked_patches():
    torch.manual_seed(0)
    model = create_mae("pixio_vitt16", depth=2, masking=MaskingConfig(0.75, 2))
    images = torch.randn(2, 3, 64, 64)
    mask = model.sample_mask(2, 4, 4, torch.Generator().manual_seed(0))
    out = model(images, mask=mask)
    assert out["pred"].shape == (2, 16, 768) and out["mask"].shape == (2, 16)
    per_patch = (out["pred"] - out["target"]).pow(2).mean(-1)
    torch.testing.assert_close(out["loss"], per_patch[out["mask"]].mean())
    out["loss"].backward()
    assert model.mask_token.grad.abs().sum() > 0
    assert model.encoder.cls_token.grad.abs().sum() > 0
    # changing a visible patch changes the loss; the masked target pixels enter only via the target
    visible = mask.ids_keep[0, 0].item()
    images2 = images.clone()
    row, col = divmod(visible, 4)
    images2[0, :, row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16] += 1.0
    assert not torch.allclose(model(images2, mask=mask)["pred"], out["pred"])


def test_encoder_only_sees_visible_patches():
    model = create_mae("pixio_vitt16", depth=2, masking=MaskingConfig(0.75, 2)).eval()
    images = torch.randn(1, 3, 64, 64)
    mask = model.sample_mask(1, 4, 4, torch.Generator().manual_seed(3))
    latent = model.encode_visible(images, mask)
    assert latent.shape == (1, 8 + 4, 192)
    masked_patch = torch.nonzero(mask.mask[0]).flatten()[0].item()
    row, col = divmod(masked_patch, 4)
    images2 = images.clone()
    images2[0, :, row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16] = 5.0
    torch.testing.assert_close(model.encode_visible(images2, mask), latent)


def test_config_dict_rebuilds_the_same_model():
    model = create_mae("pixio_vitt16", depth=2)
    clone = type(model).from_config_dict(model.config_dict())
    clone.load_state_dict(model.state_dict())
    images = torch.randn(1, 3, 256, 256)
    mask = model.sample_mask(1, 16, 16, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        model.eval()(images, mask=mask)["loss"], clone.eval()(images, mask=mask)["loss"]
    )


@pytest.mark.parametrize(("recipe", "size"), [("mae", 64), ("pixio", 128)])
def test_head_on_masked_tokens_only_gives_the_same_loss_and_gradients(recipe, size):
    torch.manual_seed(0)
    model = create_mae("pixio_vitt16", recipe=recipe, image_size=size)
    images = torch.randn(2, 3, size, size)
    grid = size // 16
    mask = model.sample_mask(2, grid, grid, torch.Generator().manual_seed(1))
    full = model(images, mask=mask)
    full["loss"].backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    only = model(images, mask=mask, predict="masked")
    only["loss"].backward()
    assert torch.allclose(full["loss"], only["loss"], rtol=1e-6)
    assert torch.allclose(full["loss_per_sample"], only["loss_per_sample"], rtol=1e-6)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[name], rtol=1e-4, atol=1e-7), name
    rows = only["ids_masked"]
    assert bool(mask.mask.gather(1, rows).all()) and rows.shape == (2, int(mask.mask[0].sum()))
    torch.testing.assert_close(
        only["pred"], full["pred"].gather(1, rows[..., None].expand(-1, -1, 768))
    )
    with pytest.raises(ValueError, match="predict must be"):
        model(images, predict="visible")


@pytest.mark.parametrize("implementation", ["fused", "foreach", "auto"])
def test_optimizer_implementations_take_the_same_step(implementation):
    from pixio_core.engine import make_optimizer

    torch.manual_seed(0)
    reference = create_mae("pixio_vitt16", recipe="mae", image_size=64)
    other = copy.deepcopy(reference)
    images = torch.randn(2, 3, 64, 64)
    mask = reference.sample_mask(2, 4, 4, torch.Generator().manual_seed(1))
    for model, kind in ((reference, "for-loop"), (other, implementation)):
        optimizer = make_optimizer(model, 0.05, (0.9, 0.95), lr=1e-3, implementation=kind)
        assert len(optimizer.param_groups) == 2 and optimizer.param_groups[1]["weight_decay"] == 0
        optimizer.zero_grad()
        model(images, mask=mask, predict="masked")["loss"].backward()
        optimizer.step()
    # one step: the same update up to float rounding (later steps amplify rounding where a
    # gradient is ~0, e.g. the key biases, since Adam divides by its magnitude)
    for (name, a), b in zip(reference.named_parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match="implementation must be one of"):
        make_optimizer(reference, 0.05, implementation="apex")
