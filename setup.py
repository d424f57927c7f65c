"""Package discovery: setuptools' find for the main packages, plus two folders installed under
other names: ``envs/`` as ``pixio_envs`` and ``configs/`` as ``pixio_configs``.

A popular PyPI package already owns the top-level module name ``envs``, so the folder keeps its
short name in the tree and is imported as ``pixio_envs``. The hydra configs ship inside the
installed package (``pixio_configs``, YAML files as package data), so a non-editable install
finds them without the repository.
"""

from setuptools import find_packages, setup

main_packages = find_packages(include=["pixio_core*", "pixio_3d*", "pixio_robot*"])
env_packages = ["pixio_envs"] + [f"pixio_envs.{name}" for name in find_packages("envs")]

setup(
    packages=main_packages + env_packages + ["pixio_configs"],
    package_dir={"pixio_envs": "envs", "pixio_configs": "configs"},
    package_data={
        "pixio_envs": ["assets/*.xml"],
        "pixio_configs": ["*.yaml", "*/*.yaml"],
        "pixio_core": ["weights/*/*"],  # shipped encoders (SHIPPED_ENCODERS)
    },
)
