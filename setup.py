"""Package discovery: setuptools' find for the main packages, plus ``envs/`` installed as ``pixio_envs``.

A popular PyPI package already owns the top-level module name ``envs``, so the folder keeps its
short name in the tree and is imported as ``pixio_envs``.
"""

from setuptools import find_packages, setup

main_packages = find_packages(include=["pixio_core*", "pixio_3d*", "pixio_robot*"])
env_packages = ["pixio_envs"] + [f"pixio_envs.{name}" for name in find_packages("envs")]

setup(
    packages=main_packages + env_packages,
    package_dir={"pixio_envs": "envs"},
    package_data={"pixio_envs": ["assets/*.xml"]},
)
