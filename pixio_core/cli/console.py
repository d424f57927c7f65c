"""The one CLI layer every console script goes through.

* ``--help`` prints the usage, the config groups with their options and the main settings, read
  from the YAML files alone: no torch, MuJoCo or hydra import, so it answers at once.
* A user's mistake (an unknown setting, a wrong config group option, a missing required value,
  a missing file, a value a component rejects) prints one line ``<prog>: <what>`` and exits
  with status 1, without a traceback. Set ``PIXIO_TRACEBACK=1`` to see the traceback.
  A real bug (any other exception) still shows its traceback.
* Ctrl-C prints ``<prog>: interrupted`` and exits with 130.

Hydra commands are :class:`HydraCommand` entries (a config name and the ``module:function``
that runs the composed config, imported only when it runs); argparse commands wrap their
``main`` in :func:`run_guarded`. The YAML configs ship inside the installed package
(``pixio_configs``, the repository's ``configs/`` folder), so a non-editable install finds them.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "CONFIG_DIR",
    "HydraCommand",
    "UserError",
    "compose_config",
    "hydra_help",
    "run_guarded",
    "run_hydra_command",
    "user_errors",
]


def _config_dir() -> str:
    spec = importlib.util.find_spec("pixio_configs")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pixio_configs package (the configs/ folder) is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))).resolve())


CONFIG_DIR = _config_dir()
HELP_FLAGS = ("-h", "--help")
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
)


class UserError(Exception):
    """A mistake in what the user asked for; the CLI layer prints its message as one line."""


def one_line(error: BaseException | str) -> str:
    """The message of ``error`` on one line (its lines joined with ``; ``)."""
    text = str(error).strip() or type(error).__name__
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "; ".join(line for line in lines if line)


def _fail(prog: str, message: str) -> NoReturn:
    raise SystemExit(f"{prog}: {message}")  # Python prints it to stderr and exits with 1


@contextlib.contextmanager
def user_errors(prog: str, extra: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn user errors raised inside the block into one line on stderr and exit status 1."""
    show_traceback = os.environ.get("PIXIO_TRACEBACK", "") not in ("", "0")
    try:
        yield
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except (UserError, *USER_ERRORS, *extra) as error:
        if show_traceback:
            raise
        _fail(prog, one_line(error))


def run_guarded(prog: str, main: Callable[[], Any]) -> Any:
    """Run an argparse command's ``main()`` inside :func:`user_errors`."""
    with user_errors(prog):
        return main()


# ------------------------------------------------------------------------------ YAML reading
_OPTION_LINE = re.compile(
    r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<value>[^#]*)(#(?P<note>.*))?$"
)


@dataclass(frozen=True)
class _Option:
    key: str
    value: str
    note: str


def _yaml_options(path: Path, prefix: str = "") -> list[_Option]:
    """``key=value  # note`` lines of a config file, nested keys dotted (two levels deep); the
    ``defaults`` list and ``hydra`` section are left out."""
    options: list[_Option] = []
    stack: list[tuple[int, str]] = []
    skip_indent: int | None = None
    for line in path.read_text().splitlines():
        match = _OPTION_LINE.match(line)
        if not match or line.lstrip().startswith("-"):
            continue
        indent, key = len(match["indent"]), match["key"]
        if skip_indent is not None and indent > skip_indent:
            continue
        skip_indent = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        value, note = match["value"].strip(), (match["note"] or "").strip()
        if not stack and key in ("defaults", "hydra"):
            skip_indent = indent
            continue
        dotted = ".".join([*(k for _, k in stack), key])
        if value:
            options.append(_Option(prefix + dotted, value, note))
        elif len(stack) < 1:
            stack.append((indent, key))
        else:  # deeper sections: named, not expanded
            options.append(_Option(prefix + dotted + ".*", "...", note))
            skip_indent = indent
    return options


def _defaults(path: Path) -> list[tuple[str, str]]:
    """``(group, default option)`` of a config's defaults list."""
    found = []
    in_defaults = False
    for line in path.read_text().splitlines():
        if line.startswith("defaults:"):
            in_defaults = True
            continue
        if in_defaults:
            entry = re.match(r"^\s+-\s+(?P<group>[\w/]+)\s*:\s*(?P<option>[\w.]+)", line)
            if entry:
                found.append((entry["group"], entry["option"]))
            elif line.strip() and not line.lstrip().startswith("-"):
                break
    return found


def _group_options(group: str) -> list[str]:
    folder = Path(CONFIG_DIR) / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def config_keys(config_name: str) -> list[str]:
    """Every setting a config offers (its own and its default groups'), dotted."""
    primary = Path(CONFIG_DIR) / f"{config_name}.yaml"
    keys = [option.key for option in _yaml_options(primary)]
    for group, option in _defaults(primary):
        group_file = Path(CONFIG_DIR) / group / f"{option}.yaml"
        if group_file.is_file():
            keys += [o.key for o in _yaml_options(group_file, prefix=f"{group}.")]
    return sorted({key.removesuffix(".*") for key in keys})


# ------------------------------------------------------------------------------ hydra commands
@dataclass(frozen=True)
class HydraCommand:
    """A console script that runs a hydra config: ``prog KEY=VALUE ... GROUP=OPTION ...``.

    ``run`` is ``"module:function"``, called with the composed ``DictConfig``; ``overrides``
    come before the user's (e.g. the demo's output folder); ``environment`` is set (if unset)
    before ``run`` is imported (``MUJOCO_GL`` before MuJoCo).
    """

    prog: str
    config_name: str
    run: str
    summary: str
    examples: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)


def hydra_help(command: HydraCommand, usage_prefix: str | None = None) -> str:
    """The ``--help`` text of a hydra command, from its YAML files."""
    primary = Path(CONFIG_DIR) / f"{command.config_name}.yaml"
    prog = usage_prefix or command.prog
    lines = [f"usage: {prog} [KEY=VALUE ...] [GROUP=OPTION ...]", "", command.summary]
    if command.examples:
        lines += ["", "examples:"] + [f"  {example}" for example in command.examples]
    defaults = _defaults(primary)
    groups = [(g, o) for g, o in defaults if _group_options(g)]
    experiments = _group_options("experiment")
    if groups or experiments:
        lines += ["", "config groups (GROUP=OPTION; * = default):"]
        for group, default in groups:
            choices = ", ".join(f"{o}*" if o == default else o for o in _group_options(group))
            lines.append(f"  {group + ':':<12} {choices}")
        if experiments and command.config_name == "pretrain":
            lines.append(f"  {'+experiment:':<12} {', '.join(experiments)} (recipes)")
    group_options: dict[str, _Option] = {}
    for group, option in groups:
        for entry in _yaml_options(Path(CONFIG_DIR) / group / f"{option}.yaml", f"{group}."):
            group_options[entry.key] = entry
    options = []
    for entry in _yaml_options(primary):  # the command's own values win (``_self_`` is last)
        if entry.key in group_options:
            below = group_options[entry.key]
            group_options[entry.key] = _Option(entry.key, entry.value, entry.note or below.note)
        else:
            options.append(entry)
    options += list(group_options.values())
    if options:
        lines += ["", f"settings (KEY=VALUE; defaults of configs/{command.config_name}.yaml):"]
        width = min(44, max(len(f"{o.key}={o.value}") for o in options))
        for option in options:
            text = f"{option.key}={option.value}"
            lines.append(f"  {text:<{width}}  {option.note}".rstrip())
    lines += [
        "",
        "A value of ??? must be given. Errors print one line; PIXIO_TRACEBACK=1 shows the "
        "traceback.",
    ]
    return "\n".join(lines)


def _explain_composition_error(config_name: str, error: BaseException) -> str:
    """One clear line for a hydra composition error (unknown key, bad group option, ...)."""
    text = one_line(error)
    unknown = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Key '([^']+)' is not in struct", text
    )
    if unknown:
        key = unknown.group(1)
        if "Could not override" not in text:
            key = next((k for k in config_keys(config_name) if k.endswith(key)), key)
        close = difflib.get_close_matches(key, config_keys(config_name), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"unknown setting {key!r} (see --help for the settings){hint}"
    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        choices = ", ".join(_group_options(group)) or "none"
        return f"config group {group!r} has no option {option!r} (choose one of: {choices})"
    return text


def compose_config(config_name: str, overrides: Sequence[str]) -> Any:
    """The hydra config ``configs/<config_name>.yaml`` with ``overrides`` (``key=value``);
    hydra's composition errors become :class:`UserError`, and so does a required value
    (``???``) left unset."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise UserError(f"expected KEY=VALUE or GROUP=OPTION, got {bad[0]!r} (see --help)")
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(_explain_composition_error(config_name, error)) from error
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(
            f"{missing[0]} is required (it is ??? in the config): pass {missing[0]}=VALUE"
        )
    return cfg


def print_help(text: str) -> NoReturn:
    """Print ``text`` and exit 0 (quietly when the reader closed the pipe, as ``| head`` does)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        sys.stdout = None  # type: ignore[assignment]  (nothing left to flush at exit)
    raise SystemExit(0)


def _load(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run_hydra_command(
    command: HydraCommand, argv: Sequence[str] | None = None, usage_prefix: str | None = None
) -> Any:
    """Entry point of a hydra command: ``--help``, or compose and run with user errors as one
    line. Returns what ``command.run`` returns."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in HELP_FLAGS for arg in args):
        print_help(hydra_help(command, usage_prefix))
    prog = usage_prefix or command.prog
    with user_errors(prog):
        cfg = compose_config(command.config_name, [*command.overrides, *args])
        for key, value in command.environment.items():
            os.environ.setdefault(key, value)
        return _load(command.run)(cfg)
