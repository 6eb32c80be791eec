"""Docker events through log sinks, end to end: real dockerd, the real agent, a json-file sink
(from the YAML file, `events: true`) and a fluentd sink into the Forward receiver (from the flags,
`--log-events --log-events-tag`). A container started and stopped shows up as its `start` and `die`
events, one JSON record each, under the events tag."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.logs.jsonfile import parse_line
from tests.support.agentproc import Agent, one
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.forward import ForwardReceiver
from tests.support.toolbox import until

pytestmark = pytest.mark.docker

PREFIX = f"dwev{uuid.uuid4().hex[:6]}-"


def rfc3339nano_fraction(ts: str) -> int:
    """The nanoseconds of Go's time.RFC3339Nano text: trailing zeros trimmed, `.0` omitted."""
    m = re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{0,8}[1-9]))?Z", ts)
    assert m, f"not RFC3339Nano: {ts}"
    return int((m.group(1) or "0").ljust(9, "0"))


def file_events(out: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(json-file entry, the event decoded from its `log`) for every event the sink wrote."""
    f = out / "docker-events" / "docker-events-json.log"
    if not f.exists():
        return []
    got = []
    for raw in f.read_bytes().splitlines():
        entry = json.loads(raw)
        got.append((entry, json.loads(parse_line(raw).data)))
    return got


async def test_start_and_die_events_reach_json_file_and_fluentd(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = tmp_path / "dockwatch.yml"
    sink = {
        "name": "files",
        "driver": "json-file",
        "options": {"path": str(out)},
        "include": {"name": "^nothing-matches-this$"},  # logs of no container; events are not filtered
        "events": True,
    }
    cfg.write_text(json.dumps({"logs": {"sinks": [sink]}}))  # JSON is YAML
    async with ForwardReceiver() as rx:
        agent = Agent(
            engine,
            f"--config={cfg}",
            f"--path.state={tmp_path / 'state'}",
            "--log-sink=fluentd",
            f"--log-opt=fluentd-address={rx.address}",
            "--log-opt=fluentd-async=true",
            "--log-opt=tag=docker.{{.Name}}",  # container logs keep theirs; events get the events tag
            "--log-events",
            "--log-events-tag=test.events",
            "--logs.start-at=end",
        )
        await asyncio.to_thread(agent.start)
        try:
            name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
            cid = await asyncio.to_thread(engine.run, BUSYBOX_IMAGE, "sh", "-c", "sleep 0.3", name=name)
            await asyncio.to_thread(engine.docker, "wait", cid)

            def fluent_mine() -> list[tuple[Any, dict[str, Any]]]:
                got = []
                for e in list(rx.events):
                    if e.tag != "test.events":
                        continue
                    log = e.record["log"]
                    ev = json.loads(log.decode() if isinstance(log, bytes) else log)
                    if ev["Actor"]["ID"] == cid:
                        got.append((e, ev))
                return got

            def file_mine() -> list[tuple[dict[str, Any], dict[str, Any]]]:
                return [(entry, ev) for entry, ev in file_events(out) if ev["Actor"]["ID"] == cid]

            def both_arrived() -> bool:
                at_fluentd = {ev["Action"] for _, ev in fluent_mine()}
                in_file = {ev["Action"] for _, ev in file_mine()}
                return {"start", "die"} <= at_fluentd and {"start", "die"} <= in_file

            try:
                await until(both_arrived, timeout=30, interval=0.1, what="start and die at both sinks")
            except TimeoutError:
                raise AssertionError((fluent_mine(), file_mine(), agent.logtext()[-3000:])) from None

            for e, ev in fluent_mine():
                assert ev["Type"] == "container"
                assert ev["Actor"]["Attributes"]["name"] == name
                assert ev["Actor"]["Attributes"]["image"] == BUSYBOX_IMAGE
                assert ev["time"] == ev["timeNano"] // 10**9
                # the record's time is the event's (whole seconds: no fluentd-sub-second-precision)
                assert e.time_ns == ev["timeNano"] // 10**9 * 10**9
                assert e.record["container_name"] == "/docker-events"
                assert e.record["source"] == "stdout"
            # Nanoseconds, not whole seconds (two events both on a whole second: 1 in 10^18).
            assert any(ev["timeNano"] % 10**9 for _, ev in fluent_mine())
            actions = [ev["Action"] for _, ev in fluent_mine()]
            assert actions.index("start") < actions.index("die")  # in the engine's order
            die = next(ev for _, ev in fluent_mine() if ev["Action"] == "die")
            assert die["Actor"]["Attributes"]["exitCode"] == "0"

            for entry, ev in file_mine():
                assert entry["stream"] == "stdout" and entry["attrs"] == {"tag": "docker.events"}  # default
                assert ev["Type"] == "container" and ev["Actor"]["Attributes"]["name"] == name
                # json-file keeps the ns, as RFC3339Nano: Go trims trailing zeros (.54861424Z, not
                # .548614240Z) and drops a zero fraction, as dockerd writes its own files.
                assert rfc3339nano_fraction(entry["time"]) == ev["timeNano"] % 10**9
            assert not (out / cid).exists()  # the include matched no container: no container logs

            m = await asyncio.to_thread(agent.scrape)
            for s in ("files", "fluentd"):
                dropped = one(m, "dockwatch_log_sink_records_dropped_total", sink=s, reason="events_overflow")
                assert dropped == 0
                assert one(m, "dockwatch_log_sink_records_sent_total", sink=s) >= 2
        finally:
            assert await asyncio.to_thread(agent.stop) == 0
