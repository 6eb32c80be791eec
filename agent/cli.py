"""Command line → config → app. No logic of its own beyond parsing and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from agent import __version__, config
from agent.config import ConfigError
from agent.top import cli as top_cli

EXIT_CONFIG = 2


def _add_options(p: argparse.ArgumentParser) -> None:
    """One flag per config key; SUPPRESS keeps unset flags out, so env and file can apply."""
    p.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML config file (env: DOCKWATCH_CONFIG).",
    )
    for key in config.KEYS:
        default = "" if key.default is None else f" (default: {key.default})"
        if key.kind == "bool":
            p.add_argument(
                f"--{key.name}",
                action=argparse.BooleanOptionalAction,
                dest=key.attr,
                default=argparse.SUPPRESS,
                help=f"{key.help}{default} [env: {key.env}]",
            )
        elif key.kind == "list":  # repeatable, as `docker run --log-opt`
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


def build_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="dockwatch",
        description="Per-container network, connection and log agent for Docker hosts. "
        "`dockwatch run` serves Prometheus metrics on :9105/metrics. Options may also be given as "
        "DOCKWATCH_<KEY> environment variables or in a YAML file (--config); "
        "flags win over env, env over file.",
    )
    top.add_argument("--version", action="version", version=f"dockwatch {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the agent (the options below apply)")
    _add_options(run)
    top_cli.add_parser(sub)
    _add_options(top)  # so `dockwatch --help` lists every option too
    return top


def load_config(ns: argparse.Namespace, env: dict[str, str] | None = None) -> config.Config:
    env = dict(os.environ) if env is None else env
    flags = {key.name: getattr(ns, key.attr, None) for key in config.KEYS}
    path = getattr(ns, "config", None) or env.get("DOCKWATCH_CONFIG")
    file_values = config.read_yaml(path) if path else {}
    return config.load(flags, env, file_values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns, unknown = parser.parse_known_args(argv)
    if unknown:  # as argparse would, plus the nearest flag: the same help as for env and YAML typos
        flag = unknown[0].split("=", 1)[0]
        flags = ["--config", *(f"--{k.name}" for k in config.KEYS)]
        hint = config.closest(flag, flags)
        print(f"dockwatch: error: unrecognized argument {unknown[0]!r}{hint}", file=sys.stderr)
        return EXIT_CONFIG
    if ns.command is None:
        parser.print_help()
        return EXIT_CONFIG
    if ns.command == "top":
        return top_cli.main(ns)
    try:
        cfg = load_config(ns)
    except ConfigError as exc:
        print(f"dockwatch: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=cfg.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from agent.app import App  # imported late: `--help` and config errors stay fast

    try:
        app = App(cfg)
    except ConfigError as exc:  # e.g. an unknown or invalid log sink option, named
        print(f"dockwatch: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return asyncio.run(app.run())
    except KeyboardInterrupt:
        return 130
