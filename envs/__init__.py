"""pixio_envs: Gymnasium environments (MuJoCo) for the robot-learning part of Pixio.

Importing this package registers the environments with Gymnasium (the Gymnasium convention for
third-party envs; ``gymnasium.make("pixio_envs:pixio_envs/PushBlock-v0")`` imports it for you):

* ``pixio_envs/PushBlock-v1``: our own tabletop pushing task (``push_block.py``) with the goal
  disc at a fixed place (0, 0.2), 150 steps: behaviour cloning learns it from 25 demos (a
  state-based MLP: 29 of 30 episodes); ``pixio_envs/PushBlock-v0``: the goal drawn anew each
  episode (state-based BC reached 60 %);
* ``pixio_envs/MetaWorld-<task>`` for the five CortexBench MetaWorld tasks (``assembly-v3``,
  ``bin-picking-v3``, ``button-press-topdown-v3``, ``drawer-open-v3``, ``hammer-v3``) and
  ``pixio_envs/MetaWorld`` for any MetaWorld task by name (``task="pick-place-v3"``), 500 steps
  (``metaworld_pixels.py``).
"""

from gymnasium.envs.registration import register, registry

PUSH_BLOCK_GOAL = (0.0, 0.2)
ENVS = {
    "pixio_envs/PushBlock-v0": {
        "entry_point": "pixio_envs.push_block:PushBlockEnv",
        "max_episode_steps": 150,
    },
    "pixio_envs/PushBlock-v1": {
        "entry_point": "pixio_envs.push_block:PushBlockEnv",
        "max_episode_steps": 150,
        "kwargs": {"goal": PUSH_BLOCK_GOAL},
    },
}

_METAWORLD = "pixio_envs.metaworld_pixels:MetaWorldPixelEnv"
ENVS["pixio_envs/MetaWorld"] = {"entry_point": _METAWORLD, "max_episode_steps": 500}
for _task in (
    "assembly-v3",
    "bin-picking-v3",
    "button-press-topdown-v3",
    "drawer-open-v3",
    "hammer-v3",
):
    ENVS[f"pixio_envs/MetaWorld-{_task}"] = {
        "entry_point": _METAWORLD,
        "max_episode_steps": 500,
        "kwargs": {"task": _task},
    }

for env_id, spec in ENVS.items():
    if env_id not in registry:
        register(id=env_id, **spec)

__all__ = ["ENVS"]
