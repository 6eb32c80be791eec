"""Docker events as log records (mapping, bounded queue, pipeline wiring, config), and json-file
logs the agent may not open (counted as unreadable{reason="permission"}, retried)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.config import ConfigError, load
from agent.docker.client import Event
from agent.hostfs import HostFS
from agent.logs import logfile as logfile_mod
from agent.logs.delivery import SinkRunner, TailOptions
from agent.logs.events import EVENTS_CONTAINER, EventShipper, event_line, event_record
from agent.logs.pipeline import LogPipeline
from agent.logs.record import LogRecord
from agent.logs.sinkspec import SinkSpec, parse_sinks
from exporters.prometheus.logmetrics import LogMetrics
from exporters.sinks.base import Outcome
from exporters.sinks.json_file import JsonFileSink
from tests.support.toolbox import until
from tests.unit.test_log_pipeline import ctr, docker_file

START = Event.from_api(
    {
        "Type": "container",
        "Action": "start",
        "Actor": {"ID": "a" * 64, "Attributes": {"image": "busybox", "name": "web"}},
        "time": 1795420415,
        "timeNano": 1795420415123456789,
    }
)


class Sink:
    def __init__(self, name: str, outcome: Outcome = Outcome.OK) -> None:
        self.name = name
        self.outcome = outcome
        self.batches: list[list[bytes]] = []
        self.records: list[LogRecord] = []

    async def open(self) -> None: ...

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        if self.outcome is Outcome.OK:
            self.batches.append([r.line for r in batch])
            self.records += batch
        return self.outcome

    async def close(self) -> None: ...


def test_event_line_is_the_engine_api_shape_with_ns_time() -> None:
    ev = Event.from_api(
        {
            "Type": "container",
            "Action": "health_status: healthy",
            "Actor": {"ID": "b" * 64, "Attributes": {"name": "db", "com.x": "é"}},
            "timeNano": 1795420415000000007,
        }
    )
    assert ev.action == "health_status"
    obj = json.loads(event_line(ev))
    assert obj == {
        "Type": "container",
        "Action": "health_status: healthy",  # the raw action, as `docker events` prints it
        "Actor": {"ID": "b" * 64, "Attributes": {"name": "db", "com.x": "é"}},
        "time": 1795420415,
        "timeNano": 1795420415000000007,
    }
    assert b"\n" not in event_line(ev)  # one record = one line in every sink


def test_event_record_carries_the_synthetic_container_and_event_time() -> None:
    rec = event_record(START)
    assert rec.container is EVENTS_CONTAINER and rec.container.name == "docker-events"
    assert rec.time_ns == 1795420415123456789 and rec.stream == "stdout" and rec.complete
    before = time.time_ns()
    no_time = event_record(Event(type="network", action="create", actor_id="n1"))
    assert before <= no_time.time_ns <= time.time_ns()  # an event without timeNano: now


async def test_shipper_batches_in_order_through_the_runner() -> None:
    sink = Sink("s")
    shipper = EventShipper(SinkRunner(SinkSpec("s", "x", events=True), sink), batch=2)
    for i in range(5):
        shipper.offer(Event(type="container", action="start", actor_id=str(i), time_nano=i + 1))
    await until(lambda: len(sink.records) == 5)
    assert [json.loads(r.line)["Actor"]["ID"] for r in sink.records] == ["0", "1", "2", "3", "4"]
    assert all(len(b) <= 2 for b in sink.batches)
    await shipper.stop(5)
    assert shipper.runner.stats.sent == 5 and shipper.runner.stats.dropped == {}


async def test_shipper_full_queue_counts_overflow_and_stop_counts_unsent() -> None:
    sink = Sink("s", Outcome.RETRY)  # down: the runner retries the first batch forever
    runner = SinkRunner(SinkSpec("s", "x", events=True), sink, backoff_base=0.01, backoff_cap=0.01)
    shipper = EventShipper(runner, maxsize=3, batch=1)
    shipper.offer(START)
    await until(lambda: runner.stats.retries > 0)  # the first one is in flight, out of the queue
    for _ in range(5):
        shipper.offer(START)
    assert runner.stats.dropped == {"events_overflow": 2}
    await shipper.stop(0.05)
    # 3 queued + 1 in flight never went: counted too, so every event is either sent or dropped
    assert runner.stats.dropped == {"events_overflow": 6} and runner.stats.sent == 0


async def test_pipeline_offers_every_event_to_event_sinks_only(tmp_path: Path) -> None:
    logs, events = Sink("logs"), Sink("events")
    ev_runner = SinkRunner(SinkSpec("ev", "x", events=True), events)
    p = LogPipeline(
        [SinkRunner(SinkSpec("logs", "x"), logs), SinkRunner(SinkSpec("ev", "x", events=True), Sink("ev"))],
        HostFS(docker_root=tmp_path),
        tmp_path / "state",
        None,
        TailOptions(poll_interval=0.02),
        [EventShipper(ev_runner)],
    )
    p.on_event(START)
    p.on_event(Event(type="network", action="connect", actor_id="n", time_nano=2))
    await until(lambda: len(events.records) == 2)
    assert [json.loads(r.line)["Type"] for r in events.records] == ["container", "network"]
    assert logs.batches == []
    await p.stop(5)
    p.on_event(START)  # after stop: ignored, not queued
    assert ev_runner.stats.sent == 2


async def test_json_file_sink_writes_event_records_to_their_own_file(tmp_path: Path) -> None:
    """The real json-file sink with a literal tag (what app.py gives the events instance)."""
    sink = JsonFileSink({"path": str(tmp_path), "tag": "docker.events"}, name="j", hostname="h")
    shipper = EventShipper(SinkRunner(SinkSpec("j", "json-file", events=True), sink))
    shipper.offer(START)
    out = tmp_path / "docker-events" / "docker-events-json.log"
    await until(lambda: out.exists() and out.read_bytes().endswith(b"\n"))
    await shipper.stop(5)
    entry = json.loads(out.read_bytes())
    assert entry["attrs"] == {"tag": "docker.events"}
    assert json.loads(entry["log"]) == json.loads(event_line(START))
    assert entry["time"].startswith("2026-11-23T") and entry["time"].endswith(".123456789Z")


def test_yaml_and_flag_config() -> None:
    (a, b) = parse_sinks(
        [
            {"name": "a", "driver": "fluentd", "events": True, "events-tag": "ev.{{.Hostname}}"},
            {"name": "b", "driver": "json-file"},
        ]
    )
    assert (a.events, a.events_tag) == (True, "ev.{{.Hostname}}")
    assert (b.events, b.events_tag) == (False, "docker.events")
    with pytest.raises(ValueError, match=r"logs.sinks\[0\].events: expected true or false"):
        parse_sinks([{"driver": "syslog", "events": "yes please"}])
    with pytest.raises(ValueError, match=r"logs.sinks\[0\].events-tag"):
        parse_sinks([{"driver": "syslog", "events-tag": ""}])
    cfg = load({"log-sink": "syslog", "log-events": "true"}, env={})
    assert cfg.log_events and cfg.log_events_tag == "docker.events"
    with pytest.raises(ConfigError, match="--log-events: given without --log-sink"):
        load({"log-events": "true"}, env={})


async def test_unreadable_log_file_is_counted_warned_once_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Simulated: tests run as root, so chmod cannot deny them; LogFile.open is patched to raise
    the PermissionError a non-root agent gets on Docker's 0640 file (tests/e2e/test_image.py shows
    the real case). Then the "permission is fixed" and the lines arrive without a restart."""
    cid = "7" * 64
    docker_file(tmp_path, cid, 3)
    denied = {True}
    real_open = logfile_mod.LogFile.open

    refusals = [0]

    def fake_open(cls: type[logfile_mod.LogFile], path: str | Path) -> logfile_mod.LogFile:
        if denied and str(path).endswith(f"{cid}-json.log"):
            refusals[0] += 1
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(logfile_mod.LogFile, "open", classmethod(fake_open))
    sinks = [Sink("a"), Sink("b")]
    p = LogPipeline(
        [SinkRunner(SinkSpec(s.name, "x"), s) for s in sinks],
        HostFS(docker_root=tmp_path),
        tmp_path / "state",
        None,
        TailOptions(poll_interval=0.02),
    )
    # The directory is watched (root), so the file is looked at again on the watcher's rescans (an
    # agent that is not root cannot watch it, and polls it every 50 ms): often, for this test.
    p.watcher.rescan_interval = 0.05
    metrics = LogMetrics(p)

    def unreadable() -> dict[tuple[str, ...], float]:
        fam = next(m for m in metrics.collect() if m.name == "dockwatch_log_containers_unreadable")
        return {tuple(s.labels.values()): s.value for s in fam.samples}

    with caplog.at_level(logging.WARNING, logger="agent.logs.pipeline"):
        p.on_container("added", ctr(cid, "app"))
        await until(lambda: p.unreadable.get(cid) == "permission")
        assert unreadable() == {("permission",): 1}  # one container, though two sinks tail it
        seen = refusals[0]  # many more refused polls, and an inventory update: counted, warned once
        await until(lambda: refusals[0] >= seen + 10)
        p.on_container("updated", ctr(cid, "app"))
        assert p.unreadable.get(cid) == "permission"
    warnings = [r for r in caplog.records if "cannot read its log file" in r.getMessage()]
    assert len(warnings) == 1 and "Permission denied" in warnings[0].getMessage()

    denied.clear()  # someone fixed the permissions
    await until(lambda: all(len(s.records) == 3 for s in sinks))
    assert cid not in p.unreadable and unreadable() == {}
    await p.stop(5)
