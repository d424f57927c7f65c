"""Nothing lost, nothing silently wrong: runs and checkpoints under faults and bad input."""

import json
import warnings

import pytest
import torch

from pixio_core.checkpoint import (
    NonFiniteCheckpointError,
    load_checkpoint,
    resolve_checkpoint_dir,
    save_checkpoint,
)
from pixio_core.cli.console import compose_config
from pixio_core.engine import checkpoint_hook
from pixio_core.loading import load_encoder, save_encoder
from pixio_core.models import create_encoder
from pixio_core.runlog import read_log
from pixio_core.runs import RunMismatchError

TINY = [
    "model.image_size=64",
    "train.global_batch_size=2",
    "train.total_steps=2",
    "train.checkpoint_every=1",
    "train.recon_every=1000",
    "optim.warmup_steps=1",
    "data.images_per_class=1",
    "precision=fp32",
]


def _pretrain(out, *extra):
    from pixio_core.cli.pretrain import run

    return run(compose_config("pretrain", [f"output_dir={out}", *TINY, *extra]))


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_another_run_in_the_folder_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    _pretrain(out)
    before = _snapshot(out)
    with pytest.raises(RunMismatchError, match=r"model\.mask_ratio is 0\.75 there, 0\.5 now"):
        _pretrain(out, "model.mask_ratio=0.5", "train.total_steps=4")
    with pytest.raises(RunMismatchError, match="train.resume=false"):
        _pretrain(out, "train.resume=false")
    with pytest.raises(RunMismatchError, match="seed is 0 there, 1 now"):
        _pretrain(out, "seed=1")
    assert _snapshot(out) == before  # not one byte of the old run changed
    # the same run with a larger step budget continues it
    _pretrain(out, "train.total_steps=3")
    assert [entry["step"] for entry in read_log(out / "log.jsonl")] == [0, 1, 2]
    assert json.loads((out / "run.json").read_text())["identity"]["model.mask_ratio"] == 0.75


def test_a_missing_last_pointer_resumes_from_the_newest_checkpoint_not_step_0(tmp_path):
    out = tmp_path / "run"
    _pretrain(out)
    (out / "checkpoints" / "last").unlink()
    stale = out / "checkpoints" / ".step_00000003.x1y2.tmp"  # a killed write's leftovers
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    pointer = out / "checkpoints" / ".last.k3j9_x2a.tmp"  # killed while writing `last`
    pointer.write_text("step_000")
    users = out / "checkpoints" / "notes.tmp"  # not ours: kept
    users.write_text("mine")
    with pytest.warns(UserWarning, match="newest complete checkpoint, step_00000002"):
        _pretrain(out, "train.total_steps=3")
    assert [entry["step"] for entry in read_log(out / "log.jsonl")] == [0, 1, 2]
    assert not stale.exists() and not pointer.exists() and users.read_text() == "mine"


def test_non_finite_weights_or_optimizer_state_are_never_saved(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    save = checkpoint_hook(
        tmp_path, model=model, optimizer=optimizer, every=1, total_steps=9, keep_last=3
    )
    save(0, {"loss": 1.0})
    optimizer.state[model.weight]["exp_avg"][0, 1] = float("nan")
    with pytest.raises(NonFiniteCheckpointError, match=r"optimizer.*state\[0\]\.exp_avg"):
        save(1, {"loss": 1.0})
    with torch.no_grad():
        model.bias.fill_(float("inf"))
    with pytest.raises(NonFiniteCheckpointError, match="bias holds 1 non-finite"):
        save_checkpoint(tmp_path / "direct", model.state_dict(), {})
    assert resolve_checkpoint_dir(tmp_path).name == "step_00000001"  # the good one stays
    assert not (tmp_path / "direct").exists()


def test_damaged_checkpoint_files_are_named(tmp_path):
    folder = save_encoder(create_encoder("pixio_vitt16", depth=1), tmp_path / "encoder")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-100] ^= 0x01  # one flipped bit inside a tensor
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.safetensors does not match the SHA-256"):
        load_checkpoint(folder)
    with pytest.raises(ValueError, match="flipped bits"):
        load_encoder(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact checkpoint loads without a warning
        save_encoder(create_encoder("pixio_vitt16", depth=1), tmp_path / "fine")
        load_encoder(tmp_path / "fine")


def test_an_edited_config_or_integer_weights_do_not_build_a_wrong_model(tmp_path):
    folder = save_encoder(create_encoder("pixio_vitt16", depth=1), tmp_path / "encoder")
    config = json.loads((folder / "config.json").read_text())
    config["encoder"]["num_heads"] = 6  # the shapes still fit: only the hash can tell
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json does not match the SHA-256"):
        load_encoder(folder)
    from safetensors.torch import save_file

    state = create_encoder("pixio_vitt16", depth=1).state_dict()
    state["norm.weight"] = state["norm.weight"].to(torch.int32)
    save_file(state, str(tmp_path / "ints.safetensors"))
    with pytest.raises(ValueError, match="norm.weight: checkpoint dtype torch.int32"):
        load_encoder(tmp_path / "ints.safetensors")


FSDP_WORKER = """
import json, os, sys
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from pixio_core.checkpoint import NonFiniteCheckpointError, save_sharded_checkpoint

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
fully_shard(model)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
model(torch.randn(4, 8)).sum().backward()
optimizer.step()
out = sys.argv[1]
save_sharded_checkpoint(f"{out}/step_1", model, optimizer, {}, {"step": 1}, rank == 0)
with torch.no_grad():  # one NaN in the shard of rank 1 only
    if rank == 1:
        model[0].weight.to_local().view(-1)[0] = float("nan")
try:
    save_sharded_checkpoint(f"{out}/step_2", model, optimizer, {}, {"step": 2}, rank == 0)
    outcome = "saved"
except NonFiniteCheckpointError as error:
    outcome = str(error)
with open(f"{out}/rank{rank}.json", "w") as handle:
    json.dump(outcome, handle)
dist.destroy_process_group()
"""


def test_fsdp_checkpoints_with_a_non_finite_shard_stop_every_rank_before_writing(tmp_path):
    import os
    import subprocess
    import sys

    worker = tmp_path / "worker.py"
    worker.write_text(FSDP_WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", str(worker), str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    own, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (1, 0))
    assert "the weights of" in own and "0.weight holds 1 non-finite" in own
    assert "another rank found non-finite values" in other
    assert (tmp_path / "step_1" / "model.safetensors").is_file()  # the good one stays
    assert not (tmp_path / "step_2").exists() and not (tmp_path / ".step_2.tmp").exists()
    # the consolidated files of an FSDP checkpoint carry their hashes like any other
    config = json.loads((tmp_path / "step_1" / "config.json").read_text())
    assert set(config["files"]) == {"model.safetensors", "train_state.pt"}
    load_checkpoint(tmp_path / "step_1")
    weights = tmp_path / "step_1" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.safetensors does not match the SHA-256"):
        load_checkpoint(tmp_path / "step_1")
