import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    # headless MuJoCo rendering in tests (Mesa EGL); users choose their own backend
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
