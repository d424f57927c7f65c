"""pixio_envs: Gymnasium environments (MuJoCo) for the robot-learning part of Pixio.

Importing this package registers the environments with Gymnasium (the Gymnasium convention for
third-party envs; ``gymnasium.make("pixio_envs:pixio_envs/PushBlock-v0")`` imports it for you):

* ``pixio_envs/PushBlock-v0``: our own tabletop pushing task (``push_block.py``), 150 steps.
"""

from gymnasium.envs.registration import register, registry

ENVS = {
    "pixio_envs/PushBlock-v0": {
        "entry_point": "pixio_envs.push_block:PushBlockEnv",
        "max_episode_steps": 150,
    },
}

for env_id, spec in ENVS.items():
    if env_id not in registry:
        register(id=env_id, **spec)

__all__ = ["ENVS"]
