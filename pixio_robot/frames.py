"""In-domain pre-training data: frames rendered from the project's own simulators, as
WebDataset shards that ``pixio-pretrain data=sim_frames`` reads like any other data.

Sources (``sources`` maps each to a frame count):

* ``push_block``: ``PushBlock-v0`` (random goal, so every layout appears) driven by its
  scripted expert with Gaussian action noise, the camera moved by up to ``camera_jitter``
  metres per episode;
* ``metaworld``: ``{task: count}``, each MetaWorld task's randomised configurations driven by
  MetaWorld's scripted policy with action noise, the same camera jitter;
* ``rooms``: views of the procedural 3D rooms of :mod:`pixio_3d.data.scenes`.

Every ``every``-th step of an episode is kept. Output is byte-for-byte a function of the
settings and ``seed``: episode seeds are drawn from ``numpy.random.SeedSequence([seed, source,
episode])``, sources are interleaved in a fixed order, PNGs are lossless and tar members carry
no time stamps. Shards are written whole under a temporary name and renamed, so a stopped run
leaves only complete shards; ``frames.json`` (written last) lists them with the settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pixio_core.io import atomic_file, atomic_write_text

MANIFEST = "frames.json"
SHARD_PATTERN = "frames-{:06d}.tar"
SOURCE_IDS = {"push_block": 1, "metaworld": 2, "rooms": 3}


@dataclass
class FrameSettings:
    """What ``pixio-robot frames`` renders; every field goes into ``frames.json``."""

    sources: dict[str, Any] = field(default_factory=lambda: {"push_block": 1000})
    image_size: int = 128
    seed: int = 0
    every: int = 2
    action_noise: float = 0.3
    camera_jitter: float = 0.03
    samples_per_shard: int = 1000

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise ValueError(f"image_size must be an int of at least 16, got {self.image_size!r}")
        if self.every < 1 or self.samples_per_shard < 1:
            raise ValueError(
                f"every and samples_per_shard must be at least 1, got {self.every} and "
                f"{self.samples_per_shard}"
            )
        if self.action_noise < 0 or self.camera_jitter < 0:
            raise ValueError("action_noise and camera_jitter must not be negative")
        unknown = sorted(set(self.sources) - set(SOURCE_IDS))
        if unknown:
            raise ValueError(
                f"unknown frame source(s) {unknown}; valid sources are {sorted(SOURCE_IDS)}"
            )
        if not self.streams():
            raise ValueError(f"no frames requested: sources={self.sources!r}")

    def streams(self) -> list[tuple[str, str | None, int]]:
        """``(source, task, count)`` for every stream with frames, in a fixed order."""
        out = []
        for source in SOURCE_IDS:
            value = self.sources.get(source)
            if value is None:
                continue
            if source == "metaworld":
                if not isinstance(value, Mapping):
                    raise ValueError(
                        f"sources.metaworld must map task names to frame counts, got {value!r}"
                    )
                out += [
                    (source, str(task), _count(f"metaworld.{task}", n)) for task, n in value.items()
                ]
            else:
                out.append((source, None, _count(source, value)))
        return [stream for stream in out if stream[2] > 0]


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"sources.{name} must be a frame count (an int >= 0), got {value!r}")
    return value


def _episode_rng(seed: int, source: str, task: str | None, episode: int) -> np.random.Generator:
    salt = int.from_bytes(hashlib.sha256((task or "").encode()).digest()[:4], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, SOURCE_IDS[source], salt, episode]))


def _camera(env: Any) -> tuple[Any, Any, int]:
    """``(model, data, camera id)`` of the camera an env renders its pixels from."""
    import mujoco

    inner = env.unwrapped
    sim = getattr(inner, "_inner", inner)  # MetaWorldPixelEnv wraps MetaWorld's env
    camera = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_CAMERA, inner.camera)
    if camera < 0:
        raise ValueError(f"{type(inner).__name__} has no camera named {inner.camera!r}")
    return sim.model, sim.data, camera


def env_frames(
    env_id: str,
    env_kwargs: dict[str, Any],
    expert: Any,
    settings: FrameSettings,
    source: str,
    task: str | None = None,
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Endless ``(frame, metadata)`` from expert episodes with action noise and camera jitter."""
    import gymnasium as gym
    import pixio_envs  # noqa: F401  (registers the environments)

    env = gym.make(env_id, **env_kwargs, image_size=settings.image_size)
    try:
        model, _, camera = _camera(env)
        home = model.cam_pos[camera].copy()
        episode = 0
        while True:
            rng = _episode_rng(settings.seed, source, task, episode)
            model.cam_pos[camera] = home + rng.uniform(-1, 1, 3) * settings.camera_jitter
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            expert.reset()
            step = 0
            while True:
                if step % settings.every == 0:
                    yield obs["pixels"], {"episode": episode, "step": step}
                action = expert.get_action(obs)
                if settings.action_noise:
                    action = action + rng.normal(0, settings.action_noise, size=action.shape)
                action = np.clip(action, -1, 1).astype(np.float32)
                obs, _, terminated, truncated, _ = env.step(action)
                step += 1
                if terminated or truncated:
                    break
            episode += 1
    finally:
        env.close()


def room_frames(settings: FrameSettings) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Endless ``(frame, metadata)``: the 8 views of one procedural room after another."""
    from pixio_3d.data.scenes import build_scene, render_scene, scene_seed

    index = 0
    while True:
        spec = build_scene(scene_seed(settings.seed, index), num_views=8)
        views = render_scene(spec, settings.image_size, settings.image_size)
        for view, rgb in enumerate(views.rgb):
            yield rgb, {"episode": index, "step": view}
        index += 1


def stream_frames(
    settings: FrameSettings, source: str, task: str | None
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    if source == "rooms":
        return room_frames(settings)
    if source == "push_block":
        from pixio_envs.push_block import PushBlockExpert

        return env_frames("pixio_envs/PushBlock-v0", {}, PushBlockExpert(), settings, source)
    from pixio_envs.metaworld_pixels import MetaWorldExpert

    expert = MetaWorldExpert(task)  # a clear error for an unknown task, before any rendering
    return env_frames("pixio_envs/MetaWorld", {"task": task}, expert, settings, source, task)


def interleave(settings: FrameSettings) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """All streams' frames, each next frame from the stream furthest behind its share."""
    streams = settings.streams()
    iterators = [stream_frames(settings, source, task) for source, task, _ in streams]
    done = [0] * len(streams)
    total = sum(count for _, _, count in streams)
    for _ in range(total):
        k = min(
            (i for i in range(len(streams)) if done[i] < streams[i][2]),
            key=lambda i: ((done[i] + 1) / streams[i][2], i),
        )
        frame, meta = next(iterators[k])
        done[k] += 1
        source, task, _ = streams[k]
        yield frame, {"source": source, **({"task": task} if task else {}), **meta}
    for iterator in iterators:
        iterator.close()


def _png(frame: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), 0, 0o644
    tar.addfile(info, io.BytesIO(payload))


def _write_shard(path: Path, samples: list[tuple[str, bytes, bytes]]) -> None:
    with atomic_file(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, png, meta in samples:
            _add(tar, f"{key}.png", png)
            _add(tar, f"{key}.json", meta)


def write_frame_shards(
    output: str | Path, settings: FrameSettings, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Render every requested frame into ``output/frames-XXXXXX.tar``; returns the manifest.

    A folder that already holds shards or a manifest is refused unless ``overwrite`` (then only
    those files are replaced; nothing else in the folder is touched).
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output {out} exists and is not a folder")
    existing = sorted(out.glob("frames-*.tar")) + (
        [out / MANIFEST] if (out / MANIFEST).exists() else []
    )
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds frame shards ({len(existing)} files); pass overwrite=true to "
            f"replace them or choose another output"
        )
    for path in existing:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    total = sum(count for _, _, count in settings.streams())
    started = time.perf_counter()
    shards: list[str] = []
    counts: dict[str, int] = {}
    buffer: list[tuple[str, bytes, bytes]] = []
    bar = tqdm(total=total, desc="rendering frames", unit="frame", disable=not progress)
    for index, (frame, meta) in enumerate(interleave(settings)):
        name = meta["source"] + (f":{meta['task']}" if "task" in meta else "")
        counts[name] = counts.get(name, 0) + 1
        buffer.append((f"{index:08d}", _png(frame), json.dumps(meta, sort_keys=True).encode()))
        if len(buffer) == settings.samples_per_shard:
            shards.append(SHARD_PATTERN.format(len(shards)))
            _write_shard(out / shards[-1], buffer)
            buffer = []
        bar.update()
    if buffer:
        shards.append(SHARD_PATTERN.format(len(shards)))
        _write_shard(out / shards[-1], buffer)
    bar.close()
    manifest = {
        "settings": {
            "sources": settings.sources,
            "image_size": settings.image_size,
            "seed": settings.seed,
            "every": settings.every,
            "action_noise": settings.action_noise,
            "camera_jitter": settings.camera_jitter,
            "samples_per_shard": settings.samples_per_shard,
        },
        "frames": total,
        "frames_per_source": counts,
        "shards": shards,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    return manifest
