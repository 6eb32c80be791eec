"""`dockwatch top`: options, the choice of source, and the choice of output.

--url URL      → sources.MetricsSource (a running agent, any node)
(no --url)     → collect.Standalone (this host's /proc and Docker socket)
a terminal     → tui.TopApp (live, keys)
--once / not a terminal → two samples --interval apart → plain.table or plain.as_json
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import sys
from typing import TYPE_CHECKING, Any

from agent.top.model import COLUMN_KEYS, COLUMNS, DEFAULT_SORT, Sample, compute, parse_filter, sort_rows

if TYPE_CHECKING:  # sources imports urllib.request and prometheus_client: `dockwatch run` needs neither
    from agent.top.sources import Source

EXIT_ERROR = 1
EXIT_USAGE = 2


def _interval(v: str) -> float:
    try:
        x = float(v.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a number of seconds") from None
    if not 0.1 <= x <= 3600:
        raise argparse.ArgumentTypeError(f"{v!r}: expected 0.1 to 3600 seconds")
    return x


def add_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Register `dockwatch top` on the main parser's subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "top",
        help="live per-container traffic and connections in the terminal",
        description="A live view of every container's traffic and connections: rx/tx bytes and "
        "packets per second, errors, drops, established TCP connections, failed connects and "
        "retransmits per second, networks, compose project / swarm service. Against a running "
        "agent (--url) or standalone on this host (reads /proc and the Docker socket like the "
        "agent). When stdout is not a terminal, or with --once, prints one table and exits.",
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="read a running agent's /metrics (e.g. http://node1:9105) instead of this host",
    )
    p.add_argument(
        "--interval",
        metavar="SECONDS",
        type=_interval,
        default=2.0,
        help="time between samples; rates are over this interval (default: 2)",
    )
    p.add_argument("--once", action="store_true", help="take two samples --interval apart, print, exit")
    p.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help="with --once or when not a terminal: a plain table, or JSON for scripts (default: table)",
    )
    p.add_argument(
        "--sort",
        metavar="COLUMN",
        choices=[c.key for c in COLUMNS],
        default=DEFAULT_SORT,
        help=f"sort column: {', '.join(c.key for c in COLUMNS)} (default: {DEFAULT_SORT})",
    )
    p.add_argument(
        "--reverse", action="store_true", help="reverse the order (default: biggest first, names A-Z)"
    )
    p.add_argument(
        "--filter",
        metavar="EXPR",
        default="",
        help="show only matching containers: name:X net:X project:X service:X, bare words, !exclude",
    )
    p.add_argument(
        "--docker.host",
        dest="docker_host",
        metavar="URL",
        help="standalone: Engine API endpoint (default: $DOCKER_HOST, else the local socket)",
    )
    p.add_argument(
        "--path.procfs",
        dest="path_procfs",
        metavar="PATH",
        help="standalone: the host's procfs (default: /proc; /host/proc in the agent's image)",
    )
    return p


def markdown_table() -> str:
    """README's `dockwatch top` options table, from the parser itself."""
    sub = argparse.ArgumentParser(prog="dockwatch").add_subparsers()
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for a in add_parser(sub)._actions:
        if not a.option_strings or a.dest == "help":
            continue
        flag = a.option_strings[0] + (f" {a.metavar}" if a.metavar else "")
        if a.choices and not a.metavar:
            flag += " {" + ",".join(map(str, a.choices)) + "}"
        default = "" if a.default in (None, False, "") else f"`{a.default}`"
        meaning = re.sub(r" \(default: [^)]*\)", "", a.help or "")
        rows.append(f"| `{flag}` | {default} | {meaning} |")
    return "\n".join(rows)


def _standalone(ns: argparse.Namespace) -> Source:
    from agent import config  # the agent's own config: DOCKWATCH_* variables apply here too
    from agent.top.collect import Standalone

    flags = {"docker.host": ns.docker_host, "path.procfs": ns.path_procfs}
    cfg = config.load(flags, os.environ, {})
    if cfg.sidecar:
        raise config.ConfigError("no Docker socket here: give --docker.host, or watch an agent with --url")
    return Standalone(cfg)


async def _once(source: Source, interval: float) -> tuple[Sample, Sample]:
    try:
        await source.start()
        first = await source.sample()
        await asyncio.sleep(interval)
        second = await source.sample()
    finally:
        await source.close()
    return first, second


def main(ns: argparse.Namespace) -> int:
    from agent.config import ConfigError
    from agent.top.sources import MetricsSource, SourceError

    try:
        source: Source = MetricsSource(ns.url) if ns.url else _standalone(ns)
    except ConfigError as exc:
        print(f"dockwatch top: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    descending = COLUMN_KEYS[ns.sort].numeric != ns.reverse
    interactive = sys.stdout.isatty() and sys.stdin.isatty() and not ns.once and ns.output == "table"
    if interactive:
        from agent.top.tui import run_tui  # Textual loads only for the live view

        # The screen is Textual's: agent warnings (engine lost...) show in the header instead.
        logging.getLogger().addHandler(logging.NullHandler())
        return run_tui(source, ns.interval, ns.sort, descending, ns.filter, "NO_COLOR" in os.environ)

    # Errors reach the user as one message below; the inventory's own retry warnings would repeat it.
    logging.basicConfig(level=logging.ERROR, format="dockwatch top: %(message)s", stream=sys.stderr)
    try:
        first, second = asyncio.run(_once(source, ns.interval))
    except SourceError as exc:
        print(f"dockwatch top: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    from agent.top import plain

    frame = compute(first, second)
    match = parse_filter(ns.filter)
    rows = sort_rows([r for r in frame.rows if match(r)], ns.sort, descending)
    if ns.output == "json":
        sys.stdout.write(plain.as_json(frame, rows, source.label))
    else:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        sys.stdout.write(plain.table(frame, rows, source.label, width))
    return 0
