"""PushBlock: a tabletop pusher pushes a puck onto a goal disc. Needs nothing but MuJoCo.

The fast test task of the robot stack and a template for users who add their own tasks.

Observation (a dict):
    ``pixels``  uint8 ``(H, W, 3)`` from the fixed ``overhead`` camera (default 256 x 256);
    ``proprio`` float32 ``(4,)``: pusher x, y [m] and velocity x, y [m/s];
    ``state``   float32 ``(6,)``: pusher x, y, puck x, y, goal x, y [m] (for scripted experts and
                low-dimensional baselines).
Action: float32 ``(2,)`` in ``[-1, 1]``, the pusher's target velocity as a fraction of 0.3 m/s.
Control runs at 20 Hz (5 physics steps of 10 ms).
Reward: ``-distance(puck, goal) - 0.5 * distance(pusher, puck)`` (terms in ``info``).
Success (``info["is_success"]``, which also terminates the episode): the puck's centre within
4 cm of the goal's centre. Initial pusher, puck and goal positions are drawn from
``self.np_random``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from pixio_envs.rendering import fast_render_flags, make_renderer

ASSET = Path(__file__).parent / "assets" / "push_block.xml"
MAX_SPEED = 0.3
SUCCESS_RADIUS = 0.04
PUCK_RADIUS = 0.03
PUSHER_RADIUS = 0.02


class PushBlockEnv(gym.Env):
    """See the module docstring for the spaces, reward and success criterion."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        image_size: int = 256,
        camera: str = "overhead",
        render_mode: str | None = None,
        frame_skip: int = 5,
    ) -> None:
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.model = mujoco.MjModel.from_xml_path(str(ASSET))
        self.data = mujoco.MjData(self.model)
        if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"unknown camera {camera!r}; this task has 'overhead'")
        self.camera = camera
        self.image_size = image_size
        self.render_mode = render_mode
        self.frame_skip = frame_skip
        self._renderer: mujoco.Renderer | None = None
        self._goal_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "goal")
        self._puck_qpos = self.model.jnt_qposadr[
            mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, "puck")
        ]
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8),
                "proprio": spaces.Box(
                    np.array([-1, -1, -10, -10], np.float32),
                    np.array([1, 1, 10, 10], np.float32),
                    dtype=np.float32,
                ),
                "state": spaces.Box(-1.0, 1.0, shape=(6,), dtype=np.float32),
            }
        )

    # ---------------------------------------------------------------- state
    @property
    def pusher(self) -> np.ndarray:
        return self.data.qpos[:2].copy()

    @property
    def puck(self) -> np.ndarray:
        return self.data.qpos[self._puck_qpos : self._puck_qpos + 2].copy()

    @property
    def goal(self) -> np.ndarray:
        return self.model.site_pos[self._goal_site, :2].copy()

    def _render_pixels(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer = make_renderer(self.model, self.image_size, self.image_size)
        self._renderer.update_scene(self.data, camera=self.camera)
        fast_render_flags(self._renderer)
        return self._renderer.render().copy()

    def _observation(self) -> dict[str, np.ndarray]:
        proprio = np.concatenate([self.data.qpos[:2], self.data.qvel[:2]]).astype(np.float32)
        state = np.concatenate([self.pusher, self.puck, self.goal]).astype(np.float32)
        return {"pixels": self._render_pixels(), "proprio": proprio, "state": state}

    def _info(self) -> dict[str, Any]:
        goal_distance = float(np.linalg.norm(self.puck - self.goal))
        reach_distance = float(np.linalg.norm(self.pusher - self.puck))
        return {
            "is_success": goal_distance < SUCCESS_RADIUS,
            "reward_goal": -goal_distance,
            "reward_reach": -0.5 * reach_distance,
            "goal_distance": goal_distance,
        }

    # ---------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        rng = self.np_random
        puck = rng.uniform(-0.15, 0.15, size=2)
        goal = rng.uniform(-0.25, 0.25, size=2)
        while np.linalg.norm(goal - puck) < 0.12:
            goal = rng.uniform(-0.25, 0.25, size=2)
        pusher = rng.uniform(-0.3, 0.3, size=2)
        while np.linalg.norm(pusher - puck) < 0.1:
            pusher = rng.uniform(-0.3, 0.3, size=2)
        self.data.qpos[:2] = pusher
        self.data.qpos[self._puck_qpos : self._puck_qpos + 3] = [puck[0], puck[1], 0.021]
        self.data.qpos[self._puck_qpos + 3 : self._puck_qpos + 7] = [1, 0, 0, 0]
        self.model.site_pos[self._goal_site, :2] = goal
        mujoco.mj_forward(self.model, self.data)
        return self._observation(), self._info()

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"expected an action of shape (2,), got {action.shape}")
        self.data.ctrl[:] = np.clip(action, -1.0, 1.0) * MAX_SPEED
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        info = self._info()
        reward = info["reward_goal"] + info["reward_reach"]
        return self._observation(), reward, bool(info["is_success"]), False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self._render_pixels()
        return None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class PushBlockExpert:
    """Scripted expert: get behind the puck (around it when needed), then push it to the goal.

    ``get_action(obs)`` reads ``obs["state"]`` = pusher, puck, goal (x, y). Pushing steers the
    pusher at a point just past the contact point on the puck-goal line, so sideways drift is
    corrected; it goes back to repositioning when the pusher slips off the puck.
    """

    clearance = PUCK_RADIUS + PUSHER_RADIUS + 0.04

    def __init__(self, push_speed: float = 0.5, gain: float = 10.0) -> None:
        self.push_speed = push_speed
        self.gain = gain
        self.pushing = False

    def reset(self) -> None:
        self.pushing = False

    def get_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        pusher, puck, goal = (
            np.asarray(obs["state"][i : i + 2], dtype=np.float64) for i in (0, 2, 4)
        )
        to_goal = goal - puck
        direction = to_goal / (np.linalg.norm(to_goal) + 1e-9)
        offset = pusher - puck
        along = float(offset @ direction)
        lateral = offset - along * direction
        lateral_norm = float(np.linalg.norm(lateral))
        contact = puck - direction * (PUCK_RADIUS + PUSHER_RADIUS)
        if self.pushing and (along > 0 or lateral_norm > 0.035):
            self.pushing = False
        if not self.pushing and along < -(PUCK_RADIUS + PUSHER_RADIUS) and lateral_norm < 0.012:
            self.pushing = True
        if self.pushing:
            aim = contact + direction * 0.04 - pusher
            velocity = aim / (np.linalg.norm(aim) + 1e-9) * self.push_speed * MAX_SPEED
        else:
            side = (
                lateral / lateral_norm
                if lateral_norm > 1e-6
                else np.array([-direction[1], direction[0]])
            )
            if along > -0.5 * self.clearance:
                # beside or in front of the puck: step to its side first, then behind it
                behind = -self.clearance if along < 0 else 0.0
                waypoint = puck + side * self.clearance + direction * behind
            else:
                waypoint = puck - direction * self.clearance
                if lateral_norm < 0.05:  # almost lined up: approach the contact point slowly
                    waypoint = contact - direction * 0.01
            velocity = (waypoint - pusher) * self.gain
        return np.clip(velocity / MAX_SPEED, -1.0, 1.0).astype(np.float32)
