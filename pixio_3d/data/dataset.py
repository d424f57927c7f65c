"""Multi-view scenes with exact ground truth on disk, and a torch dataset of N-view samples.

Layout: a dataset root holds one folder per scene (any folder with a ``cameras.json``; a root
that has a ``cameras.json`` itself is a single scene). Generated scenes are ``scene_XXXX``::

    scene_0000/
      cameras.json       required, see below
      rgb/<name>.png     required: (H, W, 3) 8-bit RGB (.jpg/.jpeg are read too)
      depth/<name>.npy   required: (H, W) float32 z-depth in metres, 0 = invalid
                         (or depth/<name>.png: 16-bit, millimetres, 0 = invalid)
      ids/<name>.png     optional folder: (H, W) 16-bit object ids, 0 = no surface, 1 = room,
                         2 + i = objects[i] of scene.json (without it, ids read as -1)
      scene.json         optional: how the scene was made (seed, room, objects, lights, config)

``cameras.json``::

    {"format": "pixio-multiview-v1", "height": H, "width": W,
     "views": [{"name": "0000", "intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
                "cam2world": [[r00, r01, r02, tx], ..., [0, 0, 0, 1]]}, ...],
     "covisibility": [[...], ...]}      # optional (V, V), computed from depth when absent

Conventions (as ``pixio_3d.geometry``): OpenCV cameras (x right, y down, z forward);
``cam2world`` maps camera to world coordinates (metres); pinhole ``K`` in pixels with the centre
of pixel (col c, row r) at (c + 0.5, r + 0.5); depth is z-depth along the optical axis, so a
pixel lifts to ``depth * K^-1 [c + 0.5, r + 0.5, 1]``. ``covisibility[i, j]`` is the fraction of
view i's valid pixels that view j sees (same surface within 5 % in depth).

Your own data in this layout loads with the same reader; a missing file or a wrong shape raises
an error that names the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixio_3d.data.layout import (
    CONVENTIONS,
    DEPTH_PNG_UNITS_PER_METRE,
    FORMAT,
    RGB_EXTENSIONS,
    VIEW_SELECTIONS,
)
from pixio_core.imaging import read_image
from pixio_core.io import atomic_directory


@dataclass(frozen=True)
class SceneCameras:
    """The parsed ``cameras.json`` of one scene: ``V`` views of ``height x width`` pixels;
    intrinsics ``(V, 3, 3)``, cam2world ``(V, 4, 4)`` float64, covisibility ``(V, V)`` or None."""

    path: Path
    height: int
    width: int
    view_names: list[str]
    intrinsics: np.ndarray
    cam2world: np.ndarray
    covisibility: np.ndarray | None

    @property
    def num_views(self) -> int:
        return len(self.view_names)


# ------------------------------------------------------------------------------------ writing
def write_scene(
    scene_dir: str | Path,
    *,
    rgb: np.ndarray,
    depth: np.ndarray,
    intrinsics: np.ndarray,
    cam2world: np.ndarray,
    object_ids: np.ndarray | None = None,
    scene_info: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one scene (shapes as in :class:`pixio_3d.data.scenes.RenderedViews`) in the layout above.

    The scene is written to a temporary sibling folder and renamed into place, so a crash never
    leaves half a scene. A non-empty ``scene_dir`` raises ``FileExistsError`` unless ``overwrite``.
    """
    scene_dir = Path(scene_dir)
    num_views, height, width = depth.shape if depth.ndim == 3 else (0, 0, 0)
    expected = {
        "rgb": (rgb, (num_views, height, width, 3)),
        "depth": (depth, (num_views, height, width)),
        "intrinsics": (intrinsics, (num_views, 3, 3)),
        "cam2world": (cam2world, (num_views, 4, 4)),
    }
    if object_ids is not None:
        expected["object_ids"] = (object_ids, (num_views, height, width))
    for name, (array, shape) in expected.items():
        if array.shape != shape or num_views == 0:
            raise ValueError(f"{name} must have shape (V, ...) = {shape}, got {array.shape}")
    if rgb.dtype != np.uint8 or depth.dtype.kind != "f":
        raise ValueError(f"rgb must be uint8 and depth float, got {rgb.dtype} and {depth.dtype}")
    if object_ids is not None and (object_ids.min() < 0 or object_ids.max() > 65535):
        raise ValueError("object_ids must lie in [0, 65535] to fit a 16-bit PNG")
    if scene_dir.is_dir() and any(scene_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{scene_dir} exists and is not empty; pass overwrite=True")

    names = [f"{k:04d}" for k in range(num_views)]
    stride = max(1, height // 48)
    cameras = {
        "format": FORMAT,
        "conventions": CONVENTIONS,
        "height": height,
        "width": width,
        "views": [
            {"name": n, "intrinsics": k.tolist(), "cam2world": t.tolist()}
            for n, k, t in zip(names, intrinsics, cam2world, strict=True)
        ],
        "covisibility": covisibility(depth, intrinsics, cam2world, stride=stride).tolist(),
    }
    with atomic_directory(scene_dir, overwrite=overwrite) as tmp:
        for sub in ("rgb", "depth") + (("ids",) if object_ids is not None else ()):
            (tmp / sub).mkdir(parents=True)
        for k, name in enumerate(names):
            Image.fromarray(rgb[k]).save(tmp / "rgb" / f"{name}.png")
            np.save(tmp / "depth" / f"{name}.npy", depth[k].astype(np.float32))
            if object_ids is not None:
                Image.fromarray(object_ids[k].astype(np.uint16)).save(tmp / "ids" / f"{name}.png")
        (tmp / "cameras.json").write_text(_dumps_one_item_per_line(cameras))
        if scene_info is not None:
            (tmp / "scene.json").write_text(json.dumps(scene_info, indent=1))
    return scene_dir


def _dumps_one_item_per_line(meta: dict[str, Any]) -> str:
    """JSON with one line per top-level key and per list item (one view per line)."""
    lines = []
    for key, value in meta.items():
        if isinstance(value, list):
            items = ",\n".join(f"  {json.dumps(item)}" for item in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def covisibility(
    depth: np.ndarray,
    intrinsics: np.ndarray,
    cam2world: np.ndarray,
    stride: int = 4,
    relative_tolerance: float = 0.05,
) -> np.ndarray:
    """``(V, V)`` fraction of view i's valid pixels (sampled every ``stride`` pixels) whose 3D
    point lands inside view j with view j's depth within ``relative_tolerance`` (not occluded).

    depth ``(V, H, W)`` z-depth (0 = invalid), intrinsics ``(V, 3, 3)``, cam2world ``(V, 4, 4)``.
    """
    num_views, height, width = depth.shape
    rows, cols = np.mgrid[stride // 2 : height : stride, stride // 2 : width : stride]
    rows, cols = rows.ravel(), cols.ravel()
    pixels = np.stack([cols + 0.5, rows + 0.5, np.ones_like(rows, dtype=float)], -1)
    result = np.eye(num_views)
    for i in range(num_views):
        z = depth[i, rows, cols].astype(np.float64)
        keep = z > 0
        if not keep.any():
            continue
        points = (pixels[keep] @ np.linalg.inv(intrinsics[i]).T) * z[keep, None]
        world = points @ cam2world[i, :3, :3].T + cam2world[i, :3, 3]
        for j in range(num_views):
            if j == i:
                continue
            local = (world - cam2world[j, :3, 3]) @ cam2world[j, :3, :3]
            in_front = local[:, 2] > 1e-9
            uvw = local @ intrinsics[j].T
            with np.errstate(divide="ignore", invalid="ignore"):
                col = np.floor(uvw[:, 0] / uvw[:, 2])
                row = np.floor(uvw[:, 1] / uvw[:, 2])
            inside = in_front & (col >= 0) & (col < width) & (row >= 0) & (row < height)
            seen = depth[j, row[inside].astype(int), col[inside].astype(int)]
            z_j = local[inside, 2]
            agree = (seen > 0) & (np.abs(seen - z_j) <= relative_tolerance * z_j)
            result[i, j] = agree.sum() / keep.sum()
    return result


# ------------------------------------------------------------------------------------ reading
def find_scenes(root: str | Path) -> list[Path]:
    """Scene folders under ``root`` (sorted by name): ``root`` itself if it has a
    ``cameras.json``, else its direct sub-folders that have one."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if (root / "cameras.json").is_file():
        return [root]
    scenes = sorted(p for p in root.iterdir() if (p / "cameras.json").is_file())
    if not scenes:
        raise FileNotFoundError(f"no scene folders (with a cameras.json) in {root}")
    return scenes


def _matrix(value: Any, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.empty(0)
    if array.shape != shape or not np.isfinite(array).all():
        raise ValueError(f"{where} must be a finite {shape[0]}x{shape[1]} matrix, got {value!r}")
    return array


def read_cameras(scene_dir: str | Path) -> SceneCameras:
    """Parse and check ``scene_dir/cameras.json``; errors name the file and the bad entry."""
    path = Path(scene_dir) / "cameras.json"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}")
    try:
        meta = json.loads(path.read_text())
        height, width, views = int(meta["height"]), int(meta["width"]), list(meta["views"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: needs 'height', 'width' and a 'views' list ({error})") from error
    if height < 1 or width < 1 or not views:
        raise ValueError(f"{path}: height/width must be positive and views non-empty")
    names, intrinsics, cam2world = [], [], []
    for k, view in enumerate(views):
        where = f"{path}: views[{k}]"
        if not isinstance(view, dict) or not {"name", "intrinsics", "cam2world"} <= set(view):
            raise ValueError(f"{where} needs 'name', 'intrinsics' and 'cam2world'")
        matrix = _matrix(view["intrinsics"], (3, 3), f"{where}.intrinsics")
        if matrix[0, 0] <= 0 or matrix[1, 1] <= 0 or not np.allclose(matrix[2], [0, 0, 1]):
            raise ValueError(f"{where}.intrinsics must be [[fx,s,cx],[0,fy,cy],[0,0,1]], fx,fy > 0")
        if not (0 <= matrix[0, 2] <= width and 0 <= matrix[1, 2] <= height):
            raise ValueError(
                f"{where}.intrinsics: the principal point ({matrix[0, 2]:.6g}, {matrix[1, 2]:.6g}) "
                f"lies outside the {width}x{height} image (pixels, corner origin)"
            )
        pose = _matrix(view["cam2world"], (4, 4), f"{where}.cam2world")
        rotation = pose[:3, :3]
        if not np.allclose(pose[3], [0, 0, 0, 1]) or not (
            np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) and np.linalg.det(rotation) > 0
        ):
            raise ValueError(
                f"{where}.cam2world must be a rigid transform (rotation + translation)"
            )
        names.append(str(view["name"]))
        intrinsics.append(matrix)
        cam2world.append(pose)
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: view names must be unique")
    covis = meta.get("covisibility")
    if covis is not None:
        covis = _matrix(covis, (len(names), len(names)), f"{path}: covisibility")
    return SceneCameras(
        path.parent, height, width, names, np.stack(intrinsics), np.stack(cam2world), covis
    )


def _find_file(folder: Path, name: str, extensions: tuple[str, ...]) -> Path | None:
    for extension in extensions:
        if (folder / f"{name}{extension}").is_file():
            return folder / f"{name}{extension}"
    return None


def read_view(cameras: SceneCameras, index: int) -> dict[str, np.ndarray]:
    """View ``index`` of a scene as numpy: ``rgb (H, W, 3)`` uint8, ``depth (H, W)`` float32
    metres (0 = invalid; NaN/inf read as 0), ``object_ids (H, W)`` int64 (-1 without ids/)."""
    name, root = cameras.view_names[index], cameras.path
    shape = (cameras.height, cameras.width)
    rgb_path = _find_file(root / "rgb", name, RGB_EXTENSIONS)
    if rgb_path is None:
        raise FileNotFoundError(f"missing {root / 'rgb' / name}{{{','.join(RGB_EXTENSIONS)}}}")
    rgb = np.asarray(read_image(rgb_path))
    if rgb.shape[:2] != shape:
        raise ValueError(f"{rgb_path}: image is {rgb.shape[:2]} (H, W), cameras.json says {shape}")
    depth_path = _find_file(root / "depth", name, (".npy", ".png"))
    if depth_path is None:
        raise FileNotFoundError(f"missing {root / 'depth' / name}.npy (or .png)")
    depth = _read_depth(depth_path, shape)
    object_ids = np.full(shape, -1, np.int64)
    if (root / "ids").is_dir():
        ids_path = root / "ids" / f"{name}.png"
        if not ids_path.is_file():
            raise FileNotFoundError(f"missing {ids_path} (the ids folder exists)")
        try:
            with Image.open(ids_path) as image:
                object_ids = np.asarray(image).astype(np.int64)
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"cannot read {ids_path}: {error}") from error
        if object_ids.shape != shape:
            raise ValueError(f"{ids_path}: ids are {object_ids.shape}, cameras.json says {shape}")
    return {"rgb": rgb, "depth": depth, "object_ids": object_ids}


MAX_PLAUSIBLE_DEPTH = 1000.0  # metres: a larger median depth is a unit mistake (millimetres)


def _read_depth(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """z-depth in metres from ``.npy`` (float metres) or ``.png`` (16-bit millimetres); the
    errors name the file and say which unit or type was expected."""
    try:
        if path.suffix == ".npy":
            depth = np.load(path, allow_pickle=False)
            if depth.dtype.kind != "f":
                raise ValueError(
                    f"depth .npy files hold float metres, got {depth.dtype} (millimetres? save "
                    "them as a 16-bit depth PNG, or divide by 1000 and save float32)"
                )
        else:
            with Image.open(path) as image:
                if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
                    raise ValueError(
                        f"depth PNGs are 16-bit millimetres, got an image of mode {image.mode} "
                        "(8 bits cannot hold a depth)"
                    )
                depth = np.asarray(image, dtype=np.float64) / DEPTH_PNG_UNITS_PER_METRE
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ValueError(f"cannot read depth {path}: {error}") from error
    if depth.shape != shape:
        raise ValueError(f"{path}: depth must be a {shape} number array, got {depth.shape}")
    depth = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if (depth < 0).any():
        raise ValueError(f"{path}: depth must be >= 0 (0 = invalid)")
    valid = depth[depth > 0]
    if valid.size and float(np.median(valid)) > MAX_PLAUSIBLE_DEPTH:
        raise ValueError(
            f"{path}: the median depth is {float(np.median(valid)):.0f} m; depth is in metres "
            "(millimetres belong in a 16-bit PNG)"
        )
    return depth


def read_scene(scene_dir: str | Path) -> dict[str, Any]:
    """Every view of a scene stacked: rgb ``(V, H, W, 3)``, depth ``(V, H, W)``, object_ids,
    intrinsics ``(V, 3, 3)``, cam2world ``(V, 4, 4)`` (numpy), and ``cameras``."""
    cameras = read_cameras(scene_dir)
    views = [read_view(cameras, k) for k in range(cameras.num_views)]
    out: dict[str, Any] = {key: np.stack([v[key] for v in views]) for key in views[0]}
    out.update(intrinsics=cameras.intrinsics, cam2world=cameras.cam2world, cameras=cameras)
    return out


# ------------------------------------------------------------------------------------ dataset
class MultiViewDataset(torch.utils.data.Dataset):
    """N-view samples from scenes in the layout above (generated or your own).

    Each item (``V = num_views``; view 0 is the reference view)::

        images       (V, 3, H, W) float32 RGB in [0, 1] (not normalized)
        depth        (V, H, W) float32 z-depth in metres, 0 = invalid
        valid_mask   (V, H, W) bool, depth > 0
        intrinsics   (V, 3, 3) float32;  cam2world (V, 4, 4) float32 in the scene's world frame
        object_ids   (V, H, W) int64 (-1 where the scene has no ids)
        view_indices (V,) int64 indices into the scene's views;  scene  str, the folder name

    ``view_selection="overlap"`` draws a reference view, then each next view among those that
    see at least ``min_overlap`` of an already chosen view (symmetric covisibility; the best
    overlapping view if none does); ``"sequential"`` takes a run of views in the scene's order
    (a walk around it: the generator's ring order, or your capture order) with a random stride of
    1 to ``max_stride`` and a random direction; ``"random"`` draws views uniformly. Draws come from
    ``(seed, epoch, index)``: the same item is the same sample until :meth:`set_epoch`.
    All scenes must share one image size to be batched by the default collate.
    """

    def __init__(
        self,
        root: str | Path,
        num_views: int,
        *,
        view_selection: str = "overlap",
        min_overlap: float = 0.1,
        max_stride: int = 2,
        samples_per_scene: int = 1,
        seed: int = 0,
    ) -> None:
        if view_selection not in VIEW_SELECTIONS:
            raise ValueError(
                f"view_selection must be one of {VIEW_SELECTIONS}, got {view_selection!r}"
            )
        if num_views < 1 or samples_per_scene < 1 or max_stride < 1:
            raise ValueError("num_views, samples_per_scene and max_stride must be >= 1")
        self.scenes = [read_cameras(d) for d in find_scenes(root)]
        for scene in self.scenes:
            if scene.num_views < num_views:
                raise ValueError(f"{scene.path} has {scene.num_views} views, need {num_views}")
        self.num_views = num_views
        self.view_selection = view_selection
        self.min_overlap = min_overlap
        self.max_stride = max_stride
        self.samples_per_scene = samples_per_scene
        self.seed = seed
        self.epoch = 0
        self._covisibility: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.scenes) * self.samples_per_scene

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def covisibility(self, scene_index: int) -> np.ndarray:
        """``(V, V)`` covisibility of a scene: from cameras.json, else computed from depth once."""
        if scene_index not in self._covisibility:
            scene = self.scenes[scene_index]
            matrix = scene.covisibility
            if matrix is None:
                depth = np.stack([read_view(scene, k)["depth"] for k in range(scene.num_views)])
                stride = max(1, scene.height // 48)
                matrix = covisibility(depth, scene.intrinsics, scene.cam2world, stride=stride)
            self._covisibility[scene_index] = matrix
        return self._covisibility[scene_index]

    def select_views(self, index: int) -> np.ndarray:
        """The ``(num_views,)`` view indices of item ``index``; the reference view first."""
        scene_index = index // self.samples_per_scene
        total = self.scenes[scene_index].num_views
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.view_selection == "sequential":
            longest = (total - 1) // max(self.num_views - 1, 1)  # the largest stride that fits
            stride = int(rng.integers(1, max(1, min(self.max_stride, longest)) + 1))
            span = stride * (self.num_views - 1)
            run = int(rng.integers(total - span)) + stride * np.arange(self.num_views)
            return run[::-1].copy() if rng.random() < 0.5 else run
        chosen = [int(rng.integers(total))]
        if self.view_selection == "random":
            others = np.delete(np.arange(total), chosen[0])
            return np.array(chosen + list(rng.choice(others, self.num_views - 1, replace=False)))
        covis = self.covisibility(scene_index)
        overlap = np.minimum(covis, covis.T)
        while len(chosen) < self.num_views:
            best = overlap[chosen].max(axis=0)
            best[chosen] = -1.0
            candidates = np.flatnonzero(best >= self.min_overlap)
            chosen.append(int(rng.choice(candidates)) if len(candidates) else int(best.argmax()))
        return np.array(chosen)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        scene = self.scenes[index // self.samples_per_scene]
        view_indices = self.select_views(index)
        views = [read_view(scene, int(k)) for k in view_indices]
        rgb = torch.from_numpy(np.stack([v["rgb"] for v in views]))
        depth = torch.from_numpy(np.stack([v["depth"] for v in views]))
        return {
            "images": rgb.permute(0, 3, 1, 2).float() / 255.0,
            "depth": depth,
            "valid_mask": depth > 0,
            "intrinsics": torch.from_numpy(scene.intrinsics[view_indices]).float(),
            "cam2world": torch.from_numpy(scene.cam2world[view_indices]).float(),
            "object_ids": torch.from_numpy(np.stack([v["object_ids"] for v in views])),
            "view_indices": torch.from_numpy(view_indices).long(),
            "scene": scene.path.name,
        }
