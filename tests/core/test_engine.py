"""The one training engine: scalars, gradient clipping, per-group lr scales, accumulation of
extra terms, the non-finite stop, and checkpoint / resume through its hooks."""

import pytest
import torch

from pixio_core.checkpoint import load_checkpoint
from pixio_core.engine import NonFiniteLossError, checkpoint_hook, resume, train_steps


def _batches(count=4):
    generator = torch.Generator().manual_seed(0)
    while True:
        x = torch.randn(count, 3, generator=generator)
        yield {"x": x, "y": x.sum(1, keepdim=True)}


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def _loss(model):
    def loss_fn(batch, step, micro):
        error = model(batch["x"]) - batch["y"]
        return error.square().mean(), {"abs": error.abs().mean(), "micro": micro}

    return loss_fn


def test_scalars_clipping_lr_scales_and_accumulated_terms():
    model = _model()
    optimizer = torch.optim.SGD(
        [{"params": [model.weight], "lr_scale": 1.0}, {"params": [model.bias], "lr_scale": 0.5}]
    )
    logged = []
    losses = train_steps(
        model,
        loss_fn=_loss(model),
        batches=_batches(),
        optimizer=optimizer,
        lr_schedule=[0.1, 0.05, 0.05],
        start_step=0,
        end_step=3,
        device="cpu",
        accumulation_steps=2,
        grad_clip=1e-3,
        log_fn=lambda step, scalars: logged.append(scalars),
        progress=False,
        throughput_key="rows_per_s",
    )
    assert len(losses) == 3 and [s["loss"] for s in logged] == losses
    assert {"loss", "lr", "step_s", "rows_per_s", "grad_norm", "abs", "micro"} <= set(logged[0])
    assert logged[0]["micro"] == 0.5  # the mean over the two micro-batches
    assert [group["lr"] for group in optimizer.param_groups] == [0.05, 0.025]
    assert all(s["grad_norm"] > 1e-3 for s in logged)  # measured before clipping


def test_non_finite_loss_stops_before_the_step():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def nan_loss(batch, step, micro):
        return model(batch["x"]).mean() * float("nan")

    with pytest.raises(NonFiniteLossError, match="at step 0"):
        train_steps(
            model,
            loss_fn=nan_loss,
            batches=_batches(),
            optimizer=optimizer,
            lr_schedule=[0.1],
            start_step=0,
            end_step=1,
            device="cpu",
            progress=False,
        )
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_checkpoint_hook_and_resume_continue_exactly(tmp_path):
    def run(start, end, model, optimizer):
        hook = checkpoint_hook(
            tmp_path / "ckpt",
            model=model,
            optimizer=optimizer,
            every=2,
            total_steps=4,
            keep_last=1,
            config={"kind": "test"},
        )
        batches = _batches()
        for _ in range(start):  # the data a resumed run skips
            next(batches)
        return train_steps(
            model,
            loss_fn=_loss(model),
            batches=batches,
            optimizer=optimizer,
            lr_schedule=[0.1] * 4,
            start_step=start,
            end_step=end,
            device="cpu",
            on_step=hook,
            progress=False,
        )

    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    straight = run(0, 4, model, optimizer)
    final, _, _ = load_checkpoint(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "step_00000002").exists()  # keep_last=1 pruned it
    # a run that dies after step 2 (its checkpoint is the newest one), then resumes
    model = _model()
    run(0, 2, model, torch.optim.Adam(model.parameters(), lr=0.1))
    resumed_model = _model()
    resumed_optimizer = torch.optim.Adam(resumed_model.parameters(), lr=0.1)
    start = resume(tmp_path / "ckpt", model=resumed_model, optimizer=resumed_optimizer)
    assert start == 2
    resumed = run(2, 4, resumed_model, resumed_optimizer)
    assert resumed == straight[2:]
    for key, value in final.items():
        assert torch.equal(resumed_model.state_dict()[key], value)
