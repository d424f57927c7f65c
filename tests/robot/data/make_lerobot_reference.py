"""Writes ``lerobot_reference/``: a tiny dataset made by the ``lerobot`` package itself (its
``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize``), so that the tests
check our reader against the real writer. ``lerobot`` needs Python >= 3.12 and an older torch, so
this is run by hand in a separate environment (``pip install lerobot`` there), not in CI:

    python tests/robot/data/make_lerobot_reference.py tests/robot/data/lerobot_reference

The arrays are a function of (episode, frame), which ``reference_frame`` below recomputes, so the
test knows what every frame held before encoding.
"""

import shutil
import sys
from pathlib import Path

import numpy as np

LENGTHS = (5, 6, 7)
TASKS = ("pick", "place", "pick")


def reference_frame(episode: int, frame: int) -> dict[str, np.ndarray]:
    t = np.float32(frame / 10)
    state = np.array([episode, frame, np.sin(t)], dtype=np.float32)
    action = np.array([np.cos(t), -frame, episode / 2], dtype=np.float32)
    y, x = np.mgrid[0:48, 0:64]
    image = np.stack(
        [(x * 4 + frame * 8) % 256, (y * 5 + episode * 60) % 256, np.full_like(x, 128)], -1
    ).astype(np.uint8)
    return {"observation.state": state, "action": action, "observation.images.cam": image}


def main(root: Path) -> None:
    from lerobot.datasets import LeRobotDataset

    shutil.rmtree(root, ignore_errors=True)
    features = {
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["a", "b", "c"]},
        "action": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "observation.images.cam": {
            "dtype": "video",
            "shape": (48, 64, 3),
            "names": ["height", "width", "channels"],
        },
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
    }
    dataset = LeRobotDataset.create(
        "pixio/reference", fps=10, features=features, root=root, robot_type="toy"
    )
    for episode, (length, task) in enumerate(zip(LENGTHS, TASKS, strict=True)):
        for frame in range(length):
            values = reference_frame(episode, frame)
            values["next.reward"] = np.array([frame / 10], dtype=np.float32)
            values["next.done"] = np.array([frame == length - 1])
            dataset.add_frame({**values, "task": task})
        dataset.save_episode()
    dataset.finalize()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
