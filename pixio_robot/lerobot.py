"""LeRobotDataset v3.0 on disk: our own writer and reader (the ``lerobot`` package needs a torch
older than ours, so it is not a dependency; this follows its documented layout and its source).

    meta/info.json                         codebase_version "v3.0", fps, features, totals, paths
    meta/tasks.parquet                     one row per task: index = the task text, task_index
    meta/stats.json                        min/max/mean/std/count (+ quantiles) per feature
    meta/episodes/chunk-000/file-000.parquet  one row per episode: length, where its rows and
                                           video frames are, its own stats
    data/chunk-000/file-000.parquet        one row per frame: the non-video features
    videos/<key>/chunk-000/file-000.mp4    the frames of all episodes of one camera, one after the
                                           other (an episode is a [from, to) timestamp range)

Our demos (robomimic HDF5, :mod:`pixio_robot.demos`) map to LeRobot feature names as LeRobot's
own simulation datasets name them: ``obs/pixels`` -> ``observation.images.pixels`` (video),
``obs/proprio`` -> ``observation.state``, ``obs/state`` -> ``observation.environment_state``,
``actions`` -> ``action``, ``rewards`` -> ``next.reward``, ``dones`` -> ``next.done``. What
LeRobot has no place for (the HDF5 train/valid masks, the env settings, per-demo seeds, the
non-image ``next_obs``) is kept in ``meta/pixio.json`` and in extra columns, so a round trip
HDF5 -> LeRobot -> HDF5 keeps every array bit for bit except the frames (lossy video unless
``codec="lossless"``) and the image of the very last ``next_obs`` of each demo (LeRobot stores no
observation after the last step; the last frame is repeated).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from pixio_core.io import atomic_directory, atomic_file

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
PIXIO_META = "meta/pixio.json"  # ours: env settings, HDF5 names and splits (LeRobot ignores it)
DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")

# ffmpeg settings per codec name: LeRobot's default is AV1 (libsvtav1, yuv420p, crf 30, g 2)
CODECS: dict[str, dict[str, Any]] = {
    "av1": {"codec": "libsvtav1", "pix_fmt": "yuv420p", "params": ["-crf", "30", "-g", "2"]},
    "h264": {"codec": "libx264", "pix_fmt": "yuv420p", "params": ["-crf", "18", "-g", "2"]},
    "lossless": {"codec": "libx264rgb", "pix_fmt": "rgb24", "params": ["-qp", "0", "-g", "2"]},
}
VIDEO_INFO_CODEC = {"libsvtav1": "av1", "libx264": "h264", "libx264rgb": "h264"}

NAMED_KEYS = {"proprio": "observation.state", "state": "observation.environment_state"}


def is_lerobot_dataset(path: str | os.PathLike) -> bool:
    return (Path(path) / "meta" / "info.json").is_file()


def check_output(output: Path, overwrite: bool) -> None:
    """A dataset folder is only written where nothing is, or where ``overwrite`` says so."""
    if output.is_file():
        raise FileExistsError(f"{output} is a file; a LeRobot dataset is a folder")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} already exists; pass overwrite=true or another output")


def feature_name(hdf5_key: str, image: bool) -> str:
    """``obs/pixels`` -> ``observation.images.pixels``, ``actions`` -> ``action``, ..."""
    part, _, key = hdf5_key.partition("/")
    if part == "actions":
        return "action"
    if part == "rewards":
        return "next.reward"
    if part == "dones":
        return "next.done"
    name = f"observation.images.{key}" if image else NAMED_KEYS.get(key, f"observation.{key}")
    return name if part == "obs" else f"next.{name}"


def _is_image(array: np.ndarray) -> bool:
    return array.dtype == np.uint8 and array.ndim == 4 and array.shape[-1] == 3


def _task_text(env_name: str, env_kwargs: dict[str, Any]) -> str:
    return str(env_kwargs.get("task") or env_name or "task")


def _feature_entry(array: np.ndarray, video: dict[str, Any] | None) -> dict[str, Any]:
    """One entry of ``info.json["features"]`` for per-frame values of ``array (T, ...)``."""
    if video is not None:
        height, width, channels = array.shape[1:]
        return {
            "dtype": "video",
            "shape": [height, width, channels],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": VIDEO_INFO_CODEC[video["codec"]],
                "video.pix_fmt": video["pix_fmt"],
                "video.fps": video["fps"],
                "video.channels": channels,
                "has_audio": False,
                "video.g": 2,
                **({"video.crf": 30} if video["codec"] == "libsvtav1" else {}),
                "video.extra_options": {},
                "is_depth_map": False,
            },
        }
    shape = list(array.shape[1:]) or [1]
    dtype = "bool" if array.dtype == np.bool_ else str(array.dtype)
    names = None
    if len(shape) == 1 and shape[0] > 1:
        names = [f"{i}" for i in range(shape[0])]
    return {"dtype": dtype, "shape": shape, "names": names}


def array_stats(values: np.ndarray, image: bool = False) -> dict[str, list]:
    """LeRobot's per-feature statistics. ``values (N, ...)``; images ``(N, H, W, 3)`` uint8 are
    reduced per channel to shape ``(3, 1, 1)`` in [0, 1], as LeRobot stores them."""
    if image:
        flat = values.reshape(-1, values.shape[-1]).astype(np.float64) / 255.0
        reshape = (-1, 1, 1)
    else:
        flat = values.reshape(len(values), -1).astype(np.float64)
        reshape = values.shape[1:] or (1,)
    stats = {
        "min": flat.min(0),
        "max": flat.max(0),
        "mean": flat.mean(0),
        "std": flat.std(0),
    }
    for q in QUANTILES:
        stats[f"q{round(q * 100):02d}"] = np.quantile(flat, q, axis=0)
    out = {k: np.asarray(v).reshape(reshape).tolist() for k, v in stats.items()}
    out["count"] = [int(len(values))]
    return out


@dataclass
class Episode:
    """One demo as arrays keyed by their HDF5 name (``obs/pixels``, ``actions``, ...)."""

    name: str
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]


def read_hdf5_episodes(path: str | os.PathLike) -> tuple[dict[str, Any], list[Episode], dict]:
    """``(env_args, episodes in demo order, masks {split: [names]})`` of a robomimic file."""
    from pixio_robot.demos import inspect_demos

    inspect_demos(path)  # a clear error for a file that is not one of ours
    episodes = []
    with h5py.File(path, "r") as handle:
        env_args = json.loads(handle["data"].attrs["env_args"])
        names = sorted(handle["data"], key=lambda name: int(name.split("_")[-1]))
        for name in names:
            group = handle["data"][name]
            arrays = {}
            group.visititems(
                lambda key, item, arrays=arrays: (
                    arrays.__setitem__(key, item[:]) if isinstance(item, h5py.Dataset) else None
                )
            )
            attrs = {k: v.item() if hasattr(v, "item") else v for k, v in group.attrs.items()}
            episodes.append(Episode(name, arrays, attrs))
        masks = {
            split: [
                n.decode() if isinstance(n, bytes) else str(n) for n in handle["mask"][split][:]
            ]
            for split in handle.get("mask", {})
        }
    return env_args, episodes, masks


def write_tasks(path: Path, tasks: list[str]) -> None:
    """``meta/tasks.parquet`` as LeRobot writes it with pandas: a ``task_index`` column and the
    task text as the frame's index named ``task`` (pandas metadata included, so
    ``pandas.read_parquet`` gives the same frame)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
             "metadata": {"encoding": "UTF-8"}}
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }  # fmt: skip
    table = pa.table(
        {"task_index": pa.array(range(len(tasks)), type=pa.int64()), "task": pa.array(tasks)}
    )
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def read_tasks(root: Path) -> dict[int, str]:
    import pyarrow.parquet as pq

    table = pq.read_table(root / "meta" / "tasks.parquet").to_pydict()
    text = table.get("task") or table.get("__index_level_0__") or []
    return dict(zip(table["task_index"], text, strict=True))


def _video_writer(path: Path, fps: float, codec: dict[str, Any]):
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config otherwise (1: errors)
    return imageio.get_writer(
        path,
        format="FFMPEG",
        fps=fps,
        codec=codec["codec"],
        pixelformat=codec["pix_fmt"],
        quality=None,
        output_params=list(codec["params"]),
        macro_block_size=1,
        ffmpeg_log_level="error",
    )


def _frame_values(key: str, value: np.ndarray) -> np.ndarray:
    """An HDF5 array as LeRobot keeps it per frame (``dones`` as ``next.done`` booleans)."""
    return value.astype(bool) if key == "dones" else value


def _arrow_column(values: np.ndarray):
    """Per-frame values as an arrow column: scalars plain, vectors as fixed-size lists (what
    LeRobot's ``datasets.Sequence(length=n)`` features are on disk)."""
    import pyarrow as pa

    if values.ndim == 1:
        return pa.array(values)
    flat = values.reshape(len(values), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])


def _stats_sample(frames: np.ndarray) -> np.ndarray:
    """The frames an episode's image statistics are computed on (about 16, evenly spaced)."""
    return frames[:: max(1, len(frames) // 16)]


def write_lerobot(
    output: str | os.PathLike,
    env_args: dict[str, Any],
    episodes: list[Episode],
    masks: dict[str, list[str]] | None = None,
    fps: float | None = None,
    codec: str = "av1",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``episodes`` as a LeRobotDataset v3.0 folder (atomically: it appears complete or
    not at all; an existing non-empty ``output`` is kept unless ``overwrite``). All episodes go
    to chunk 0, file 0 (one parquet file, one mp4 per camera)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    if not episodes:
        raise ValueError("no episodes to write")
    output = Path(output)
    check_output(output, overwrite)
    fps = float(fps or 20)
    fps = int(fps) if fps.is_integer() else fps  # LeRobot writes an int
    video = {**CODECS[codec], "fps": fps}
    first = {k: _frame_values(k, v) for k, v in episodes[0].arrays.items()}
    images = sorted(k for k, v in first.items() if k.startswith("obs/") and _is_image(v))
    # next_obs images are the next step's obs image (not stored); other next_obs are columns
    columns = sorted(k for k, v in first.items() if not _is_image(v))
    names = {k: feature_name(k, k in images) for k in images + columns}
    image_names = {names[k] for k in images}
    env_name, env_kwargs = env_args.get("env_name", ""), env_args.get("env_kwargs", {})
    task = _task_text(env_name, env_kwargs)
    features = {names[k]: _feature_entry(first[k], video if k in images else None) for k in names}
    for name in DEFAULT_FEATURES:
        dtype = "float32" if name == "timestamp" else "int64"
        features[name] = {"dtype": dtype, "shape": [1], "names": None}

    with atomic_directory(output, overwrite=overwrite) as root:
        writers = {
            k: _video_writer(
                root / VIDEO_PATH.format(video_key=names[k], chunk_index=0, file_index=0),
                fps,
                video,
            )
            for k in images
        }
        parts: dict[str, list[np.ndarray]] = {
            name: [] for name in [*names.values(), *DEFAULT_FEATURES]
        }
        episode_rows: list[dict[str, Any]] = []
        index = 0
        try:
            for episode_index, episode in enumerate(
                tqdm(episodes, desc="write LeRobot", disable=not progress)
            ):
                arrays = {k: _frame_values(k, v) for k, v in episode.arrays.items()}
                length = len(arrays["actions"])
                row: dict[str, Any] = {
                    "episode_index": episode_index,
                    "tasks": [task],
                    "length": length,
                    "data/chunk_index": 0,
                    "data/file_index": 0,
                    "dataset_from_index": index,
                    "dataset_to_index": index + length,
                }
                for k in images:
                    for frame in arrays[k]:
                        writers[k].append_data(frame)
                    parts[names[k]].append(_stats_sample(arrays[k]))
                    row[f"videos/{names[k]}/chunk_index"] = 0
                    row[f"videos/{names[k]}/file_index"] = 0
                    row[f"videos/{names[k]}/from_timestamp"] = index / fps
                    row[f"videos/{names[k]}/to_timestamp"] = (index + length) / fps
                for k in columns:
                    parts[names[k]].append(arrays[k])
                frame_index = np.arange(length, dtype=np.int64)
                parts["timestamp"].append((frame_index / fps).astype(np.float32))
                parts["frame_index"].append(frame_index)
                parts["episode_index"].append(np.full(length, episode_index, dtype=np.int64))
                parts["index"].append(np.arange(index, index + length, dtype=np.int64))
                parts["task_index"].append(np.zeros(length, dtype=np.int64))
                row["meta/episodes/chunk_index"] = 0
                row["meta/episodes/file_index"] = 0
                for name in [*names.values(), *DEFAULT_FEATURES]:
                    stats = array_stats(parts[name][-1], image=name in image_names)
                    for stat, value in stats.items():
                        row[f"stats/{name}/{stat}"] = value
                row["pixio/name"] = episode.name  # what the HDF5 side needs back
                row["pixio/attrs"] = json.dumps(episode.attrs)
                episode_rows.append(row)
                index += length
        finally:
            for writer in writers.values():
                writer.close()
        table = {
            name: _arrow_column(np.concatenate(parts[name]))
            for name in [*(names[k] for k in columns), *DEFAULT_FEATURES]
        }
        data_path = root / DATA_PATH.format(chunk_index=0, file_index=0)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), data_path)
        episodes_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path)
        write_tasks(root / "meta" / "tasks.parquet", [task])
        stats = {
            name: array_stats(np.concatenate(parts[name]), image=name in image_names)
            for name in [*names.values(), *DEFAULT_FEATURES]
        }
        (root / "meta" / "stats.json").write_text(json.dumps(stats, indent=2))
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": env_name or None,
            "total_episodes": len(episodes),
            "total_frames": index,
            "total_tasks": 1,
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
            "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if images else None,
            "features": features,
        }
        (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
        # what LeRobot has no place for, so that HDF5 -> LeRobot -> HDF5 is exact
        extra = {
            "env_args": env_args,
            "masks": masks or {},
            "hdf5_keys": {names[k]: k for k in images + columns},
            "codec": codec,
        }
        (root / PIXIO_META).write_text(json.dumps(extra, indent=2))
    return output


def _info(root: Path) -> dict[str, Any]:
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset (no meta/info.json)")
    try:
        info = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise ValueError(
            f"{root} is a LeRobot dataset of version {version or '?'}; this reader reads v3.x "
            "(convert older ones with lerobot's convert_dataset_v21_to_v30)"
        )
    for key in ("fps", "features", "data_path"):
        if key not in info:
            raise ValueError(f"{path} lacks {key!r}")
    return info


def _decode_video(path: Path) -> np.ndarray:
    import imageio.v2 as imageio

    if not path.is_file():
        raise FileNotFoundError(f"video file {path} is missing")
    with imageio.get_reader(path, format="FFMPEG") as reader:
        return np.stack([np.asarray(frame) for frame in reader])


class LeRobotReader:
    """Episodes of a LeRobotDataset v3.x folder as arrays (our own reader).

    ``reader.episode(i)`` -> ``{feature name: (T, ...) array}``, camera frames decoded from the
    mp4 by timestamp range (each video file is decoded once and kept while its episodes are read).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        import pyarrow.parquet as pq

        self.root = Path(root)
        self.info = _info(self.root)
        self.fps = float(self.info["fps"])
        self.features = self.info["features"]
        self.video_keys = [k for k, v in self.features.items() if v.get("dtype") == "video"]
        self.image_keys = [k for k, v in self.features.items() if v.get("dtype") == "image"]
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise FileNotFoundError(f"{self.root} has no meta/episodes/chunk-*/file-*.parquet")
        rows = []
        for file in files:
            rows += pq.read_table(file).to_pylist()
        self.episodes = sorted(rows, key=lambda row: row["episode_index"])
        extra = self.root / PIXIO_META
        self.pixio: dict[str, Any] = json.loads(extra.read_text()) if extra.is_file() else {}
        # feature name -> HDF5 key: ours from meta/pixio.json, else LeRobot's usual names
        self.hdf5_keys: dict[str, str] = self.pixio.get("hdf5_keys") or _default_hdf5_keys(
            self.features
        )
        self._data: dict[tuple[int, int], Any] = {}
        self._videos: dict[tuple[str, int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.episodes)

    def _data_table(self, chunk: int, file: int):
        import pyarrow.parquet as pq

        key = (chunk, file)
        if key not in self._data:
            path = self.root / self.info["data_path"].format(chunk_index=chunk, file_index=file)
            if not path.is_file():
                raise FileNotFoundError(f"data file {path} is missing")
            self._data = {key: pq.read_table(path)}
        return self._data[key]

    def _video(self, video_key: str, chunk: int, file: int) -> np.ndarray:
        key = (video_key, chunk, file)
        if key not in self._videos:
            path = self.root / self.info["video_path"].format(
                video_key=video_key, chunk_index=chunk, file_index=file
            )
            self._videos = {key: _decode_video(path)}
        return self._videos[key]

    def episode(self, index: int) -> dict[str, np.ndarray]:
        row = self.episodes[index]
        table = self._data_table(row["data/chunk_index"], row["data/file_index"])
        episodes = table.column("episode_index").to_numpy()
        rows = np.flatnonzero(episodes == row["episode_index"])
        part = table.take(rows)
        out: dict[str, np.ndarray] = {}
        for name in part.column_names:
            spec = self.features.get(name)
            column = part.column(name)
            if spec is None or spec.get("dtype") in ("video", "image"):
                continue
            values = column.to_numpy(zero_copy_only=False)
            if values.dtype == object:
                values = np.stack([np.asarray(v) for v in values])
            dtype = np.bool_ if spec["dtype"] == "bool" else np.dtype(spec["dtype"])
            out[name] = (
                values.astype(dtype, copy=False).reshape(len(rows), *spec["shape"])
                if spec["shape"] != [1]
                else values.astype(dtype, copy=False)
            )
        for key in self.video_keys:
            frames = self._video(
                key, row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]
            )
            start = int(round(row[f"videos/{key}/from_timestamp"] * self.fps))
            clip = frames[start : start + row["length"]]
            if len(clip) != row["length"]:
                raise ValueError(
                    f"{self.root}: episode {row['episode_index']} needs frames {start}.."
                    f"{start + row['length']} of {key}, the video has {len(frames)}"
                )
            out[key] = clip
        return out


def _default_hdf5_keys(features: dict[str, Any]) -> dict[str, str]:
    """Feature name -> HDF5 key for a dataset written by another tool: the (single or first)
    camera becomes ``obs/pixels``, ``observation.state`` ``obs/proprio``, and so on."""
    keys: dict[str, str] = {}
    cameras = [k for k, v in features.items() if v.get("dtype") in ("video", "image")]
    for i, name in enumerate(cameras):
        keys[name] = "obs/pixels" if i == 0 else f"obs/{name.rsplit('.', 1)[-1]}"
    reverse = {v: k for k, v in NAMED_KEYS.items()}
    for name in features:
        if name in keys or name in DEFAULT_FEATURES:
            continue
        if name == "action":
            keys[name] = "actions"
        elif name == "next.reward":
            keys[name] = "rewards"
        elif name == "next.done":
            keys[name] = "dones"
        elif name.startswith("observation."):
            keys[name] = f"obs/{reverse.get(name, name.removeprefix('observation.'))}"
    return keys


def lerobot_to_hdf5(
    root: str | os.PathLike,
    output: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """A LeRobotDataset v3.x folder -> our robomimic-layout HDF5 demo file (atomically)."""
    reader = LeRobotReader(root)
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} already exists; pass overwrite=true or another output")
    pixio, keys = reader.pixio, reader.hdf5_keys
    if "actions" not in keys.values():
        raise ValueError(f"{root} has no 'action' feature; features are {sorted(reader.features)}")
    env_args = pixio.get("env_args") or {
        "env_name": reader.info.get("robot_type") or "",
        "type": "lerobot",
        "env_kwargs": {},
    }
    total = 0
    with atomic_file(output) as tmp, h5py.File(tmp, "w") as handle:
        data = handle.create_group("data")
        names = []
        for index in tqdm(range(len(reader)), desc="read LeRobot", disable=not progress):
            row = reader.episodes[index]
            arrays = reader.episode(index)
            name = row.get("pixio/name") or f"demo_{index}"
            names.append(name)
            group = data.create_group(name)
            attrs = json.loads(row["pixio/attrs"]) if row.get("pixio/attrs") else {}
            attrs.setdefault("num_samples", int(row["length"]))
            for key, value in attrs.items():
                group.attrs[key] = value
            for feature, key in keys.items():
                if feature not in arrays:
                    continue
                value = arrays[feature]
                if key == "dones":
                    value = value.astype(np.uint8)
                compression = "gzip" if value.dtype == np.uint8 and value.ndim == 4 else None
                group.create_dataset(key, data=value, compression=compression)
                if key.startswith("obs/") and _is_image(value):
                    # LeRobot stores no observation after the last step: repeat the last frame
                    shifted = np.concatenate([value[1:], value[-1:]])
                    group.create_dataset(f"next_{key}", data=shifted, compression=compression)
            total += int(row["length"])
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(env_args)
        masks = pixio.get("masks") or {"train": names}
        for split, members in masks.items():
            handle.create_dataset(f"mask/{split}", data=np.array(members, dtype="S"))
    return output


def hdf5_to_lerobot(
    demos: str | os.PathLike,
    output: str | os.PathLike,
    fps: float | None = None,
    codec: str = "av1",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Our robomimic-layout HDF5 demo file -> a LeRobotDataset v3.0 folder."""
    env_args, episodes, masks = read_hdf5_episodes(demos)
    if fps is None:
        fps = _env_fps(env_args.get("env_name", ""))
    return write_lerobot(output, env_args, episodes, masks, fps, codec, overwrite, progress)


def _env_fps(env_id: str) -> float:
    """The control rate of a registered env (its class's ``metadata["render_fps"]``, read
    without building the env); 20 when the env is unknown."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    try:
        import pixio_envs  # noqa: F401  (registers our envs)

        entry = gym.spec(env_id).entry_point
        creator = load_env_creator(entry) if isinstance(entry, str) else entry
        return float(getattr(creator, "metadata", {}).get("render_fps", 20))
    except gym.error.Error:
        return 20.0


def _folder_identity(root: Path) -> str:
    import hashlib

    entries = [
        [str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]
    return hashlib.sha256(json.dumps([str(root.resolve()), entries]).encode()).hexdigest()[:20]


def demos_as_hdf5(
    demos: str | os.PathLike, cache_dir: str | os.PathLike, progress: bool = True
) -> Path:
    """The HDF5 demo file to train on: ``demos`` itself, or for a LeRobot dataset folder its
    conversion, made once and kept under ``cache_dir`` (keyed by the folder's files)."""
    demos = Path(demos)
    if not demos.is_dir():
        return demos
    if not is_lerobot_dataset(demos):
        raise ValueError(
            f"{demos} is a folder but not a LeRobot dataset (no meta/info.json); demos must be "
            "an HDF5 demo file or a LeRobot v3 dataset folder"
        )
    path = Path(cache_dir) / f"lerobot_{_folder_identity(demos)}.hdf5"
    if not path.is_file():
        lerobot_to_hdf5(demos, path, progress=progress)
    return path
