"""Command line → config → app. No logic of its own beyond parsing and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from agent import __version__, config, logformat, malloc
from agent.config import ConfigError
from agent.top import cli as top_cli

EXIT_CONFIG = 2
USAGE_HINT = "dockwatch run --help lists the options"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a typo is one line naming what is wrong, not a page of usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"dockwatch: error: {message} ({USAGE_HINT})\n")


def _add_options(p: argparse.ArgumentParser) -> None:
    """One flag per config key; SUPPRESS keeps unset flags out, so env and file can apply."""
    p.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML config file (env: DOCKWATCH_CONFIG).",
    )
    for key in config.KEYS:
        default = f" Default: {key.shown_default}." if key.shown_default else ""
        if key.kind.flag == "bool":
            p.add_argument(
                f"--{key.name}",
                action=argparse.BooleanOptionalAction,
                dest=key.attr,
                default=argparse.SUPPRESS,
                help=f"{key.help}{default} [env: {key.env}]",
            )
        elif key.kind.flag == "append":  # repeatable, as `docker run --log-opt`
            p.add_argument(
                f"--{key.name}",
                metavar=key.metavar or "VALUE",
                dest=key.attr,
                action="append",
                default=argparse.SUPPRESS,
                help=f"{key.help} [env: {key.env}]",
            )
        else:
            p.add_argument(
                f"--{key.name}",
                metavar=key.metavar or "VALUE",
                dest=key.attr,
                default=argparse.SUPPRESS,
                help=f"{key.help}{default} [env: {key.env}]",
            )


def _bool_values(argv: Sequence[str]) -> list[str]:
    """`--x=true|false` for a boolean flag, as exporters accept it, becomes `--x` / `--no-x`."""
    bools = {f"--{k.name}" for k in config.KEYS if k.kind.flag == "bool"}
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if eq and flag in bools:
            try:
                arg = flag if config.parse_bool(value) else f"--no-{flag[2:]}"
            except ValueError as exc:
                raise ConfigError(f"{flag}: {value!r} is invalid: {exc}") from None
        out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    top = Parser(
        prog="dockwatch",
        allow_abbrev=False,  # a prefix of a flag is a typo to name, not a guess to act on
        description="Per-container network, connection and log agent for Docker hosts. "
        "`dockwatch run` serves Prometheus metrics on :9105/metrics. Options may also be given as "
        "DOCKWATCH_<KEY> environment variables or in a YAML file (--config); "
        "flags win over env, env over file. A boolean option is --x, --no-x or --x=true|false.",
    )
    top.add_argument("--version", action="version", version=f"dockwatch {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the agent (the options below apply)", allow_abbrev=False)
    _add_options(run)
    top_cli.add_parser(sub)
    _add_options(top)  # so `dockwatch --help` lists every option too
    return top


def load_config(ns: argparse.Namespace, env: dict[str, str] | None = None) -> config.Config:
    """The config, with the composition root's checks (sink options, web config) run at load."""
    from agent.app import CHECKS  # the root's: agent/ reaches exporters/ only through agent/app.py

    env = dict(os.environ) if env is None else env
    flags = {key.name: getattr(ns, key.attr, None) for key in config.KEYS}
    path = getattr(ns, "config", None) or env.get("DOCKWATCH_CONFIG")
    file_values = config.read_yaml(path) if path else {}
    return config.load(flags, env, file_values, CHECKS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = _bool_values(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"dockwatch: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    ns, unknown = parser.parse_known_args(args)
    if unknown:  # as argparse would, plus the nearest flag: the same help as for env and YAML typos
        flag = unknown[0].split("=", 1)[0]
        if flag.removeprefix("--") in config.RENAMED:
            print(f"dockwatch: error: {flag}: renamed --{config.RENAMED[flag[2:]]}", file=sys.stderr)
            return EXIT_CONFIG
        flags = ["--config", *(f"--{k.name}" for k in config.KEYS)]
        hint = config.closest(flag, flags)
        print(f"dockwatch: error: unrecognized argument {unknown[0]!r}{hint}", file=sys.stderr)
        return EXIT_CONFIG
    if ns.command is None:  # a short reminder, not the whole option table
        print("usage: dockwatch {run,top} [options] (dockwatch --help for all)", file=sys.stderr)
        return EXIT_CONFIG
    if ns.command == "top":
        return top_cli.main(ns)
    try:  # every key, sink option and file the config names is checked here, before anything starts
        cfg = load_config(ns)
    except ConfigError as exc:
        print(f"dockwatch: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logformat.setup(cfg.log_level, cfg.log_format)
    malloc.tune()
    from agent.app import App  # imported late: `--help` stays fast

    try:
        return asyncio.run(App(cfg).run())
    except KeyboardInterrupt:
        return 130
