"""Containers the agent owes lines to across restarts, against the real engine.

- A container that exits while the sink is down, then the agent is killed (SIGKILL) and started
  again with the sink back: every line arrives (the checkpoint exists from first sight, and at start
  every stopped container still owed is read to its end).
- The very first start (`logs.start-at`): containers that existed before it, running or stopped, are
  shipped in full with `beginning` and only for what they write later with `end`; a container that
  ran entirely while the agent was down after its first start is shipped in full either way.

Only containers named with this session's prefix are followed, so other tests on the shared engine
do not interfere.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.logs.jsonfile import parse_line
from tests.support.agentproc import Agent, one
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.forward import ForwardReceiver
from tests.support.toolbox import sinks_config, until, wait_for

pytestmark = pytest.mark.docker

PREFIX = f"dwrst{uuid.uuid4().hex[:6]}-"
CYCLES = 3  # agent killed and restarted this many times per test run
PER_CYCLE = 3  # containers exiting while the sink is down, per cycle
WANT = collections.Counter(f"line-{i}" for i in range(1, 101))


def numbered(n: int, word: str = "line") -> str:
    return f"seq 1 {n} | while read i; do echo {word}-$i; done"


def run(engine: Engine, script: str, *opts: str) -> str:
    # No network: logging needs none, and the shared engine's bridge is not ours to depend on.
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    return engine.run("--network=none", *opts, BUSYBOX_IMAGE, "sh", "-c", script, name=name)


def config(tmp: Path, sink: dict[str, Any]) -> Path:
    return sinks_config(tmp, [{**sink, "include": {"name": f"^{PREFIX}"}}])


def kill(agent: Agent) -> None:
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()


@pytest.mark.parametrize("driver", ["json-file", "local"])
async def test_exited_while_sink_down_then_sigkill_ships_after_restart(
    engine: Engine, tmp_path: Path, driver: str
) -> None:
    async with ForwardReceiver() as rx:
        sink = {
            "name": "central",
            "driver": "fluentd",
            "options": {
                "fluentd-address": rx.address,
                "fluentd-async": "true",
                "fluentd-request-ack": "true",
            },
        }
        cfg = config(tmp_path, sink)
        args = (f"--config={cfg}", f"--path.state={tmp_path / 'state'}")

        def lines_of(cid: str) -> collections.Counter[str]:
            return collections.Counter(
                str(e.record["log"]) for e in rx.events if e.record["container_id"] == cid
            )

        all_cids: list[str] = []
        for cycle in range(CYCLES):
            await rx.stop()
            agent = Agent(engine, *args)
            await asyncio.to_thread(agent.start)
            retries = one(
                await asyncio.to_thread(agent.scrape), "dockwatch_log_sink_retries_total", sink="central"
            )
            cids = []
            for _ in range(PER_CYCLE):
                cid = await asyncio.to_thread(run, engine, numbered(100), f"--log-driver={driver}")
                await asyncio.to_thread(engine.docker, "wait", cid)
                cids.append(cid)

            def tried(agent: Agent = agent, n: float = retries + PER_CYCLE) -> bool:
                m = agent.scrape()
                return one(m, "dockwatch_log_sink_retries_total", sink="central") >= n

            # The agent has seen them (each tail tried the sink at least once), and is then killed.
            await asyncio.to_thread(wait_for, tried, 30, 0.1, "the agent to try the sink for each container")
            await asyncio.to_thread(kill, agent)
            assert not any(lines_of(c) for c in cids), f"cycle {cycle}: delivered while the receiver was down"
            await rx.start()
            agent = Agent(engine, *args)
            await asyncio.to_thread(agent.start)
            try:
                all_cids.extend(cids)
                await until(
                    lambda: all(lines_of(c) == WANT for c in all_cids), 60, what=f"cycle {cycle}: all lines"
                )
            finally:
                assert await asyncio.to_thread(agent.stop) == 0, agent.logtext()


# --- the very first start ------------------------------------------------------------------------------
def json_sink(out: Path) -> dict[str, Any]:
    return {"name": "files", "driver": "json-file", "options": {"path": str(out)}}


def shipped(out: Path, cid: str) -> list[str]:
    f = out / cid / f"{cid}-json.log"
    if not f.exists():
        return []
    return [parse_line(raw).data.decode() for raw in f.read_bytes().splitlines()]


def checkpoint(tmp: Path, cid: str) -> Path:
    return tmp / "state" / "logs" / "files" / f"{cid}.json"


# Prints `before-1..20`, then `after-1..20` when signalled (USR1), then exits.
SIGNALLED = (
    numbered(20, "before") + "; trap 'seq 1 20 | while read i; do echo after-$i; done; exit 0' USR1;"
    " while :; do sleep 0.1; done"
)


@pytest.mark.parametrize("start_at", ["beginning", "end"])
def test_first_start_and_containers_that_existed_before(
    engine: Engine, tmp_path: Path, start_at: str
) -> None:
    """Before the agent's first start: a container that ran and stopped, and one still running.
    `beginning` ships all they have; `end` ships what they write after that start: the running one
    from then on, the stopped one from its next run (it is recorded as owed at its end at once)."""
    stopped = run(engine, numbered(30, "old"))
    engine.docker("wait", stopped)
    running = run(engine, SIGNALLED)
    log = engine.root / "data" / "containers" / running / f"{running}-json.log"
    wait_for(lambda: b"before-20" in log.read_bytes(), timeout=20, what="the running container's first lines")
    out = tmp_path / "out"
    agent = Agent(
        engine,
        f"--config={config(tmp_path, json_sink(out))}",
        f"--path.state={tmp_path / 'state'}",
        f"--logs.start-at={start_at}",
    ).start()
    try:
        # Both are recorded as owed (a checkpoint) before anything else happens to them.
        wait_for(
            lambda: checkpoint(tmp_path, stopped).exists(), timeout=30, what="the stopped one's checkpoint"
        )
        wait_for(
            lambda: checkpoint(tmp_path, running).exists(), timeout=30, what="the running one's checkpoint"
        )
        engine.docker("kill", "-s", "USR1", running)
        engine.docker("wait", running)
        engine.docker("start", stopped)  # its second run: new lines in the same file
        engine.docker("wait", stopped)
        old = [f"old-{i}" for i in range(1, 31)]
        before, after = [f"before-{i}" for i in range(1, 21)], [f"after-{i}" for i in range(1, 21)]
        if start_at == "beginning":
            want_stopped, want_running = old + old, before + after
        else:
            want_stopped, want_running = old, after
        wait_for(
            lambda: shipped(out, running) == want_running, timeout=30, what=f"running: {want_running[:2]}..."
        )
        wait_for(
            lambda: shipped(out, stopped) == want_stopped, timeout=30, what=f"stopped: {want_stopped[:2]}..."
        )
    finally:
        assert agent.stop() == 0, agent.logtext()
    assert shipped(out, running) == want_running and shipped(out, stopped) == want_stopped


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_container_that_ran_while_the_agent_was_down_is_shipped_in_full(
    engine: Engine, tmp_path: Path, driver: str
) -> None:
    """After the first start, a container created, run and stopped while the agent is down is not
    'pre-existing': it is shipped in full even with `logs.start-at=end`."""
    out = tmp_path / "out"
    args = (
        f"--config={config(tmp_path, json_sink(out))}",
        f"--path.state={tmp_path / 'state'}",
        "--logs.start-at=end",
    )
    assert Agent(engine, *args).start().stop() == 0  # the first start is recorded
    cid = run(engine, numbered(50), f"--log-driver={driver}")
    engine.docker("wait", cid)
    agent = Agent(engine, *args).start()
    try:
        want = [f"line-{i}" for i in range(1, 51)]
        wait_for(lambda: shipped(out, cid) == want, timeout=30, what="its 50 lines")
    finally:
        assert agent.stop() == 0, agent.logtext()
