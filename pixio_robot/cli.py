"""``pixio-robot <command> [hydra overrides]``: the robot-learning entry point.

    pixio-robot collect                                  # 25 PushBlock demos -> outputs/robot/demos/
    pixio-robot collect num_demos=50 env.kwargs.image_size=128 output=/data/push.hdf5
    pixio-robot collect env=metaworld env.kwargs.task=hammer-v3 num_demos=25
    pixio-robot frames sources.push_block=10000 output=/data/sim_frames
    pixio-robot train encoder.source=outputs/demo/checkpoints policy=act steps=3000
    pixio-robot eval policies=[outputs/robot/policies/push_block_mlp] episodes_per_seed=20
    pixio-robot compare encoders=[outputs/demo/checkpoints,random:pixio_vitt16]
    pixio-robot export-lerobot outputs/robot/demos/push_block.hdf5 /data/push_lerobot
    pixio-robot collect format=lerobot output=/data/push_lerobot

Commands: ``collect`` (scripted-expert demos, robomimic HDF5 layout or LeRobot v3), ``frames`` (in-domain
pre-training frames rendered from the simulators, WebDataset shards), ``train`` (behavior
cloning on frozen features -> a self-contained policy checkpoint), ``eval`` (success rate per
seed in parallel workers, mp4 videos, results.json + results.md), ``compare`` (train and
evaluate the same policy on the same demos for several encoders), ``export-lerobot`` and
``import-lerobot`` (HDF5 demos <-> LeRobotDataset v3 folder), ``demo`` (all of it on our
own task with the shipped simulator-domain encoder ``pixio_sim_vitt16`` against a randomly
initialised one; ``make demo`` runs it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pixio_core.cli.console import HydraCommand, print_help, run_guarded, run_hydra_command

MUJOCO = {"MUJOCO_GL": "egl"}  # before mujoco is first imported
COMMANDS = {
    name: HydraCommand(
        prog=f"pixio-robot {name}",
        config_name=f"robot_{name}",
        run=f"pixio_robot.cli:{job}",
        summary=summary,
        examples=examples,
        environment=MUJOCO,
    )
    for name, job, summary, examples in (
        (
            "collect",
            "collect",
            "Scripted-expert demonstrations in robomimic's HDF5 layout, or a LeRobot v3 "
            "dataset with format=lerobot (successful episodes only; an existing output is kept "
            "unless overwrite=true).",
            (
                "pixio-robot collect",
                "pixio-robot collect num_demos=50 env.kwargs.image_size=128 output=/data/p.hdf5",
                "pixio-robot collect env=metaworld env.kwargs.task=hammer-v3 num_demos=25",
                "pixio-robot collect format=lerobot output=/data/push_lerobot",
            ),
        ),
        (
            "frames",
            "frames",
            "In-domain pre-training frames from our simulators (PushBlock, MetaWorld, 3D rooms) "
            "as WebDataset shards for pixio-pretrain data=sim_frames.",
            (
                "pixio-robot frames sources.push_block=10000 output=/data/sim_frames",
                "pixio-robot frames sources.metaworld={hammer-v3:500,drawer-open-v3:500}",
            ),
        ),
        (
            "train",
            "train",
            "Behaviour cloning on frozen encoder features -> a self-contained policy checkpoint.",
            (
                "pixio-robot train encoder.source=outputs/demo/checkpoints",
                "pixio-robot train policy=act encoder.feature=patch steps=3000",
            ),
        ),
        (
            "eval",
            "evaluate",
            "Success rate of policy checkpoints per seed in parallel workers; mp4 videos, "
            "results.json + results.md.",
            ("pixio-robot eval policies=[outputs/robot/policies/push_block_mlp] num_envs=2",),
        ),
        (
            "compare",
            "compare",
            "Train and evaluate the same policy on the same demos for several encoders.",
            ("pixio-robot compare encoders=[outputs/demo/checkpoints,random:pixio_vitt16]",),
        ),
        (
            "demo",
            "demo",
            "Collect, train and evaluate on our own task with the shipped pixio_sim_vitt16 "
            "encoder and a random-encoder baseline (what make demo runs).",
            ("pixio-robot demo", "pixio-robot demo encoder.source=outputs/demo/checkpoints"),
        ),
    )
}


def load_object(path: str):
    """``"package.module:Name"`` -> the object (experts and other pluggable classes)."""
    module, _, name = path.partition(":")
    if not name:
        raise ValueError(f"expected 'module:Name', got {path!r}")
    return getattr(importlib.import_module(module), name)


def collect(cfg: DictConfig) -> None:
    import pixio_envs  # noqa: F401  (registers the environments)

    from pixio_robot.demos import collect_demos
    from pixio_robot.lerobot import check_output, hdf5_to_lerobot

    fmt = str(cfg.get("format", "hdf5"))
    if fmt not in ("hdf5", "lerobot"):
        raise ValueError(f"format must be hdf5 or lerobot, got {fmt!r}")
    expert_kwargs = cfg.env.get("expert_kwargs")
    expert_kwargs = OmegaConf.to_container(expert_kwargs, resolve=True) if expert_kwargs else {}
    expert = load_object(cfg.env.expert)(**expert_kwargs)
    output = Path(cfg.output)

    def run(path: Path, overwrite: bool):
        return collect_demos(
            cfg.env.id,
            expert,
            path,
            cfg.num_demos,
            env_kwargs=OmegaConf.to_container(cfg.env.kwargs, resolve=True),
            seed=cfg.seed,
            valid_fraction=cfg.valid_fraction,
            max_attempts=cfg.max_attempts,
            overwrite=overwrite,
            action_noise=cfg.get("action_noise", 0.0),
        )

    if fmt == "hdf5":
        stats = run(output, cfg.overwrite)
    else:  # collect to HDF5 in a scratch folder beside the output, then convert
        output = output.with_suffix("") if output.suffix in (".hdf5", ".h5") else output
        check_output(output, cfg.overwrite)
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as tmp:
            stats = run(Path(tmp) / "demos.hdf5", True)
            hdf5_to_lerobot(
                Path(tmp) / "demos.hdf5", output, codec=cfg.codec, overwrite=cfg.overwrite
            )
    if cfg.get("recording"):
        from pixio_robot.recording import demo_episodes, write_recording

        rrd = write_recording(demo_episodes(output), output.with_suffix(".rrd"))
        print(f"Rerun recording of the demos -> {rrd} (pixio-robot view {rrd})")
    print(
        f"{cfg.env.id}: kept {stats.successes} successful of {stats.attempts} expert episodes "
        f"(expert success {stats.success_rate:.0%}), {stats.samples} steps -> {output}"
    )


def frames(cfg: DictConfig) -> None:
    from pixio_robot.frames import FrameSettings, write_frame_shards

    settings = FrameSettings(
        sources=_plain(cfg.sources),
        image_size=cfg.image_size,
        seed=cfg.seed,
        every=cfg.every,
        action_noise=cfg.action_noise,
        camera_jitter=cfg.camera_jitter,
        samples_per_shard=cfg.samples_per_shard,
    )
    manifest = write_frame_shards(cfg.output, settings, overwrite=cfg.overwrite)
    per_source = ", ".join(f"{k} {v}" for k, v in manifest["frames_per_source"].items())
    print(
        f"{manifest['frames']} frames ({per_source}) in {len(manifest['shards'])} shards -> "
        f"{cfg.output} ({manifest['seconds']:.0f} s); train on them with: pixio-pretrain "
        f"data=sim_frames data.urls={cfg.output}"
    )


def _plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def _train(cfg: DictConfig, encoder_source: str, output: str) -> tuple[Path, dict]:
    from pixio_robot.pipeline import train_policy

    return train_policy(
        demos=cfg.demos,
        env_id=cfg.env.id,
        output=output,
        encoder_source=encoder_source,
        policy_name=cfg.policy.name,
        policy_config=_plain(cfg.policy.config),
        feature=cfg.encoder.feature,
        image_size=cfg.encoder.image_size,
        encoder_seed=cfg.encoder.seed,
        encoder_precision=cfg.encoder.get("precision", "fp32"),
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.policy.lr,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        cache_dir=cfg.cache_dir,
        device=cfg.device,
        overwrite=cfg.overwrite,
    )


def train(cfg: DictConfig) -> None:
    output, summary = _train(cfg, cfg.encoder.source, cfg.output)
    Path(output, "run_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    print(
        f"trained {cfg.policy.name} on {summary['train_samples']} steps of {summary['num_demos']} "
        f"demos ({cfg.encoder.source}, {cfg.encoder.feature}): final loss "
        f"{summary['final_loss']:.4f} -> {output}"
    )


def _evaluate_all(cfg: DictConfig, named_policies: list[tuple[str, str]], out: Path) -> list[dict]:
    from pixio_robot.evaluation import slug, write_results
    from pixio_robot.pipeline import evaluate_policy, result_row

    if (out / "results.json").exists() and not cfg.overwrite:
        raise FileExistsError(
            f"{out / 'results.json'} exists; pass overwrite=true or another output"
        )
    rows = []
    for name, checkpoint in named_policies:
        result, config = evaluate_policy(
            checkpoint,
            list(cfg.seeds),
            cfg.episodes_per_seed,
            num_envs=cfg.num_envs,
            video_dir=out / "videos" if cfg.videos_per_seed > 0 else None,
            videos_per_seed=cfg.videos_per_seed,
            device=cfg.device,
            recording=out / "recordings" / f"{slug(name)}.rrd" if cfg.get("recording") else None,
            encoder_precision=cfg.get("encoder_precision"),
        )
        rows.append(result_row(name, result, config))
    json_path, md_path = write_results(rows, out)
    print(md_path.read_text(), end="")
    print(f"results -> {json_path} and {md_path}")
    return rows


def evaluate(cfg: DictConfig) -> None:
    if not cfg.policies:
        raise ValueError("policies is empty: name one or more policy checkpoint folders")
    named = [(Path(p).name, str(p)) for p in cfg.policies]
    _evaluate_all(cfg, named, Path(cfg.output))


def compare(cfg: DictConfig) -> None:
    from pixio_robot.evaluation import slug

    if len(cfg.encoders) < 1:
        raise ValueError("encoders is empty: name the encoders to compare")
    out = Path(cfg.output)
    named = []
    for source in cfg.encoders:
        folder = out / "policies" / slug(str(source))
        _train(cfg, str(source), str(folder))
        named.append((f"{cfg.policy.name} on {source}", str(folder)))
    _evaluate_all(cfg, named, out)


def demo(cfg: DictConfig) -> None:
    """Collect (once) -> train -> evaluate on our own task, for the demo's encoder and each
    baseline (the same demos, policy and evaluation seeds); prints the success rates."""
    import pixio_envs  # noqa: F401

    from pixio_robot.demos import collect_demos, inspect_demos
    from pixio_robot.evaluation import slug

    if not Path(cfg.demos).exists():
        stats = collect_demos(
            cfg.env.id,
            load_object(cfg.env.expert)(),
            cfg.demos,
            cfg.num_demos,
            env_kwargs=_plain(cfg.env.kwargs),
            seed=cfg.seed,
            valid_fraction=0.0,
        )
        print(f"expert: {stats.successes} successes in {stats.attempts} episodes")
    info = inspect_demos(cfg.demos, env_name=cfg.env.id)
    if info.num_demos != cfg.num_demos:
        print(
            f"using the {info.num_demos} demos already in {cfg.demos} "
            f"(num_demos={cfg.num_demos} applies when that file is collected)"
        )
    sources = [str(cfg.encoder.source), *(str(s) for s in cfg.get("baselines") or [])]
    named = []
    for index, source in enumerate(sources):
        policy_dir = Path(cfg.output) / ("policy" if index == 0 else f"baseline_{slug(source)}")
        _, summary = _train(cfg, source, str(policy_dir))
        print(
            f"trained {cfg.policy.name} on {source} features of {info.num_demos} demos in "
            f"{summary['train_seconds']:.0f} s (final loss {summary['final_loss']:.3f})"
        )
        named.append((f"{cfg.policy.name} on {source}", str(policy_dir)))
    rows = _evaluate_all(cfg, named, Path(cfg.output))
    for source, row in zip(sources, rows, strict=True):
        role = "encoder " if source == sources[0] else "baseline"
        print(
            f"{cfg.env.id}: {role} {source}: success rate {100 * row['success_rate']:.0f}% "
            f"(± {100 * row['success_std']:.0f} over {len(row['success_per_seed'])} seeds)"
        )
    print(f"videos in {Path(cfg.output) / 'videos'}")


def _lerobot_parser(name: str) -> argparse.ArgumentParser:
    export = name == "export-lerobot"
    parser = argparse.ArgumentParser(
        prog=f"pixio-robot {name}",
        description=(
            "Convert HDF5 demos (robomimic layout, from pixio-robot collect) to a LeRobotDataset "
            "v3 folder: meta/info.json, meta/tasks.parquet, meta/stats.json, meta/episodes/, "
            "data/ (parquet) and videos/ (mp4)."
            if export
            else "Convert a LeRobotDataset v3 folder to an HDF5 demo file (robomimic layout)."
        ),
    )
    parser.add_argument("source", type=Path, help="DEMOS.hdf5" if export else "LeRobot folder")
    parser.add_argument("output", type=Path, help="LeRobot folder" if export else "DEMOS.hdf5")
    if export:
        parser.add_argument(
            "--codec",
            default="av1",
            choices=["av1", "h264", "lossless"],
            help="video codec: av1 (LeRobot's default, lossy), h264, lossless (RGB H.264)",
        )
        parser.add_argument(
            "--fps", type=float, default=None, help="default: the env's control rate"
        )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def convert(name: str, argv: Sequence[str]) -> None:
    """``pixio-robot export-lerobot DEMOS.hdf5 OUT`` / ``import-lerobot DIR OUT.hdf5``."""
    args = _lerobot_parser(name).parse_args(argv)

    def run() -> None:
        from pixio_robot.lerobot import hdf5_to_lerobot, lerobot_to_hdf5

        if name == "export-lerobot":
            out = hdf5_to_lerobot(args.source, args.output, args.fps, args.codec, args.overwrite)
        else:
            out = lerobot_to_hdf5(args.source, args.output, args.overwrite)
        print(f"{args.source} -> {out}")

    run_guarded(f"pixio-robot {name}", run)


def view(argv: Sequence[str]) -> None:
    """``pixio-robot view FILE``: Rerun's web viewer on localhost for a recording (.rrd), an
    HDF5 demo file or a LeRobot dataset folder."""
    parser = argparse.ArgumentParser(
        prog="pixio-robot view",
        description="Open robot episodes in Rerun's web viewer, served on localhost (the viewer "
        "ships in the rerun-sdk wheel; no internet): an eval's or collect's .rrd recording, "
        "an HDF5 demo file, or a LeRobot v3 dataset folder.",
    )
    parser.add_argument("source", type=Path, help="FILE.rrd, DEMOS.hdf5 or a LeRobot folder")
    parser.add_argument("--port", type=int, default=9090, help="web viewer port (0: any free)")
    parser.add_argument("--output", type=Path, default=None, help="also keep the .rrd here")
    parser.add_argument("--no-serve", action="store_true", help="write the recording only")
    args = parser.parse_args(argv)

    def run() -> None:
        from pixio_core.recording import serve_until_stopped
        from pixio_robot.recording import as_recording

        rrd = as_recording(args.source, output=args.output)
        print(f"recording: {rrd}")
        if not args.no_serve:
            serve_until_stopped(rrd, args.port)

    run_guarded("pixio-robot view", run)


CONVERSIONS = {
    "export-lerobot": "HDF5 demos -> a LeRobotDataset v3 folder (parquet + mp4).",
    "import-lerobot": "A LeRobotDataset v3 folder -> HDF5 demos (robomimic layout).",
    "view": "Rerun's web viewer on localhost for a recording (.rrd), HDF5 demos or LeRobot.",
}


def usage() -> str:
    width = max(len(name) for name in [*COMMANDS, *CONVERSIONS])
    lines = [
        f"usage: pixio-robot {{{','.join(COMMANDS)}}} [KEY=VALUE ...]",
        "",
        "Robot learning: demos, behaviour cloning on frozen Pixio features, evaluation.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in CONVERSIONS.items()]
    lines += ["", "pixio-robot COMMAND --help shows a command's config groups and settings."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """The ``pixio-robot`` console script: ``pixio-robot COMMAND [hydra overrides]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print_help(usage())
    if args and args[0] in CONVERSIONS:
        for key, value in MUJOCO.items():
            os.environ.setdefault(key, value)
        view(args[1:]) if args[0] == "view" else convert(args[0], args[1:])
        return
    if not args or args[0] not in COMMANDS:
        given = f"unknown command {args[0]!r}" if args else "no command given"
        raise SystemExit(
            f"pixio-robot: {given}; usage: pixio-robot {{{', '.join([*COMMANDS, *CONVERSIONS])}}} "
            "[overrides] "
            "(pixio-robot --help lists the commands)"
        )
    command = COMMANDS[args[0]]
    run_hydra_command(command, args[1:], usage_prefix=command.prog)


if __name__ == "__main__":
    main()
