"""``pixio-robot <command> [hydra overrides]``: the robot-learning entry point.

    pixio-robot collect                                  # 25 PushBlock demos -> outputs/robot/demos/
    pixio-robot collect num_demos=50 env.kwargs.image_size=128 output=/data/push.hdf5
    pixio-robot collect env=metaworld env.kwargs.task=hammer-v3 num_demos=25

Commands: ``collect`` (scripted-expert demos, robomimic HDF5 layout).
"""

from __future__ import annotations

import importlib
import sys

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from pixio_core.cli.common import CONFIG_DIR

COMMANDS = {"collect": "robot_collect"}


def load_object(path: str):
    """``"package.module:Name"`` -> the object (experts and other pluggable classes)."""
    module, _, name = path.partition(":")
    if not name:
        raise ValueError(f"expected 'module:Name', got {path!r}")
    return getattr(importlib.import_module(module), name)


def collect(cfg: DictConfig) -> None:
    import pixio_envs  # noqa: F401  (registers the environments)

    from pixio_robot.demos import collect_demos

    expert_kwargs = cfg.env.get("expert_kwargs")
    expert_kwargs = OmegaConf.to_container(expert_kwargs, resolve=True) if expert_kwargs else {}
    expert = load_object(cfg.env.expert)(**expert_kwargs)
    stats = collect_demos(
        cfg.env.id,
        expert,
        cfg.output,
        cfg.num_demos,
        env_kwargs=OmegaConf.to_container(cfg.env.kwargs, resolve=True),
        seed=cfg.seed,
        valid_fraction=cfg.valid_fraction,
        max_attempts=cfg.max_attempts,
        overwrite=cfg.overwrite,
    )
    print(
        f"{cfg.env.id}: kept {stats.successes} successful of {stats.attempts} expert episodes "
        f"(expert success {stats.success_rate:.0%}), {stats.samples} steps -> {cfg.output}"
    )


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        given = args[0] if args else "nothing"
        raise SystemExit(f"usage: pixio-robot {{{', '.join(COMMANDS)}}} [overrides]; got {given}")
    command, overrides = args[0], args[1:]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(COMMANDS[command], overrides=overrides)
    {"collect": collect}[command](cfg)


if __name__ == "__main__":
    main()
