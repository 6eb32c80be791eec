"""Fast rotation against the real dockerd (issue 8, item 1): a container with max-size=1m and
max-file=3 writes 200,000 numbered lines as fast as it can (about 15 MB: dockerd rotates a dozen
times and deletes all but the last 3 MB), shipped by the agent to a Forward receiver with ack, as
the README's fluentd example does.

- While the agent runs, every line arrives exactly once.
- While the agent runs but its inspect of the new container is answered late (held back by a proxy
  until dockerd has written everything and rotated the first files away), every line still arrives
  exactly once: the files are held from the container's `create` event (agent/logs/early.py).
- With the agent stopped while dockerd rotates the checkpointed file away, what arrives is the lines
  before the stop and an unbroken run to the end; the gap is counted (files and a lower bound of
  bytes) and warned about, naming the container.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.agentproc import Agent, one
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.engineproxy import EngineProxy
from tests.support.peers.forward import ForwardReceiver
from tests.support.toolbox import sinks_config

pytestmark = pytest.mark.docker

N = 200_000
PREFIX = f"dwrot{uuid.uuid4().hex[:6]}-"
ROTATE = ["--network", "none", "--log-opt", "max-size=1m", "--log-opt", "max-file=3"]
MAX_SIZE = 1_000_000  # go-units: 1m is decimal
# The longest json-file line of `seq 0 199999`: {"log":"199999\n","stream":"stdout","time":"<30>"}\n
MAX_JSON_LINE = len('{"log":"199999\\n","stream":"stdout","time":"2026-11-23T08:19:30.123456789Z"}\n')


def fluentd_sink(rx: ForwardReceiver) -> dict[str, Any]:
    return {
        "name": "central",
        "driver": "fluentd",
        "options": {"fluentd-address": rx.address, "fluentd-async": "true", "fluentd-request-ack": "true"},
        "include": {"name": f"^{PREFIX}"},
    }


def start_agent(engine: Engine, tmp: Path, rx: ForwardReceiver, host: str = "") -> Agent:
    cfg = sinks_config(tmp, [fluentd_sink(rx)])
    args = [f"--config={cfg}", f"--path.state={tmp / 'state'}", *([f"--docker.host={host}"] if host else [])]
    return Agent(engine, *args, docker_host=not host).start()


def numbers(rx: ForwardReceiver, cid: str) -> list[int]:
    out = []
    for e in rx.events:
        if e.record.get("container_id") == cid:
            v = e.record.get("log")
            assert v is not None, e.record
            out.append(int(v.decode() if isinstance(v, bytes) else v))
    return out


async def until_number(rx: ForwardReceiver, cid: str, n: int, timeout: float) -> list[int]:
    """Until line `n` arrived (lines arrive in order, so everything before it had its chance)."""
    deadline = time.monotonic() + timeout
    while True:
        got = numbers(rx, cid)
        if got and got[-1] >= n:
            return got
        assert time.monotonic() < deadline, f"line {n} not received; {len(got)} lines, last {got[-1:]}"
        await asyncio.sleep(0.1)


def log_notes(agent: Agent) -> str:
    """The agent's own words about its log tails, for an assertion message."""
    text = Path(agent.log.name).read_text(errors="replace")
    keep = ("agent.logs.tail", "agent.logs.watch", "level=warn", "level=error")
    return "\n".join(ln[:300] for ln in text.splitlines() if any(k in ln for k in keep))[-4000:]


def docker_lines(engine: Engine, cid: str) -> int:
    """Lines in the files dockerd still has for the container."""
    d = engine.root / "data" / "containers" / cid
    return sum(p.read_bytes().count(b"\n") for p in d.glob(f"{cid}-json.log*"))


async def test_fast_rotation_while_the_agent_runs_loses_nothing(engine: Engine, tmp_path: Path) -> None:
    async with ForwardReceiver() as rx:
        agent = await asyncio.to_thread(start_agent, engine, tmp_path, rx)
        try:
            name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
            script = f"seq 0 {N - 1}; exec sleep 3600"
            cid = await asyncio.to_thread(engine.run, *ROTATE, BUSYBOX_IMAGE, "sh", "-c", script, name=name)
            got = await until_number(rx, cid, N - 1, timeout=120)
            await asyncio.sleep(0.5)  # a short grace for anything extra (a duplicate) before we count
            got = numbers(rx, cid)
            counts = collections.Counter(got)
            missing = [i for i in range(N) if counts[i] == 0]
            lost = f"{len(missing)} of {N} lines missing, first {missing[:10]}"
            assert not missing, f"{lost}\n{log_notes(agent)}"
            assert len(got) == N, f"{len(got) - N} duplicates"
            assert got == list(range(N)), "out of order"
            # dockerd did rotate the lines away: its files hold the last ~3 MB only.
            assert docker_lines(engine, cid) < N // 2
            m = await asyncio.to_thread(agent.scrape)
            assert one(m, "dockwatch_log_sink_records_dropped_total", sink="central", reason="rotated") == 0
            assert one(m, "dockwatch_log_sink_rotated_files_missed_total", sink="central") == 0
            assert one(m, "dockwatch_log_sink_rotated_bytes_missed_total", sink="central") == 0
        finally:
            assert await asyncio.to_thread(agent.stop) == 0


async def test_rotated_away_before_the_agent_inspected_the_container_loses_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    """The agent's inspect of the new container is answered only once dockerd has written all 200,000
    lines and deleted the first ~12 MB: the tail that starts then reads them from the files held
    since `create`. (Seen in CI before that hold: a busy dockerd answered late, 13,326 lines, the first
    file, were lost and not counted.)"""
    async with EngineProxy(engine.host, tmp_path / "engine.sock") as proxy, ForwardReceiver() as rx:
        agent = await asyncio.to_thread(start_agent, engine, tmp_path, rx, proxy.host)
        try:
            proxy.hold_inspects()
            name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
            script = f"seq 0 {N - 1}; exec sleep 3600"
            cid = await asyncio.to_thread(engine.run, *ROTATE, BUSYBOX_IMAGE, "sh", "-c", script, name=name)
            live = engine.root / "data" / "containers" / cid / f"{cid}-json.log"
            deadline = time.monotonic() + 60
            while not (proxy.held and wrote_last(live)):
                assert time.monotonic() < deadline, f"inspects held: {proxy.held}; last line written?"
                await asyncio.sleep(0.1)
            assert docker_lines(engine, cid) < N // 2  # the first files are gone from dockerd's dir
            assert numbers(rx, cid) == []  # nothing could be shipped yet: the agent has no tail
            proxy.release_inspects()
            await until_number(rx, cid, N - 1, timeout=120)
            await asyncio.sleep(0.5)  # a short grace for anything extra (a duplicate) before we count
            got = numbers(rx, cid)
            have = set(got)
            missing = [i for i in range(N) if i not in have]
            lost = f"{len(missing)} of {N} lines missing, first {missing[:10]}"
            assert not missing, f"{lost}\n{log_notes(agent)}"
            assert got == list(range(N)), f"{len(got) - N} duplicates, or out of order"
            m = await asyncio.to_thread(agent.scrape)
            assert one(m, "dockwatch_log_sink_rotated_files_missed_total", sink="central") == 0
            assert one(m, "dockwatch_log_sink_records_dropped_total", sink="central", reason="rotated") == 0
        finally:
            proxy.release_inspects()
            assert await asyncio.to_thread(agent.stop) == 0


def wrote_last(live: Path) -> bool:
    """dockerd has written the container's last line (`N - 1`) to its live file."""
    try:
        last = live.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return last.startswith(b'{"log":"%d\\n"' % (N - 1))
    except OSError:  # between a rename and the new file
        return False


async def test_agent_stopped_while_docker_rotates_counts_the_gap(engine: Engine, tmp_path: Path) -> None:
    """Lines 0-999, then (the agent stopped) 1000-199999 at full speed, then the agent again."""
    first = 1000
    async with ForwardReceiver() as rx:
        agent = await asyncio.to_thread(start_agent, engine, tmp_path, rx)
        name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
        wait_go = "while [ ! -e /tmp/go ]; do sleep 0.05; done"
        script = f"seq 0 {first - 1}; {wait_go}; seq {first} {N - 1}; exec sleep 3600"
        cid = await asyncio.to_thread(engine.run, *ROTATE, BUSYBOX_IMAGE, "sh", "-c", script, name=name)
        await until_number(rx, cid, first - 1, timeout=60)
        assert await asyncio.to_thread(agent.stop) == 0  # SIGTERM: the checkpoint is after line 999
        await asyncio.to_thread(engine.docker, "exec", cid, "touch", "/tmp/go")
        live = engine.root / "data" / "containers" / cid / f"{cid}-json.log"
        deadline = time.monotonic() + 60
        while not wrote_last(live):
            assert time.monotonic() < deadline, "dockerd did not write the last line"
            await asyncio.sleep(0.1)
        agent2 = await asyncio.to_thread(start_agent, engine, tmp_path, rx)
        try:
            await until_number(rx, cid, N - 1, timeout=60)
            await asyncio.sleep(0.5)
            got = numbers(rx, cid)
            assert len(got) == len(set(got)), "duplicates"
            assert got[:first] == list(range(first)), "the lines before the stop"
            resumed = got[first]
            assert resumed > first, "nothing was rotated away: the test would prove nothing"
            assert got[first:] == list(range(resumed, N)), "not an unbroken run to the end after the restart"
            lost = resumed - first
            m = await asyncio.to_thread(agent2.scrape)
            assert one(m, "dockwatch_log_sink_rotated_files_missed_total", sink="central") == 1
            missed = one(m, "dockwatch_log_sink_rotated_bytes_missed_total", sink="central")
            # A lower bound: the checkpointed file held max-size bytes before dockerd rotated it.
            assert 0 < missed <= lost * MAX_JSON_LINE, (missed, lost)
            assert missed >= MAX_SIZE - first * MAX_JSON_LINE
            # Lines are not knowable: none counted as records.
            assert one(m, "dockwatch_log_sink_records_dropped_total", sink="central", reason="rotated") == 0
            log = Path(agent2.log.name).read_text(errors="replace")
            warnings = [ln for ln in log.splitlines() if "rotated away while the agent was not running" in ln]
            assert len(warnings) == 1 and name in warnings[0], warnings
        finally:
            assert await asyncio.to_thread(agent2.stop) == 0
