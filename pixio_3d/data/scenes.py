"""Procedural multi-view scenes rendered with MuJoCo: RGB, metric z-depth, object ids, cameras.

A scene is a room (floor, four walls, sometimes a ceiling) holding a handful of objects: boxes,
spheres, cylinders, capsules, ellipsoids and two compositions (``table``: a top on four legs;
``tower``: two or three stacked primitives). Some simple objects float at a random orientation.
Textures (:mod:`pixio_3d.data.textures`) are procedural and photo-like (multi-octave value noise in
a random palette, random strokes, grain) or, for a low-texture split, MuJoCo builtins or flat
colors; the floor and each wall get their own texture, one tile covering 2-4 m. One to three
lights with random tints; the camera headlight gives ambient light only, so appearance does not depend
on the viewpoint. Cameras sit on a ring (or an arc) inside the room at random radius and height
and look at the object cluster, so neighbouring views overlap.

Everything is drawn from the seed (``numpy.random.default_rng([seed, stream])``, one stream for
geometry, one for appearance): the same seed gives the same scene and the same images, and the
same geometry and cameras in every texture mode.

Ground truth per view (see :class:`RenderedViews`), conventions as in ``pixio_3d.geometry``:
    - cameras are OpenCV (x right, y down, z forward); ``cam2world`` maps camera to world
      coordinates, converted exactly from MuJoCo: ``R = cam_xmat @ diag(1, -1, -1)``;
    - intrinsics ``fx = fy = (H / 2) / tan(fovy / 2)``, ``cx = W / 2``, ``cy = H / 2`` with the
      centre of pixel (col c, row r) at (c + 0.5, r + 0.5);
    - depth is metric z-depth (along the optical axis) from MuJoCo's depth pass, 0 where no
      surface was hit;
    - object ids: 0 = no surface, 1 = the room (floor, walls, ceiling), ``2 + i`` = object ``i``
      of ``scene_info["objects"]`` (every geom of a composition has its object's id).

``MUJOCO_GL`` (e.g. ``egl``) must be set before this module is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from pixio_3d.data.textures import MATERIAL, mjcf_floats, object_textures, room_material
from pixio_core.software_gl import load_triton_first

TEXTURE_MODES = ("photo", "builtin", "flat")
SHAPES = ("box", "sphere", "cylinder", "capsule", "ellipsoid", "table", "tower")
# <statistic extent> fixes the clip planes: znear = 0.01 * 6 m = 6 cm, zfar = 50 * 6 m = 300 m.
EXTENT = 6.0
ZNEAR, ZFAR = 0.01, 50.0
OBJECT_DISC_RADIUS = 1.5  # objects stand inside this disc; cameras stay outside it
ROOM_SURFACES = ("floor", "wall_px", "wall_nx", "wall_py", "wall_ny")


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn. Ranges are ``(low, high)`` and sampled uniformly per scene/view."""

    texture_mode: str = "photo"
    texture_size: int = 256  # object textures; room textures are twice as large
    num_objects: tuple[int, int] = (4, 10)
    shapes: tuple[str, ...] = SHAPES
    float_probability: float = 0.2
    room_half_size: tuple[float, float] = (2.6, 3.5)
    wall_height: tuple[float, float] = (2.0, 3.0)
    ceiling_probability: float = 0.5
    fovy_degrees: tuple[float, float] = (50.0, 70.0)
    camera_height: tuple[float, float] = (0.4, 1.7)
    camera_arc_degrees: float = 360.0

    def __post_init__(self) -> None:
        if self.texture_mode not in TEXTURE_MODES:
            raise ValueError(
                f"texture_mode must be one of {TEXTURE_MODES}, got {self.texture_mode!r}"
            )
        if self.texture_size < 8:
            raise ValueError(f"texture_size must be >= 8, got {self.texture_size}")
        unknown = set(self.shapes) - set(SHAPES)
        if not self.shapes or unknown:
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {self.shapes}")
        for name in (
            "num_objects",
            "room_half_size",
            "wall_height",
            "fovy_degrees",
            "camera_height",
        ):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(
                    f"{name} must be (low, high) with 0 <= low <= high, got {(low, high)}"
                )
        for name in ("float_probability", "ceiling_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.room_half_size[0] < OBJECT_DISC_RADIUS + 0.8:
            raise ValueError(f"room_half_size must be >= {OBJECT_DISC_RADIUS + 0.8} m")
        if not (0 < self.fovy_degrees[0] and self.fovy_degrees[1] < 170):
            raise ValueError(f"fovy_degrees must lie in (0, 170), got {self.fovy_degrees}")
        if not 0 < self.camera_arc_degrees <= 360:
            raise ValueError(
                f"camera_arc_degrees must be in (0, 360], got {self.camera_arc_degrees}"
            )


@dataclass(frozen=True)
class SceneSpec:
    """A scene ready to compile: MJCF text, its in-memory texture files and JSON metadata."""

    seed: int
    num_views: int
    xml: str
    assets: dict[str, bytes] = field(repr=False)
    # room, objects, lights, cameras: written to scene.json
    info: dict[str, Any] = field(repr=False)

    def compile(self) -> mujoco.MjModel:
        return mujoco.MjModel.from_xml_string(self.xml, self.assets)


@dataclass(frozen=True)
class RenderedViews:
    """Ground truth of ``V`` views at ``H x W`` pixels (conventions in the module docstring).

    rgb ``(V, H, W, 3)`` uint8; depth ``(V, H, W)`` float32 z-depth in metres, 0 = no surface;
    object_ids ``(V, H, W)`` int32; intrinsics ``(V, 3, 3)`` and cam2world ``(V, 4, 4)`` float64.
    """

    rgb: np.ndarray
    depth: np.ndarray
    object_ids: np.ndarray
    intrinsics: np.ndarray
    cam2world: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """``(V, H, W)`` bool: pixels with a surface (depth > 0)."""
        return self.depth > 0


# ------------------------------------------------------------------------------------ objects
def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def _geom(kind: str, size, pos=(0, 0, 0), quat=(1, 0, 0, 0)) -> dict[str, Any]:
    return {
        "type": kind,
        "size": [float(s) for s in size],
        "pos": [float(p) for p in pos],
        "quat": [float(q) for q in quat],
    }


def _reach(geom: dict[str, Any]) -> float:
    """Largest distance from a geom's centre to its surface."""
    if geom["type"] == "capsule":
        return geom["size"][0] + geom["size"][1]
    return float(np.linalg.norm(geom["size"]))  # box half-diagonal; bounds cylinder, ellipsoid


def _primitive(rng, kind: str) -> tuple[list[dict], float, float]:
    """One resting primitive centred at the origin: geoms, footprint radius, half-height."""
    if kind == "box":
        half = rng.uniform(0.05, 0.3, 3)
        return [_geom("box", half)], float(np.hypot(half[0], half[1])), float(half[2])
    if kind == "sphere":
        radius = rng.uniform(0.06, 0.3)
        return [_geom("sphere", [radius])], radius, radius
    if kind == "cylinder":
        radius, half = rng.uniform(0.05, 0.25), rng.uniform(0.05, 0.4)
        return [_geom("cylinder", [radius, half])], radius, half
    if kind == "capsule":
        radius, half = rng.uniform(0.04, 0.15), rng.uniform(0.05, 0.3)
        if rng.random() < 0.5:  # lying on its side
            lying = (math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0)
            return [_geom("capsule", [radius, half], quat=lying)], half + radius, radius
        return [_geom("capsule", [radius, half])], radius, half + radius
    radii = rng.uniform(0.06, 0.3, 3)  # ellipsoid
    return [_geom("ellipsoid", radii)], float(max(radii[:2])), float(radii[2])


def _composition(rng, kind: str) -> tuple[list[dict], float]:
    """A table or a tower standing on z = 0 of its own frame: geoms and footprint radius."""
    if kind == "table":
        half_x, half_y = rng.uniform(0.2, 0.4), rng.uniform(0.15, 0.3)
        thick, height, leg = (
            rng.uniform(0.015, 0.03),
            rng.uniform(0.35, 0.7),
            rng.uniform(0.015, 0.03),
        )
        geoms = [_geom("box", [half_x, half_y, thick], pos=[0, 0, height - thick])]
        leg_half = (height - 2 * thick) / 2
        for sx in (-1, 1):
            for sy in (-1, 1):
                pos = [sx * (half_x - 2 * leg), sy * (half_y - 2 * leg), leg_half]
                geoms.append(_geom("cylinder", [leg, leg_half], pos=pos))
        return geoms, float(np.hypot(half_x, half_y))
    geoms, base, footprint, scale = [], 0.0, 0.0, 1.0  # tower of shrinking primitives
    for _ in range(int(rng.integers(2, 4))):
        part = rng.choice(["box", "sphere", "cylinder"])
        (geom,), radius, half_height = _primitive(rng, str(part))
        geom["size"] = [s * scale for s in geom["size"]]
        radius, half_height = radius * scale, half_height * scale
        geom["pos"] = [0.0, 0.0, base + half_height]
        geoms.append(geom)
        base, footprint, scale = base + 2 * half_height, max(footprint, radius), scale * 0.75
    return geoms, footprint


def _sample_objects(rng, config: SceneConfig) -> list[dict[str, Any]]:
    """Objects placed by rejection sampling so that footprints (discs) do not overlap."""
    objects: list[dict[str, Any]] = []
    placed: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(config.num_objects[0], config.num_objects[1] + 1))):
        kind = str(rng.choice(config.shapes))
        floating = False
        if kind in ("table", "tower"):
            geoms, footprint = _composition(rng, kind)
            height = 0.0
            quat = _yaw_quat(rng.uniform(0, 2 * math.pi))
        else:
            geoms, footprint, height = _primitive(rng, kind)
            floating = rng.random() < config.float_probability
            if floating:  # random orientation, lifted clear of the floor
                quat = rng.normal(size=4)
                quat = quat / np.linalg.norm(quat) * np.sign(quat[0] or 1.0)
                reach = max(_reach(g) + np.linalg.norm(g["pos"]) for g in geoms)
                footprint, height = float(reach), float(reach + rng.uniform(0.1, 0.6))
            else:
                quat = _yaw_quat(rng.uniform(0, 2 * math.pi))
        for _attempt in range(100):
            x, y = rng.uniform(-OBJECT_DISC_RADIUS, OBJECT_DISC_RADIUS, 2)
            if np.hypot(x, y) + footprint > OBJECT_DISC_RADIUS:
                continue
            if all(np.hypot(x - px, y - py) > footprint + pr + 0.05 for px, py, pr in placed):
                break
        else:
            continue  # no room left for this one
        placed.append((x, y, footprint))
        objects.append(
            {
                "id": len(objects) + 2,
                "name": f"object_{len(objects):02d}",
                "shape": kind,
                "floating": bool(floating),
                "pos": [float(x), float(y), height],
                "quat": [float(q) for q in quat],
                "geoms": geoms,
            }
        )
    return objects


# ------------------------------------------------------------------------------------ cameras
def _look_at_axes(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """MuJoCo ``xyaxes`` of a camera at ``position`` looking at ``target`` (MuJoCo cameras look
    along -z with y up, so z = x cross y = -forward)."""
    forward = (target - position) / np.linalg.norm(target - position)
    x_axis = np.cross(forward, [0.0, 0.0, 1.0])
    x_axis /= np.linalg.norm(x_axis)
    return np.concatenate([x_axis, np.cross(x_axis, forward)])


def _sample_cameras(rng, config: SceneConfig, num_views: int, half_size) -> list[dict[str, Any]]:
    arc = math.radians(config.camera_arc_degrees)
    step = arc / num_views if config.camera_arc_degrees >= 360 else arc / max(num_views - 1, 1)
    start = rng.uniform(0, 2 * math.pi)
    max_radius = min(half_size) - 0.3
    cameras = []
    for k in range(num_views):
        azimuth = start + k * step + rng.uniform(-0.15, 0.15) * step
        radius = rng.uniform(OBJECT_DISC_RADIUS + 0.4, max_radius)
        position = np.array(
            [
                radius * math.cos(azimuth),
                radius * math.sin(azimuth),
                rng.uniform(*config.camera_height),
            ]
        )
        target = np.array([*rng.uniform(-0.3, 0.3, 2), rng.uniform(0.1, 0.5)])
        cameras.append(
            {
                "name": f"view_{k:04d}",
                "pos": position.tolist(),
                "target": target.tolist(),
                "xyaxes": _look_at_axes(position, target).tolist(),
                "fovy": float(rng.uniform(*config.fovy_degrees)),
            }
        )
    return cameras


# -------------------------------------------------------------------------------------- scene
def _sample_lights(rng, half_size, wall_height: float) -> list[dict[str, Any]]:
    lights = []
    count = int(rng.integers(1, 4))
    for k in range(count):
        position = np.array(
            [*(rng.uniform(-0.6, 0.6, 2) * half_size), rng.uniform(0.75, 0.95) * wall_height]
        )
        aim = np.array([*rng.uniform(-1.0, 1.0, 2), 0.0])
        tint = 1.0 - 0.3 * rng.random(3)
        lights.append(
            {
                "name": f"light_{k}",
                "pos": position.tolist(),
                "dir": ((aim - position) / np.linalg.norm(aim - position)).tolist(),
                "directional": bool(rng.random() < 0.3),
                "diffuse": (tint * rng.uniform(0.5, 0.9) / math.sqrt(count)).tolist(),
                "cutoff": float(rng.uniform(60.0, 85.0)),
            }
        )
    return lights


def _room_geoms(half_size, wall_height: float, ceiling: bool) -> list[str]:
    hx, hy = half_size
    geoms = [f'<geom name="floor" type="plane" size="{hx:.6g} {hy:.6g} 0.1" material="floor"/>']
    # a plane is visible from its front only: each wall's normal (x_axis cross z) points inwards
    for name, center, normal, half_length in (
        ("wall_px", (hx, 0), (-1, 0, 0), hy),
        ("wall_nx", (-hx, 0), (1, 0, 0), hy),
        ("wall_py", (0, hy), (0, -1, 0), hx),
        ("wall_ny", (0, -hy), (0, 1, 0), hx),
    ):
        x_axis = np.cross([0, 0, 1], normal)
        geoms.append(
            f'<geom name="{name}" type="plane" pos="{mjcf_floats([*center, wall_height / 2])}" '
            f'xyaxes="{mjcf_floats(x_axis)} 0 0 1" size="{half_length:.6g} {wall_height / 2:.6g} 0.1" '
            f'material="{name}"/>'
        )
    if ceiling:
        geoms.append(
            f'<geom name="ceiling" type="plane" pos="0 0 {wall_height:.6g}" xyaxes="1 0 0 0 -1 0" '
            f'size="{hx:.6g} {hy:.6g} 0.1" material="ceiling"/>'
        )
    return geoms


def _object_xml(rng, objects: list[dict[str, Any]], pool: int) -> tuple[list[str], list[str]]:
    """Materials (a pool texture with a random tint, or a flat color when ``pool == 0``) and
    bodies of the objects; records each geom's material in ``objects``."""
    materials, bodies = [], []
    for obj in objects:
        parts = []
        for g, geom in enumerate(obj["geoms"]):
            if g == 0 or obj["shape"] == "tower":  # a tower's parts differ, a table's do not
                material = f"{obj['name']}_m{g}"
                if pool:
                    tint = mjcf_floats([*(0.55 + 0.45 * rng.random(3)), 1])
                    texture = f'texture="obj_tex{rng.integers(pool)}"'
                else:
                    tint, texture = mjcf_floats([*(0.1 + 0.9 * rng.random(3)), 1]), ""
                materials.append(
                    f'<material name="{material}" {texture} rgba="{tint}" {MATERIAL}/>'
                )
            geom["material"] = material
            parts.append(
                f'<geom name="{obj["name"]}_g{g}" type="{geom["type"]}" '
                f'size="{mjcf_floats(geom["size"])}" pos="{mjcf_floats(geom["pos"])}" '
                f'quat="{mjcf_floats(geom["quat"])}" material="{material}"/>'
            )
        pose = f'pos="{mjcf_floats(obj["pos"])}" quat="{mjcf_floats(obj["quat"])}"'
        bodies.append(f'<body name="{obj["name"]}" {pose}>' + "".join(parts) + "</body>")
    return materials, bodies


def _light_xml(lights: list[dict[str, Any]]) -> list[str]:
    return [
        f'<light name="{light["name"]}" pos="{mjcf_floats(light["pos"])}" dir="{mjcf_floats(light["dir"])}" '
        f'directional="{str(light["directional"]).lower()}" diffuse="{mjcf_floats(light["diffuse"])}" '
        f'specular="0 0 0" cutoff="{light["cutoff"]:.4g}" castshadow="true"/>'
        for light in lights
    ]


def _camera_xml(cameras: list[dict[str, Any]]) -> list[str]:
    return [
        f'<camera name="{cam["name"]}" pos="{mjcf_floats(cam["pos"])}" xyaxes="{mjcf_floats(cam["xyaxes"])}" '
        f'fovy="{cam["fovy"]:.9g}"/>'
        for cam in cameras
    ]


def build_scene(seed: int, num_views: int = 8, config: SceneConfig | None = None) -> SceneSpec:
    """Draw a scene from ``seed``: room, objects, materials, lights and ``num_views`` cameras.

    Geometry (room, objects, cameras) and appearance (textures, colors, lights) come from two
    streams of the seed, so one seed gives the same geometry in every ``texture_mode``."""
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    config = config or SceneConfig()
    shape_rng, look_rng = (np.random.default_rng([seed, stream]) for stream in (0, 1))
    half_size = shape_rng.uniform(*config.room_half_size, 2)
    wall_height = float(shape_rng.uniform(*config.wall_height))
    ceiling = bool(shape_rng.random() < config.ceiling_probability)
    objects = _sample_objects(shape_rng, config)
    cameras = _sample_cameras(shape_rng, config, num_views, half_size)
    assets: dict[str, bytes] = {}
    texture = (config.texture_mode, config.texture_size)
    # every wall has its own material: a texture shared by all walls repeats around the room and
    # makes views of different walls look alike (it folded COLMAP's models)
    asset_xml = [room_material(look_rng, name, *texture, assets) for name in ROOM_SURFACES]
    if ceiling:
        asset_xml.append(room_material(look_rng, "ceiling", *texture, assets))
    pool = 0 if config.texture_mode == "flat" else min(4, max(1, len(objects)))
    asset_xml += object_textures(look_rng, *texture, pool, assets)
    material_xml, body_xml = _object_xml(look_rng, objects, pool)
    lights = _sample_lights(look_rng, half_size, wall_height)
    ambient = look_rng.uniform(0.5, 0.8)  # 0.3-0.5 gave dark renders (mean pixel ~50/255)
    xml = "\n".join(
        [
            f'<mujoco model="pixio_scene_{seed}">',
            f'<statistic extent="{EXTENT}" center="0 0 1"/>',
            "<visual>",
            f'<headlight ambient="{mjcf_floats([ambient] * 3)}" diffuse="0 0 0" specular="0 0 0"/>',
            f'<map znear="{ZNEAR}" zfar="{ZFAR}"/>',
            '<quality shadowsize="1024" offsamples="0" numslices="40"/>',
            "</visual>",
            "<asset>",
            *asset_xml,
            *material_xml,
            "</asset>",
            "<worldbody>",
            *_light_xml(lights),
            *_room_geoms(half_size, wall_height, ceiling),
            *body_xml,
            *_camera_xml(cameras),
            "</worldbody>",
            "</mujoco>",
        ]
    )
    info = {
        "seed": int(seed),
        "generator": "pixio_3d.data.scenes",
        "texture_mode": config.texture_mode,
        "room": {"half_size": half_size.tolist(), "wall_height": wall_height, "ceiling": ceiling},
        "object_ids": {"0": "no surface", "1": "room", "2+i": "objects[i]"},
        "object_frames": "body pos/quat (w, x, y, z) in world metres; geoms in the body frame",
        "objects": objects,
        "lights": lights,
        "ambient": float(ambient),
        "cameras": cameras,
    }
    return SceneSpec(seed=int(seed), num_views=num_views, xml=xml, assets=assets, info=info)


# ---------------------------------------------------------------------------------- rendering
def render_scene(
    spec: SceneSpec, height: int, width: int, *, shadows: bool = False, antialias: bool = False
) -> RenderedViews:
    """Render every camera of ``spec``: RGB, then depth and segmentation passes (exact per pixel
    centre; see the module docstring for conventions). ``antialias`` (4x MSAA) blends RGB
    silhouettes while depth and ids stay per pixel centre; shadows cost ~5-10x on software GL."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    model = spec.compile()
    model.vis.global_.offwidth = max(width, model.vis.global_.offwidth)
    model.vis.global_.offheight = max(height, model.vis.global_.offheight)
    model.vis.quality.offsamples = 4 if antialias else 0
    model.vis.quality.shadowsize = 1024 if shadows else 0
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    far = model.vis.map.zfar * model.stat.extent
    # the world body holds the room; object i is body i + 1 (built in that order)
    object_of_geom = (model.geom_bodyid + 1).astype(np.int32)
    num_views = model.ncam
    rgb = np.empty((num_views, height, width, 3), np.uint8)
    depth = np.empty((num_views, height, width), np.float32)
    object_ids = np.empty((num_views, height, width), np.int32)
    load_triton_first()
    renderer = mujoco.Renderer(model, height, width)
    try:
        flags = renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
        for k in range(num_views):
            renderer.update_scene(data, camera=k)
            rgb[k] = renderer.render()
            renderer.enable_depth_rendering()
            z = renderer.render()
            renderer.enable_segmentation_rendering()
            segment = renderer.render()
            renderer.disable_segmentation_rendering()
            hit = (segment[..., 1] == mujoco.mjtObj.mjOBJ_GEOM) & (z < 0.5 * far)
            depth[k] = np.where(hit, z, 0.0)
            object_ids[k] = np.where(hit, object_of_geom[np.maximum(segment[..., 0], 0)], 0)
    finally:
        renderer.close()
    focal = 0.5 * height / np.tan(np.radians(model.cam_fovy) / 2)
    intrinsics = np.zeros((num_views, 3, 3))
    intrinsics[:, 0, 0] = intrinsics[:, 1, 1] = focal
    intrinsics[:, 0, 2], intrinsics[:, 1, 2], intrinsics[:, 2, 2] = width / 2, height / 2, 1.0
    cam2world = np.tile(np.eye(4), (num_views, 1, 1))
    cam2world[:, :3, :3] = data.cam_xmat.reshape(-1, 3, 3) @ np.diag([1.0, -1.0, -1.0])
    cam2world[:, :3, 3] = data.cam_xpos
    return RenderedViews(rgb, depth, object_ids, intrinsics, cam2world)


# ------------------------------------------------------------------------------------ dataset
def scene_seed(seed: int, index: int) -> int:
    """The seed of scene ``index`` of a dataset drawn with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def generate_dataset(
    out_dir: str | Path,
    num_scenes: int,
    views_per_scene: int,
    height: int,
    width: int,
    seed: int = 0,
    config: SceneConfig | None = None,
    *,
    overwrite: bool = False,
    shadows: bool = False,
    antialias: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Render ``num_scenes`` scenes into ``out_dir/scene_XXXX`` in the layout of
    :mod:`pixio_3d.data`. An existing non-empty scene folder raises ``FileExistsError`` (before
    anything is rendered) unless ``overwrite``. Returns the scene folders."""
    from tqdm.auto import tqdm

    from pixio_3d.data import write_scene

    if num_scenes < 1:
        raise ValueError(f"num_scenes must be >= 1, got {num_scenes}")
    config = config or SceneConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output folder {out_dir} is a file")
    scene_dirs = [out_dir / f"scene_{i:04d}" for i in range(num_scenes)]
    files = [d for d in scene_dirs if d.exists() and not d.is_dir()]
    if files:  # never replaced, not even with overwrite: it is not a scene folder of ours
        raise FileExistsError(f"{files[0]} is a file, not a scene folder; move it away")
    taken = [d for d in scene_dirs if d.is_dir() and any(d.iterdir())]
    if taken and not overwrite:
        raise FileExistsError(
            f"{taken[0]} exists and is not empty ({len(taken)} scene folders in {out_dir}); "
            "pass overwrite=True (--overwrite) to replace them"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for index in tqdm(range(num_scenes), desc="scenes", unit="scene", disable=not progress):
        spec = build_scene(scene_seed(seed, index), views_per_scene, config)
        views = render_scene(spec, height, width, shadows=shadows, antialias=antialias)
        info = {**spec.info, "dataset_seed": seed, "index": index, "config": _config_dict(config)}
        write_scene(
            scene_dirs[index],
            rgb=views.rgb,
            depth=views.depth,
            intrinsics=views.intrinsics,
            cam2world=views.cam2world,
            object_ids=views.object_ids,
            scene_info=info,
            overwrite=overwrite,
        )
    return scene_dirs


def _config_dict(config: SceneConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}
