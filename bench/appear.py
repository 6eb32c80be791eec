"""How soon a started container shows in /metrics, against the engine's own events stream.

Usage (as root, on a machine with docker.io and busybox-static; starts the tests' private
engine if none answers):

    python3 bench/appear.py [N]

Starts N busybox containers one after another (default 30) while the real agent runs as a
subprocess, in both collection modes, and prints per mode the delay from the container's `start`
event (its timeNano, the engine's clock) to:
  - the floor, in the same run: `docker events` printing that event (the engine's own stream);
  - the agent's inventory having it: an in-process Inventory (the agent's own class, on its own
    event loop in a thread) reporting the container "added" to its listeners;
  - the first /metrics answer of the agent subprocess that has the container's traffic series
    (polled every 250 ms, so up to 250 ms of the figure is the poll; polling much faster makes the
    scrapes themselves the load when the engine runs hundreds of other containers).
The integration tests only check that containers appear; this is where "how fast" is measured.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from agent.docker.client import DockerClient  # noqa: E402
from agent.docker.models import Container  # noqa: E402
from agent.inventory import EngineInventory  # noqa: E402
from tests.support.agentproc import Agent, parse, select  # noqa: E402
from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine  # noqa: E402

RX = "container_network_receive_bytes_total"


class InventoryClock:
    """The agent's Inventory in this process: container id → when its listeners heard "added"."""

    def __init__(self, eng: Engine) -> None:
        self.added: dict[str, float] = {}
        self.loop = asyncio.new_event_loop()
        self.inv = EngineInventory(DockerClient(eng.host))
        self.inv.add_listener(self._on)
        threading.Thread(target=self.loop.run_until_complete, args=(self.inv.run(),), daemon=True).start()

    def _on(self, kind: str, c: Container) -> None:
        if kind == "added":
            self.added.setdefault(c.id, time.time())


class EventClock:
    """`docker events` for container starts: id → (event timeNano, when this process read it)."""

    def __init__(self, eng: Engine) -> None:
        self.seen: dict[str, tuple[int, float]] = {}
        self.proc = subprocess.Popen(
            [
                "docker",
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=start",
                "--format",
                "{{.ID}} {{.TimeNano}}",
            ],
            env=eng.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            cid, ns = line.split()
            self.seen[cid] = (int(ns), time.time())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def run_mode(
    eng: Engine, inv: InventoryClock, n: int, *args: str
) -> tuple[list[float], list[float], list[float]]:
    agent = Agent(eng, *args).start()
    events = EventClock(eng)
    agent_ms, floor_ms, inv_ms = [], [], []
    try:
        time.sleep(0.5)  # let `docker events` subscribe (a bench, not a test)
        for _ in range(n):
            name = f"dwbench-appear-{uuid.uuid4().hex[:8]}"
            cid = eng.run("--label", "dockwatch.bench=1", BUSYBOX_IMAGE, "sleep", "600", name=name)
            deadline = time.monotonic() + 30
            while not select(parse(agent.get("/metrics")[1]).get(RX, []), name=name):
                assert time.monotonic() < deadline, f"{name} never appeared"
                time.sleep(0.25)
            seen = time.time()
            while cid not in events.seen or cid not in inv.added:
                assert time.monotonic() < deadline, "no start event"
                time.sleep(0.005)
            ns, got = events.seen[cid]
            agent_ms.append((seen - ns / 1e9) * 1000)
            floor_ms.append((got - ns / 1e9) * 1000)
            inv_ms.append((inv.added[cid] - ns / 1e9) * 1000)
    finally:
        events.close()
        agent.stop()
        eng.cleanup()
    return agent_ms, floor_ms, inv_ms


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with test_engine() as eng:
        others = len(eng.docker("ps", "-q").split())
        print(f"N = {n} containers started one after another, {others} others running on the engine;")
        print("ms from the `start` event's timeNano")
        inv = InventoryClock(eng)
        print(
            "| /metrics mode | in /metrics p50 | p90 | max | in the inventory p50 | p90 | max "
            "| floor: `docker events` p50 | p90 | max |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for mode, args in (("at scrape", ()), ("--collector.interval=2s", ("--collector.interval=2s",))):
            a, f, i = run_mode(eng, inv, n, *args)
            print(
                f"| {mode} | {statistics.median(a):.0f} | {pct(a, 90):.0f} | {max(a):.0f} "
                f"| {statistics.median(i):.0f} | {pct(i, 90):.0f} | {max(i):.0f} "
                f"| {statistics.median(f):.0f} | {pct(f, 90):.0f} | {max(f):.0f} |"
            )


if __name__ == "__main__":
    main()
