"""robomimic's own BC and BC-RNN train a few steps on our demo file with the frozen PixioCore."""

import pixio_envs  # noqa: F401
import pytest
import torch
from pixio_envs.push_block import PushBlockExpert
from torch.utils.data import DataLoader

from pixio_core import create_encoder, save_encoder
from pixio_robot.demos import collect_demos

pytest.importorskip("robomimic")
import robomimic.utils.obs_utils as ObsUtils  # noqa: E402
from robomimic.algo import algo_factory  # noqa: E402
from robomimic.config import config_factory  # noqa: E402
from robomimic.utils.dataset import SequenceDataset  # noqa: E402

from pixio_robot.integrations.robomimic_core import PixioCore  # noqa: E402

ENV = "pixio_envs/PushBlock-v0"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("robomimic")
    collect_demos(
        ENV, PushBlockExpert(), root / "push.hdf5", num_demos=2, env_kwargs={"image_size": 32},
        valid_fraction=0.0, progress=False,
    )  # fmt: skip
    torch.manual_seed(0)
    save_encoder(create_encoder("pixio_vitt16", depth=2), root / "encoder")
    return root / "push.hdf5", root / "encoder"


@pytest.mark.parametrize("rnn", [False, True], ids=["bc", "bc_rnn"])
def test_robomimic_trains_on_frozen_pixio_features(files, rnn):
    demo_file, encoder_dir = files
    config = config_factory("bc")
    with config.values_unlocked():
        config.observation.modalities.obs.low_dim = ["proprio"]
        config.observation.modalities.obs.rgb = ["pixels"]
        config.observation.encoder.rgb.core_class = "PixioCore"
        config.observation.encoder.rgb.core_kwargs = {
            "encoder_source": str(encoder_dir),
            "image_size": 32,
            "feature_dimension": 16,
        }
        config.observation.encoder.rgb.obs_randomizer_class = None
        config.algo.rnn.enabled = rnn
        config.algo.rnn.horizon = 4
        config.algo.rnn.hidden_dim = 32
        config.algo.actor_layer_dims = (32, 32)
        config.train.seq_length = 4 if rnn else 1
    ObsUtils.initialize_obs_utils_with_config(config)
    dataset = SequenceDataset(
        hdf5_path=str(demo_file),
        obs_keys=("proprio", "pixels"),
        dataset_keys=("actions",),
        frame_stack=1,
        seq_length=config.train.seq_length,
        pad_seq_length=True,
        hdf5_cache_mode=None,
        filter_by_attribute="train",
    )
    algo = algo_factory(
        "bc", config, obs_key_shapes={"pixels": [3, 32, 32], "proprio": [4]}, ac_dim=2,
        device=torch.device("cpu"),
    )  # fmt: skip
    core = algo.nets["policy"].nets["encoder"].nets["obs"].obs_nets["pixels"]
    assert isinstance(core, PixioCore)
    frozen = {k: v.clone() for k, v in core.encoder.state_dict().items()}
    trainable = {k: v.clone() for k, v in core.projection.state_dict().items()}
    loader = DataLoader(
        dataset, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    algo.set_train()
    assert not core.encoder.training  # robomimic's train() leaves the frozen encoder in eval
    losses = []
    for _step, batch in zip(range(4), loader, strict=False):
        inputs = algo.process_batch_for_training(batch)
        inputs = algo.postprocess_batch_for_training(inputs, obs_normalization_stats=None)
        info = algo.train_on_batch(inputs, epoch=0, validate=False)
        losses.append(float(info["losses"]["action_loss"]))
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    for key, value in core.encoder.state_dict().items():
        torch.testing.assert_close(value, frozen[key])  # the encoder is frozen
    assert not torch.equal(core.projection.weight, trainable["weight"])  # the projection learns


def test_pixio_core_rejects_non_rgb_input(files):
    _, encoder_dir = files
    with pytest.raises(ValueError, match=r"RGB images \(3, H, W\)"):
        PixioCore((1, 32, 32), encoder_source=str(encoder_dir))
    core = PixioCore((3, 32, 32), encoder_source=str(encoder_dir), image_size=32)
    assert core.output_shape() == [192] and core(torch.rand(2, 3, 32, 32)).shape == (2, 192)
    with pytest.raises(ValueError, match="expected images"):
        core(torch.rand(2, 3, 16, 16))
