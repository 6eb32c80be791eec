"""The tests' one toolbox: wait on a condition with a deadline (threads and asyncio alike), a fake
clock where time matters, and the environment an agent subprocess runs with.

Tests never sleep a fixed time to let something happen: they wait for the condition that says it
happened, with a deadline that only a broken agent reaches (the machine may be loaded).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agent.docker.models import Container
from agent.hostfs import HostFS

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
CAPTURED_PROC = REPO / "tests" / "data" / "proc"  # net files captured from a container and a host


def wait_for(
    cond: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `cond` until it returns a truthy value or the deadline passes; return that value."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # the condition may fail until the thing exists
            last_exc = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from last_exc
        time.sleep(interval)


async def until(
    cond: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.01, what: str = "condition"
) -> T:
    """wait_for on the event loop: poll `cond` (cheap, non-blocking) until truthy; return the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def present(value: T | None, what: str = "value") -> T:
    """`value`, asserted not None: the checks that follow read it without another guard."""
    assert value is not None, f"{what} is None"
    return value


class FakeClock:
    """agent.clock.Clock for tests: sleep() returns at once, advancing both clocks by the delay
    asked for, which is recorded; so backoff and rate limits are checked without waiting."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_800_000_000.0) -> None:
        self.now = start
        self.wall = wall
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)  # still a scheduling point, as the real one is


def agent_env(**extra: str) -> dict[str, str]:
    """The environment for `python -m agent`: this checkout's code, and none of the DOCKWATCH_*
    variables of the shell running the tests (the agent refuses the ones it does not know, such as
    DOCKWATCH_TEST_STOP_ENGINE), nor its DOCKER_HOST."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKWATCH_") and k != "DOCKER_HOST"}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def sinks_config(tmp: Path, sinks: list[dict[str, Any]]) -> Path:
    """`tmp/dockwatch.yml` for `--config`, with these log sinks (`logs: {sinks: [...]}`)."""
    cfg = tmp / "dockwatch.yml"
    cfg.write_text(json.dumps({"logs": {"sinks": sinks}}))  # JSON is YAML
    return cfg


# --- values the unit tests build ---------------------------------------------------------------
def container(n: int, name: str, mode: str = "bridge", **labels: str) -> Container:
    """Container number `n` (id n in hex, pid 100+n) as the inventory would hold it."""
    return Container(
        id=f"{n:064x}",
        name=name,
        image="img",
        image_id="sha256:x",
        pid=100 + n,
        network_mode=mode,
        labels=labels,
        created=f"2026-01-{n:02d}",
    )


@dataclass(frozen=True, slots=True)
class ScriptedFS(HostFS):
    """ns/net links as scripted: an inode, or None for one ptrace rules hide (PermissionError);
    the /proc files are real (see captured_procfs)."""

    links: Mapping[int, int | None] = field(default_factory=dict)

    def netns_inode(self, pid: int | str) -> int:
        ino = self.links[int(pid)]
        if ino is None:
            raise PermissionError(13, "Permission denied", str(self.proc(pid, "ns", "net")))
        return ino


def captured_procfs(root: Path, pids: Mapping[int, str]) -> Path:
    """<root>/<pid>/net/* from the captured "host" or "container" files."""
    for pid, kind in pids.items():
        shutil.copytree(CAPTURED_PROC / kind, root / str(pid) / "net")
    return root
