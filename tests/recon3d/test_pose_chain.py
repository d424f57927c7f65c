"""The pose chain end to end: a model overfit on one scene gets perfect pose metrics.

Guards every convention between the data (OpenCV cam2world), the loss (poses relative to view
0), ``infer`` (metric poses) and the metrics (AUC from relative pose errors): a flipped
quaternion order, an inverted pose or a missing re-scaling anywhere makes the AUC collapse even
though the training loss still falls.
"""

import torch

from pixio_3d.checkpoint import build_model
from pixio_3d.data import MultiViewDataset
from pixio_3d.data.scenes import generate_dataset
from pixio_3d.evaluation.evaluate import reconstruction_metrics
from pixio_3d.training.losses import ReconstructionLoss
from pixio_3d.training.train import prepare_batch
from pixio_core import create_encoder

TINY = {
    "width": 64,
    "depth": 1,
    "num_heads": 2,
    "dpt_features": 16,
    "dpt_out_channels": (16, 16, 16, 16),
    "pose_hidden_dim": 32,
}


def test_overfit_scene_scores_perfect_poses(tmp_path):
    generate_dataset(tmp_path, 1, 6, 48, 64, seed=3, progress=False)
    sample = MultiViewDataset(tmp_path, num_views=3, seed=0)[0]
    batch = prepare_batch(
        {k: v[None] if torch.is_tensor(v) else v for k, v in sample.items()}, "cpu"
    )
    torch.manual_seed(0)
    encoder = create_encoder("pixio_vitt16", depth=2).requires_grad_(False)
    model = build_model("reconstruction", encoder, TINY)
    loss_fn = ReconstructionLoss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(250):
        loss, _ = loss_fn(model(batch["images"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        prediction = model.eval().infer(batch["images"])
    prediction = {k: v[0] for k, v in prediction.items() if torch.is_tensor(v) and v.ndim > 1}
    metrics = reconstruction_metrics(prediction, sample)
    assert metrics["pose_auc_30"] > 0.9 and metrics["pose_rra_15"] == 1.0
    assert metrics["pose_ate_sim3"] < 0.05  # metres
    # metric poses, not just up to scale: camera centres relative to view 0 match
    gt = torch.linalg.inv(sample["cam2world"][0]) @ sample["cam2world"]
    torch.testing.assert_close(
        prediction["camera_poses"][:, :3, 3].float(), gt[:, :3, 3].float(), atol=0.1, rtol=0.05
    )
