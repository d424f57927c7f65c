"""WebDataset tar shards streamed for pre-training: shuffle buffer, split across ranks and workers.

``urls`` may be a brace pattern (``/data/train-{000000..000999}.tar``), a list, or ``pipe:``
commands (``pipe:curl -s https://.../train-{0..9}.tar``). Each epoch shuffles the shard order
with a seed of ``(seed, epoch)``; rank ``r`` of ``W`` takes shards ``r::W`` and its DataLoader
worker ``w`` of ``K`` takes every ``K``-th of those, then samples pass a shuffle buffer.
Curation metadata lives beside each shard as ``<shard>.curation.jsonl`` (one record per sample
``key``), written by ``pixio-curate``. A sample that fails to decode, and an unreadable shard,
are skipped and counted in the ``skipped`` field of the next sample.

Resuming a stream is not exact (unlike image folders): a resumed run starts a fresh shuffle
seeded by its start step.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import braceexpand
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pixio_core.data.curation import record_keep_probability
from pixio_core.data.folder import decode_rgb
from pixio_core.data.sampler import mix_seed

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


def expand_urls(urls: str | list[str]) -> list[str]:
    """Brace-expand every pattern (a local folder stands for the ``*.tar`` shards in it, sorted,
    leaving out hidden files such as a writer's temporaries); local shards must exist (a clear
    error before training)."""
    patterns = [urls] if isinstance(urls, str) else list(urls)
    expanded = []
    for pattern in patterns:
        if Path(pattern).is_dir():
            shards = [p for p in Path(pattern).glob("*.tar") if not p.name.startswith(".")]
            expanded += sorted(str(p) for p in shards)
        else:
            expanded += list(braceexpand.braceexpand(pattern))
    if not expanded:
        raise FileNotFoundError(f"no shards in {urls!r}")
    missing = [
        u
        for u in expanded
        if not u.startswith(("pipe:", "http://", "https://")) and not Path(u).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(expanded)} shards do not exist, e.g. {missing[:3]}"
        )
    return expanded


def curation_path(shard: str) -> Path:
    return Path(shard[: -len(".tar")] if shard.endswith(".tar") else shard).with_suffix(
        ".curation.jsonl"
    )


class ShardDataset(IterableDataset):
    """An endless stream of ``{"image", "key", "skipped"}`` from WebDataset shards (see module doc)."""

    def __init__(
        self,
        urls: str | list[str],
        transform: Callable,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle_buffer: int = 1000,
        start_epoch: int = 0,
        curation: bool = False,
        loss_scale: float = 1.0,
        min_side: int = 0,
        entropy_threshold: float | None = None,
    ) -> None:
        self.shards = expand_urls(urls)
        if len(self.shards) < world_size:
            raise ValueError(
                f"{len(self.shards)} shards cannot be split across {world_size} processes"
            )
        self.transform = transform
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle_buffer = shuffle_buffer
        self.start_epoch = start_epoch
        self.curation = curation
        self.loss_scale = loss_scale
        self.min_side = min_side
        self.entropy_threshold = entropy_threshold

    def _keep_probability(self, shard: str) -> dict[str, float]:
        path = curation_path(shard)
        if not self.curation or not path.is_file():
            return {}
        keep = {}
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            keep[record["key"]] = record_keep_probability(
                record, self.loss_scale, self.min_side, self.entropy_threshold
            )
        return keep

    def _samples(self, shards: list[str], counter: list[int]) -> Iterator[tuple[str, bytes, float]]:
        import webdataset as wds

        def skip_and_count(error: Exception) -> bool:
            counter[0] += 1
            return True

        for shard in shards:
            keep = self._keep_probability(shard)
            source = wds.tarfile_to_samples(handler=skip_and_count)(iter([{"url": shard}]))
            for sample in source:
                data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
                if data is None:
                    counter[0] += 1
                    continue
                yield sample["__key__"], data, keep.get(sample["__key__"], 1.0)

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        counter = [0]
        epoch = self.start_epoch
        while True:
            order = list(self.shards)
            random.Random(mix_seed(self.seed, epoch)).shuffle(order)
            mine = order[self.rank :: self.world_size][worker_id::workers]
            if not mine:  # more workers than shards on this rank: the others carry the stream
                return
            rng = random.Random(mix_seed(self.seed, epoch, self.rank, worker_id))
            buffer: list[tuple[str, bytes]] = []
            produced = 0
            for key, data, keep in self._samples(mine, counter):
                if keep < 1.0 and rng.random() >= keep:
                    continue
                buffer.append((key, data))
                if len(buffer) < self.shuffle_buffer:
                    continue
                item = self._decode(*buffer.pop(rng.randrange(len(buffer))), counter)
                if item is not None:
                    produced += 1
                    yield item
            rng.shuffle(buffer)
            for key, data in buffer:
                item = self._decode(key, data, counter)
                if item is not None:
                    produced += 1
                    yield item
            if produced == 0:
                raise RuntimeError(
                    f"rank {self.rank} worker {worker_id} read no usable sample from its shards {mine[:3]} "
                    f"({counter[0]} failures): check the shards and the curation filters"
                )
            epoch += 1

    def _decode(self, key: str, data: bytes, counter: list[int]) -> dict | None:
        rgb = decode_rgb(data)
        if rgb is None:  # any undecodable sample is skipped and counted
            counter[0] += 1
            return None
        skipped, counter[0] = counter[0], 0
        return {"image": self.transform(rgb), "key": key, "skipped": torch.tensor(skipped)}


def write_shards(files: list[Path], root: Path, pattern: str, samples_per_shard: int) -> list[Path]:
    """Pack image files into WebDataset shards (``pattern`` like ``train-%06d.tar``); returns the shards."""
    import webdataset as wds

    root.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(root / pattern), maxcount=samples_per_shard, verbose=0) as sink:
        for index, path in enumerate(files):
            sink.write(
                {"__key__": f"{index:08d}", path.suffix.lower().lstrip("."): path.read_bytes()}
            )
    return sorted(root.glob(pattern.replace("%06d", "*")))
