"""WebDataset shards: rank/worker splitting, bad samples counted, curation per shard, training."""

import io
import tarfile

import pytest
from hydra import compose, initialize_config_dir

from pixio_core.checkpoint import save_checkpoint, write_last_pointer
from pixio_core.cli.common import CONFIG_DIR
from pixio_core.data import find_images, make_shapes_dataset, pretrain_transform
from pixio_core.data.curation import read_curation
from pixio_core.data.shards import ShardDataset, curation_path, expand_urls, write_shards
from pixio_core.models import MaskingConfig, create_mae


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("wds")
    data = make_shapes_dataset(root / "images", images_per_class=3, image_size=48, progress=False)
    return write_shards(find_images(data), root / "shards", "train-%06d.tar", samples_per_shard=6)


def take(stream, count):
    return [item for item, _ in zip(stream, range(count), strict=False)]


def test_brace_patterns_and_missing_shards(shards):
    pattern = str(shards[0]).replace("000000", "{000000..000003}")
    assert expand_urls(pattern) == [str(p) for p in shards]
    with pytest.raises(FileNotFoundError, match="do not exist"):
        expand_urls(str(shards[0]).replace("000000", "{000000..000009}"))


def test_a_folder_stands_for_its_shards(shards, tmp_path):
    (shards[0].parent / ".train-000009.abc.tmp.tar").write_bytes(b"half written")
    assert expand_urls(str(shards[0].parent)) == sorted(str(p) for p in shards)
    with pytest.raises(FileNotFoundError, match="no shards"):
        expand_urls(str(tmp_path))


def test_ranks_see_disjoint_shards_covering_everything(shards):
    transform = pretrain_transform(32)
    urls = [str(p) for p in shards]
    keys = []
    for rank in range(2):
        stream = ShardDataset(urls, transform, seed=1, rank=rank, world_size=2, shuffle_buffer=4)
        keys.append({item["key"] for item in take(stream, 12)})  # 2 shards x 6 = one epoch
    assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == 24
    again = ShardDataset(urls, transform, seed=1, rank=0, world_size=2, shuffle_buffer=4)
    first = take(again, 12)
    assert [item["key"] for item in first] == [
        item["key"]
        for item in take(
            ShardDataset(urls, transform, seed=1, rank=0, world_size=2, shuffle_buffer=4), 12
        )
    ]
    assert first[0]["image"].shape == (3, 32, 32)


def test_bad_samples_are_skipped_and_counted(tmp_path):
    shard = tmp_path / "bad-000000.tar"
    good = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (40, 40), (10, 200, 30)).save(good, format="PNG")
    with tarfile.open(shard, "w") as tar:
        for key, payload in (
            ("a", b"not an image"),
            ("b", good.getvalue()),
            ("c", b"\x89PNG broken"),
        ):
            info = tarfile.TarInfo(f"{key}.png")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    items = take(ShardDataset([str(shard)], pretrain_transform(32), shuffle_buffer=1), 2)
    assert [item["key"] for item in items] == ["b", "b"]
    # the stream repeats: "a" fails before the first "b"; "c" and then "a" again before the second
    assert [int(item["skipped"]) for item in items] == [1, 2]


def compose_config(name, overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=overrides)


def test_curate_shards_then_pretrain_on_curated_shards(shards, tmp_path, capsys):
    from pixio_core.cli.curate import run as curate
    from pixio_core.cli.pretrain import run as pretrain

    mae = create_mae("pixio_vitt16", depth=1, image_size=64, masking=MaskingConfig(0.75, 2))
    path = save_checkpoint(
        tmp_path / "mae" / "step_1", mae.state_dict(), {"kind": "mae", **mae.config_dict()}
    )
    write_last_pointer(tmp_path / "mae", path)
    pattern = str(shards[0]).replace("000000", "{000000..000003}")
    curate(
        compose_config(
            "curate",
            [
                f"checkpoint={tmp_path / 'mae'}",
                "data.kind=webdataset",
                f"data.urls='{pattern}'",
                "num_masks=1",
            ],
        )
    )
    for shard in shards:
        records = read_curation_keys(curation_path(str(shard)))
        assert len(records) == 6 and all(r["loss"] > 0 for r in records)

    out = pretrain(
        compose_config(
            "pretrain",
            [
                f"output_dir={tmp_path / 'run'}",
                "data=webdataset",
                f"data.urls='{pattern}'",
                "data.curation=true",
                "data.num_workers=0",
                "data.shuffle_buffer=4",
                "model.image_size=64",
                "train.total_steps=3",
                "train.global_batch_size=4",
                "train.checkpoint_every=3",
                "train.recon_every=3",
                "optim.warmup_steps=1",
            ],
        )
    )
    assert (out / "checkpoints" / "step_00000003").is_dir()
    assert "4 WebDataset shards" in capsys.readouterr().out


def read_curation_keys(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_folder_curation_reader_rejects_shard_records(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"key": "a", "loss": 1.0}\n')
    with pytest.raises(ValueError, match="'path' and 'loss'"):
        read_curation(tmp_path / "x.jsonl")
