"""Multi-view reconstruction model and monocular dense heads at tiny sizes on CPU."""

import math

import pytest
import torch

from pixio_3d.geometry import (
    depth_along_ray_from_z,
    intrinsics_from_rays,
    pose_from_quaternion_translation,
    ray_directions,
    transform_points,
)
from pixio_3d.models import (
    MonoDepthConfig,
    MonoDepthModel,
    ReconstructionConfig,
    ReconstructionModel,
    SegmentationConfig,
    SegmentationModel,
    dense_features,
)
from pixio_3d.pipeline import predict
from pixio_3d.training.losses import (
    QuaternionLoss,
    ReconstructionLoss,
    ScaleShiftInvariantLoss,
    SegmentationLoss,
)
from pixio_core.models.registry import create_encoder

TINY_DPT = {"dpt_features": 16, "dpt_out_channels": (8, 16, 32, 32)}
TINY = {"width": 64, "depth": 2, "num_heads": 4, "pose_hidden_dim": 32, **TINY_DPT}
KEYS = (
    "pts3d", "pts3d_cam", "ray_directions", "depth_along_ray", "depth_z", "camera_poses",
    "cam_quats", "cam_trans", "intrinsics", "conf", "metric_scaling_factor",
)  # fmt: skip


def frozen_encoder(depth: int = 4):
    return create_encoder("pixio_vitt16", depth=depth).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ReconstructionModel(frozen_encoder(), ReconstructionConfig(**TINY)).eval()


def images(batch, views, height=48, width=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, views, 3, height, width, generator=generator)


def pinhole(batch, views, height=48, width=64):
    intrinsics = torch.tensor(
        [[0.9 * width, 0.0, 0.52 * width], [0.0, 0.8 * width, 0.47 * height], [0.0, 0.0, 1.0]]
    )
    return intrinsics.expand(batch, views, 3, 3).clone()


@pytest.mark.parametrize("views", [1, 2, 5])
def test_infer_shapes_and_conventions(model, views):
    out = model.infer(images(2, views))  # 48 x 64: a non-square 3 x 4 patch grid
    shapes = {
        "pts3d": (2, views, 48, 64, 3), "pts3d_cam": (2, views, 48, 64, 3),
        "ray_directions": (2, views, 48, 64, 3), "depth_along_ray": (2, views, 48, 64),
        "depth_z": (2, views, 48, 64), "camera_poses": (2, views, 4, 4),
        "cam_quats": (2, views, 4), "cam_trans": (2, views, 3), "intrinsics": (2, views, 3, 3),
        "conf": (2, views, 48, 64), "metric_scaling_factor": (2,),
    }  # fmt: skip
    assert set(out) == set(KEYS)
    for key, shape in shapes.items():
        assert tuple(out[key].shape) == shape, key
        assert torch.isfinite(out[key]).all(), key
    torch.testing.assert_close(out["ray_directions"].norm(dim=-1), torch.ones(2, views, 48, 64))
    assert (out["conf"] >= 1).all() and (out["depth_along_ray"] > 0).all()
    # view 0 is the scene frame by construction
    torch.testing.assert_close(out["camera_poses"][:, 0], torch.eye(4).expand(2, 4, 4))
    torch.testing.assert_close(out["pts3d"][:, 0], out["pts3d_cam"][:, 0])
    # the factored outputs compose: X = T (m d r), z-depth is the camera-frame z
    torch.testing.assert_close(
        out["pts3d"], transform_points(out["camera_poses"], out["pts3d_cam"])
    )
    torch.testing.assert_close(
        out["pts3d_cam"], out["ray_directions"] * out["depth_along_ray"].unsqueeze(-1)
    )
    torch.testing.assert_close(out["depth_z"], out["pts3d_cam"][..., 2])
    rotations = out["camera_poses"][..., :3, :3]
    torch.testing.assert_close(
        rotations @ rotations.transpose(-1, -2),
        torch.eye(3).expand_as(rotations),
        atol=1e-5,
        rtol=0,
    )
    assert (out["cam_quats"][..., 0] >= 0).all()


def test_swapping_non_reference_views_swaps_their_outputs(model):
    x = images(1, 4, seed=3)
    order = [0, 2, 1, 3]
    first, second = model(x), model(x[:, order])
    for key in ("depth_along_ray", "ray_directions", "conf", "cam_quats", "cam_trans"):
        torch.testing.assert_close(second[key], first[key][:, order], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        second["metric_scaling_factor"], first["metric_scaling_factor"], atol=1e-5, rtol=1e-4
    )
    # the reference view is special: swapping it with view 1 does not just permute (at init the
    # reference embedding is small, std 0.02: depth moves by ~1e-4, float noise is ~1e-7)
    swapped = model(x[:, [1, 0, 2, 3]])
    moved = (swapped["depth_along_ray"][:, 1] - first["depth_along_ray"][:, 0]).abs().max()
    assert moved > 1e-5


def test_scenes_of_a_batch_are_independent(model):
    x = images(2, 3, seed=4)
    together = model(x)
    alone = model(x[1:])
    for key, value in alone.items():
        torch.testing.assert_close(together[key][1:], value, atol=1e-5, rtol=1e-4)


def test_chunked_inference_matches_one_pass(model):
    x = images(1, 5, seed=5)
    whole = model(x, frames_chunk_size=None)
    chunked = model(x, frames_chunk_size=2)
    for key, value in whole.items():
        torch.testing.assert_close(chunked[key], value, atol=1e-5, rtol=1e-4)


def test_bf16_inference_returns_fp32_close_to_fp32(model):
    """``precision`` runs the network under bf16 autocast (emulated where a CPU lacks bf16
    units, still correct); every output stays fp32 and near the fp32 prediction, and
    ``fp32`` is the model's default exactly."""
    x, intrinsics = images(1, 3, seed=8), pinhole(1, 3)
    with torch.inference_mode():
        reference = predict(model, x, intrinsics)
        same = predict(model, x, intrinsics, precision="fp32")
        half = predict(model, x, intrinsics, precision="bf16")
    for key in KEYS:
        torch.testing.assert_close(same[key], reference[key], rtol=0, atol=0)
        assert half[key].dtype == reference[key].dtype, key
    relative = (half["depth_z"] - reference["depth_z"]).abs() / reference["depth_z"]
    assert 0 < relative.max() and relative.median() < 0.02  # bf16 ran, close to fp32
    torch.testing.assert_close(half["intrinsics"], intrinsics)  # known ones stay exact
    with pytest.raises(ValueError, match="precision must be one of"):
        predict(model, x, intrinsics, precision="fp16")


def test_known_intrinsics_are_used(model):
    x = images(1, 3, seed=6)
    intrinsics = pinhole(1, 3)
    known = model.infer(x, intrinsics)
    torch.testing.assert_close(known["ray_directions"], ray_directions(intrinsics, 48, 64))
    torch.testing.assert_close(known["intrinsics"], intrinsics)
    torch.testing.assert_close(
        intrinsics_from_rays(known["ray_directions"]), intrinsics, atol=1e-3, rtol=1e-4
    )
    # they condition the network too: depth differs from the uncalibrated prediction
    unknown = model.infer(x)
    assert not torch.allclose(known["depth_along_ray"], unknown["depth_along_ray"], rtol=1e-3)
    # without known intrinsics they are fitted to the predicted rays
    torch.testing.assert_close(
        unknown["intrinsics"], intrinsics_from_rays(unknown["ray_directions"])
    )


def test_square_images_and_single_view(model):
    out = model.infer(images(1, 1, 64, 64))
    assert out["pts3d"].shape == (1, 1, 64, 64, 3)


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="multiples of 16"):
        model(images(1, 2, 40, 64))
    with pytest.raises(ValueError, match=r"\(B, V, 3, H, W\)"):
        model(torch.randn(2, 3, 48, 64))
    with pytest.raises(ValueError, match="intrinsics"):
        model(images(1, 2), pinhole(1, 3))
    with pytest.raises(ValueError, match="divisible"):
        ReconstructionConfig(width=65, num_heads=4)
    with pytest.raises(ValueError, match="dpt_out_channels"):
        ReconstructionConfig(dpt_out_channels=(8, 16, 32))
    with pytest.raises(ValueError, match="encoder_layers"):
        ReconstructionConfig(encoder_layers=())


def test_the_trunk_knows_where_tokens_are():
    """With an encoder whose tokens carry no position (pos_embed zeroed), swapping two patches in
    every view just swaps their tokens: without the trunk's position embedding the trunk's
    output tokens swap too (it cannot tell where content is, so no relative pose), with it they
    do not."""
    encoder = frozen_encoder()
    encoder.pos_embed.data.zero_()
    x = images(1, 2)  # 48 x 64: a 3 x 4 patch grid; swap patch 0 (top left) and 11 (bottom right)
    moved = x.clone()
    moved[..., :16, :16], moved[..., -16:, -16:] = x[..., -16:, -16:], x[..., :16, :16]
    order = torch.arange(12)
    order[[0, 11]] = order[[11, 0]]
    for kind, equivariant in (("none", True), ("sincos", False)):
        torch.manual_seed(0)
        model = ReconstructionModel(
            encoder, ReconstructionConfig(position_embedding=kind, pose_matching=False, **TINY)
        )
        maps = []  # the pose head's input (no matching): the trunk's final tokens as maps
        model.pose_head.register_forward_pre_hook(lambda _, args, maps=maps: maps.append(args[0]))
        with torch.no_grad():
            model.eval()(x)
            model(moved)
        before, after = (m.flatten(2) for m in maps)
        assert torch.allclose(after[..., order], before, atol=1e-5) == equivariant, kind
    with pytest.raises(ValueError, match="position_embedding"):
        ReconstructionConfig(position_embedding="rope")
    with pytest.raises(ValueError, match="match_features"):
        ReconstructionConfig(match_features="pixels")


def test_checkpoints_from_before_the_position_embedding_load_without_it(tmp_path):
    """A checkpoint whose config predates position_embedding / pose_matching loads as it was
    trained (none / False); a new config without them gets the defaults (sincos / True)."""
    import json

    from pixio_3d.checkpoint import build_model, load_model, save_model
    from pixio_core.loading import save_encoder

    torch.manual_seed(0)
    save_encoder(frozen_encoder(), tmp_path / "encoder")
    config = ReconstructionConfig(position_embedding="none", pose_matching=False, **TINY)
    old = ReconstructionModel(frozen_encoder(), config)
    path = save_model(tmp_path / "old", old, "reconstruction", str(tmp_path / "encoder"))
    meta = json.loads((path / "config.json").read_text())
    for key in ("position_embedding", "pose_matching", "match_features"):
        del meta["model_config"][key]
    del meta["config_sha256"]  # checkpoints of that time recorded no hashes
    (path / "config.json").write_text(json.dumps(meta))
    loaded, _ = load_model(path)
    assert loaded.config.position_embedding == "none" and loaded.config.pose_matching is False
    assert loaded.config.match_features == "encoder"
    fresh = build_model("reconstruction", frozen_encoder(), dict(TINY)).config
    assert fresh.position_embedding == "sincos" and fresh.pose_matching is True


def test_several_encoder_blocks_and_no_class_tokens():
    config = ReconstructionConfig(encoder_layers=(1, -1), use_class_tokens=False, **TINY)
    model = ReconstructionModel(frozen_encoder(), config)
    out = model.infer(images(1, 2))
    assert out["pts3d"].shape == (1, 2, 48, 64, 3)
    assert model.patch_proj.in_features == 2 * 192


def test_frozen_encoder_gets_no_gradient_and_fine_tuning_works():
    model = ReconstructionModel(
        frozen_encoder(depth=2),
        ReconstructionConfig(depth=1, **{k: v for k, v in TINY.items() if k != "depth"}),
    )
    model(images(1, 2))["depth_along_ray"].mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.patch_proj.weight.grad is not None
    model.encoder.requires_grad_(True)
    model(images(1, 2))["depth_along_ray"].mean().backward()
    assert model.encoder.patch_embed.proj.weight.grad is not None


@pytest.mark.parametrize("match_features", ["encoder", "trunk"])
def test_the_loss_reaches_every_trainable_parameter(match_features):
    config = ReconstructionConfig(match_features=match_features, **TINY)
    model = ReconstructionModel(frozen_encoder(depth=2), config)
    batch = plane_batch(views=3)
    loss, terms = ReconstructionLoss()(model(batch["images"], batch["intrinsics"]), batch)
    assert terms["match"] > 0  # the plane is seen by all three views: there are true matches
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def plane_batch(views=2, height=32, width=48, plane_z=3.0):
    """Two cameras looking at the plane z = plane_z (frame of camera 0), dataset-style, B = 1."""
    intrinsics = torch.tensor(
        [[0.8 * width, 0.0, 0.5 * width], [0.0, 0.8 * width, 0.5 * height], [0.0, 0.0, 1.0]]
    )
    rays = ray_directions(intrinsics, height, width)
    poses, depths = [], []
    for index in range(views):
        angle = math.radians(8.0 * index)
        quat = torch.tensor([math.cos(angle / 2), 0.0, math.sin(angle / 2), 0.0])
        pose = pose_from_quaternion_translation(quat, torch.tensor([0.5 * index, 0.1, 0.0]))
        along_ray = (plane_z - pose[2, 3]) / (rays @ pose[:3, :3].T)[..., 2]
        depths.append(along_ray * rays[..., 2])
        poses.append(pose)
    depth = torch.stack(depths)[None]
    torch.testing.assert_close(
        depth_along_ray_from_z(depth, intrinsics), torch.stack(depths)[None] / rays[..., 2]
    )
    return {
        "images": torch.randn(
            1, views, 3, height, width, generator=torch.Generator().manual_seed(0)
        ),
        "depth": depth,
        "valid": torch.ones_like(depth, dtype=torch.bool),
        "intrinsics": intrinsics.expand(1, views, 3, 3).clone(),
        "cam2world": torch.stack(poses)[None],
    }


def test_a_few_steps_overfit_one_analytic_scene():
    torch.manual_seed(0)
    config = ReconstructionConfig(**{**TINY, "depth": 1})
    model = ReconstructionModel(frozen_encoder(), config)
    batch = plane_batch()
    loss_fn = ReconstructionLoss()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(20):
        loss, _ = loss_fn(model(batch["images"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-3:]) < 0.4 * losses[0], losses


# ------------------------------------------------------------------ monocular heads
def test_dense_features_concatenate_the_mean_class_token():
    encoder = frozen_encoder()
    x = images(2, 1)[:, 0]
    maps = dense_features(encoder, x, 4)
    assert len(maps) == 4 and all(m.shape == (2, 2 * 192, 3, 4) for m in maps)
    last = encoder.forward_intermediates(x, [-1], norm=True)[0]
    torch.testing.assert_close(maps[-1][:, :192].flatten(2).transpose(1, 2), last["patch_tokens"])
    mean_cls = last["cls_tokens"].mean(1)
    torch.testing.assert_close(maps[-1][:, 192:, 2, 3], mean_cls)
    assert dense_features(encoder, x, [-1], concat_class_token=False)[0].shape == (2, 192, 3, 4)


@pytest.mark.parametrize("head", ["dpt", "linear"])
def test_mono_depth_heads(head):
    encoder = frozen_encoder()
    x = images(2, 1)[:, 0]
    relative = MonoDepthModel(encoder, MonoDepthConfig(head=head, **TINY_DPT))
    disparity = relative(x)["disparity"]
    assert disparity.shape == (2, 48, 64) and (disparity >= 0).all()
    metric = MonoDepthModel(
        encoder, MonoDepthConfig(head=head, mode="metric", max_depth=10.0, **TINY_DPT)
    )
    depth = metric(x)["depth"]
    assert depth.shape == (2, 48, 64) and (depth > 0).all() and (depth < 10.0).all()
    if head == "linear":
        assert isinstance(metric.predictor.head.norm, torch.nn.BatchNorm2d)
        assert metric.predictor.head.norm.num_features == 2 * 192


def test_relative_depth_head_learns_one_image():
    torch.manual_seed(0)
    model = MonoDepthModel(frozen_encoder(), MonoDepthConfig(**TINY_DPT))
    x = images(1, 1, 32, 48)[:, 0]
    target = torch.linspace(1.0, 2.0, 48).expand(1, 32, 48)  # a depth ramp, left to right
    valid = torch.ones_like(target, dtype=torch.bool)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    loss_fn, losses = ScaleShiftInvariantLoss(), []
    for _ in range(15):
        loss = loss_fn(model(x)["disparity"], 1.0 / target, valid)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.5 * losses[0], losses


@pytest.mark.parametrize("head", ["dpt", "linear"])
def test_segmentation_heads(head):
    model = SegmentationModel(
        frozen_encoder(), SegmentationConfig(head=head, num_classes=6, **TINY_DPT)
    )
    x = images(2, 1)[:, 0]
    logits = model(x)["logits"]
    assert logits.shape == (2, 6, 48, 64)
    labels = torch.randint(0, 6, (2, 48, 64))
    SegmentationLoss()(logits, labels).backward()
    assert all(p.grad is not None for p in model.predictor.head.parameters())


def test_mono_config_errors():
    with pytest.raises(ValueError, match="head"):
        MonoDepthConfig(head="mlp")
    with pytest.raises(ValueError, match="mode"):
        MonoDepthConfig(mode="absolute")
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationConfig(num_classes=1)


def test_pose_matching_sees_how_far_a_view_moved():
    """View 1 = view 0 rolled sideways by whole patches: the soft matches of the encoder's tokens
    to view 0 give a flow whose median is the roll (in normalized coordinates) and a clear peak,
    from initialization."""
    torch.manual_seed(0)
    config = ReconstructionConfig(match_features="encoder", **TINY)
    model = ReconstructionModel(frozen_encoder(), config).eval()
    image = images(1, 1, 48, 96)[0, 0]  # a 3 x 6 patch grid; x steps of 2/5 per patch
    for shift in (-2, -1, 1, 2):
        pair = torch.stack([image, torch.roll(image, 16 * shift, dims=-1)])[None]
        with torch.no_grad():
            patches, _ = model._encode(pair.flatten(0, 1), None)
            match, logits = model._match_to_reference(patches.reshape(1, 2, 18, -1), (3, 6))
        assert logits.shape == (1, 2, 18, 18)
        assert logits[0, 0].argmax(-1).tolist() == list(range(18))
        flow_x, peak = match[0, 1, :, 0], match[0, 1, :, 2]
        assert abs(flow_x.median() + shift * 2 / 5) < 0.1, shift
        assert peak.mean() > 3 / 18
        assert match[0, 0, :, :2].abs().max() < 0.1  # view 0 matches itself
    with torch.no_grad():
        assert model(pair)["match_logits"].shape == (1, 2, 18, 18)  # for the loss's match term


@pytest.mark.slow  # ~1 min
def test_pose_head_learns_a_roll_with_matching():
    """Pose-only training on 'view 1 = view 0 rolled by s patches, rotated 20*s degrees about y'
    gets far below the best constant guess (the identity) with matching, and not without it."""

    def rotation(degrees):
        half = math.radians(degrees) / 2
        return torch.tensor([math.cos(half), 0.0, math.sin(half), 0.0])

    losses = {}
    for matching in (True, False):
        torch.manual_seed(0)
        config = ReconstructionConfig(pose_matching=matching, **TINY)
        model = ReconstructionModel(frozen_encoder(), config)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
        generator = torch.Generator().manual_seed(0)
        history = []
        for _ in range(250):
            shifts = torch.randint(-2, 3, (8,), generator=generator).tolist()
            x = images(8, 1, 48, 96, seed=len(history))[:, 0]
            pairs = torch.stack(
                [
                    torch.stack([v, torch.roll(v, 16 * s, -1)])
                    for v, s in zip(x, shifts, strict=True)
                ]
            )
            target = torch.stack([torch.stack([rotation(0), rotation(20 * s)]) for s in shifts])
            loss = QuaternionLoss()(model(pairs), {"cam_quats": target})
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(loss.item())
        losses[matching] = sum(history[-50:]) / 50
    assert losses[True] < 0.3 < losses[False], losses


def test_infer_with_the_match_solver():
    torch.manual_seed(0)
    model = ReconstructionModel(frozen_encoder(), ReconstructionConfig(**TINY)).eval()
    x = images(1, 3)
    head = model.infer(x)
    solved = predict(model, x, pose_solver="matches")
    torch.testing.assert_close(solved["pts3d_cam"], head["pts3d_cam"])  # geometry unchanged
    torch.testing.assert_close(solved["camera_poses"][:, 0], torch.eye(4)[None])
    torch.testing.assert_close(
        solved["pts3d"], transform_points(solved["camera_poses"], solved["pts3d_cam"])
    )
    rotations = solved["camera_poses"][..., :3, :3]
    torch.testing.assert_close(
        rotations @ rotations.transpose(-1, -2), torch.eye(3).expand(1, 3, 3, 3), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="pose_solver"):
        predict(model, x, pose_solver="ransac")
    plain = ReconstructionModel(frozen_encoder(), ReconstructionConfig(pose_matching=False, **TINY))
    with pytest.raises(ValueError, match="pose_matching"):
        predict(plain, x, pose_solver="matches")
