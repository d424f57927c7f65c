"""MetaWorld (v3) tasks with pixel observations, for CortexBench-style behavior cloning.

Observation (a dict):
    ``pixels``  uint8 ``(H, W, 3)`` from a fixed named camera (default ``corner2``), rows flipped
                for the ``corner*`` cameras, which MetaWorld renders upside down;
    ``proprio`` float32 ``(4,)``: end-effector x, y, z and gripper opening;
    ``state``   float32 ``(39,)``: MetaWorld's full state observation (for its scripted experts).
Action: float32 ``(4,)`` in ``[-1, 1]`` (end-effector delta xyz, gripper), as MetaWorld.
Reward and ``info`` are MetaWorld's; ``info["is_success"]`` mirrors ``info["success"]`` and a
success terminates the episode. Each ``reset`` picks one of the task's 50 object/goal
configurations with ``self.np_random``, so a seed fixes the rollout. Rendering uses the same fast
settings as every task of this package (no shadows, reflections or skybox).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pixio_envs.rendering import fast_render_flags, make_renderer

CORTEXBENCH_TASKS = (
    "assembly-v3",
    "bin-picking-v3",
    "button-press-topdown-v3",
    "drawer-open-v3",
    "hammer-v3",
)
FLIPPED_CAMERAS = ("corner", "corner2", "corner3", "corner4")


def expert_class_name(task: str) -> str:
    """``"drawer-open-v3"`` -> ``"SawyerDrawerOpenV3Policy"`` (metaworld.policies)."""
    words = task.split("-")
    return "Sawyer" + "".join(w.capitalize() for w in words[:-1]) + words[-1].upper() + "Policy"


class MetaWorldPixelEnv(gym.Env):
    """See the module docstring for spaces, reward and success."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        task: str = "drawer-open-v3",
        camera: str = "corner2",
        image_size: int = 256,
        render_mode: str | None = None,
    ) -> None:
        import metaworld

        benchmark = metaworld.MT1(task, seed=0)
        if task not in benchmark.train_classes:
            raise ValueError(f"unknown MetaWorld task {task!r}")
        self.task = task
        self._inner = benchmark.train_classes[task]()
        self._tasks = [t for t in benchmark.train_tasks if t.env_name == task]
        model = self._inner.model
        cameras = [model.camera(i).name for i in range(model.ncam)]
        if camera not in cameras:
            raise ValueError(f"unknown camera {camera!r}; MetaWorld has {cameras}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.camera = camera
        self.image_size = image_size
        self.render_mode = render_mode
        self._renderer = None
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8),
                "proprio": spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32),
                "state": spaces.Box(-np.inf, np.inf, shape=(39,), dtype=np.float32),
            }
        )

    def _pixels(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer = make_renderer(self._inner.model, self.image_size, self.image_size)
        self._renderer.update_scene(self._inner.data, camera=self.camera)
        fast_render_flags(self._renderer)
        frame = self._renderer.render()
        return (frame[::-1] if self.camera in FLIPPED_CAMERAS else frame).copy()

    def _observation(self, state: np.ndarray) -> dict[str, np.ndarray]:
        state = np.asarray(state, dtype=np.float32)
        return {"pixels": self._pixels(), "proprio": state[:4].copy(), "state": state}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        index = int(self.np_random.integers(len(self._tasks)))
        self._inner.set_task(self._tasks[index])
        state, info = self._inner.reset(seed=int(self.np_random.integers(2**31)))
        return self._observation(state), {"is_success": False, "task_index": index}

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (4,):
            raise ValueError(f"expected an action of shape (4,), got {action.shape}")
        state, reward, _, truncated, info = self._inner.step(np.clip(action, -1.0, 1.0))
        info = dict(info)
        info["is_success"] = bool(info.get("success", 0.0))
        return self._observation(state), float(reward), info["is_success"], bool(truncated), info

    def render(self) -> np.ndarray | None:
        return self._pixels() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._inner.close()


class MetaWorldExpert:
    """MetaWorld's own scripted policy for the task, reading ``obs["state"]``."""

    def __init__(self, task: str) -> None:
        import metaworld.policies

        name = expert_class_name(task)
        if not hasattr(metaworld.policies, name):
            raise ValueError(f"metaworld.policies has no {name} for task {task!r}")
        self.policy = getattr(metaworld.policies, name)()

    def reset(self) -> None:
        pass

    def get_action(self, obs: dict[str, Any]) -> np.ndarray:
        return np.clip(
            self.policy.get_action(np.asarray(obs["state"], dtype=np.float64)), -1, 1
        ).astype(np.float32)
