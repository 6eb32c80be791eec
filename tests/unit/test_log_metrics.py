"""The log self-metrics: the names the dashboards use, per sink, read at scrape time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.hostfs import HostFS
from agent.logs.delivery import SinkRunner, TailOptions
from agent.logs.pipeline import LogPipeline
from agent.logs.record import LogRecord
from agent.logs.sink import DropReason
from agent.logs.sinkspec import SinkSpec
from exporters.prometheus import names as n
from exporters.prometheus.logmetrics import LogMetrics
from exporters.sinks.base import Outcome


class NullSink:
    name = "central"

    async def open(self) -> None: ...

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        return Outcome.OK

    async def close(self) -> None: ...


def test_exposition(tmp_path: Path) -> None:
    r = SinkRunner(SinkSpec("central", "fluentd"), NullSink())
    r.stats.sent, r.stats.bytes, r.stats.retries = 10, 200, 3
    r.stats.drop(DropReason.CORRUPT, 2)
    r.stats.last_success, r.stats.lag = 1795000000.5, 0.25
    p = LogPipeline([r], HostFS(docker_root=tmp_path), tmp_path, None, TailOptions())
    p.unreadable = {"a": "driver_none", "b": "driver_none", "c": "tty"}
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LogMetrics(p))  # type: ignore[arg-type]  # ours is structurally a client_python Collector
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(generate_latest(reg).decode())
        for s in fam.samples
    }
    sink = (("sink", "central"),)
    assert samples[(n.LOG_SINK_RECORDS_SENT.name, sink)] == 10
    assert samples[(n.LOG_SINK_BYTES_SENT.name, sink)] == 200
    assert samples[(n.LOG_SINK_RETRIES.name, sink)] == 3
    assert samples[(n.LOG_SINK_RECORDS_DROPPED.name, (("reason", "corrupt"), *sink))] == 2
    assert samples[(n.LOG_SINK_RECORDS_DROPPED.name, (("reason", "rotated"), *sink))] == 0  # present at 0
    assert samples[(n.LOG_SINK_BACKLOG_BYTES.name, sink)] == 0
    assert samples[(n.LOG_SINK_DELIVERY_LAG.name, sink)] == 0.25
    assert samples[(n.LOG_SINK_LAST_SUCCESS.name, sink)] == 1795000000.5
    assert samples[(n.LOG_CONTAINERS_UNREADABLE.name, (("reason", "driver_none"),))] == 2
    assert samples[(n.LOG_CONTAINERS_UNREADABLE.name, (("reason", "tty"),))] == 1
    # the names are the contract with the dashboards
    assert {
        "dockwatch_log_sink_records_sent_total",
        "dockwatch_log_sink_bytes_sent_total",
        "dockwatch_log_sink_retries_total",
        "dockwatch_log_sink_records_dropped_total",
        "dockwatch_log_sink_backlog_bytes",
        "dockwatch_log_sink_delivery_lag_seconds",
        "dockwatch_log_sink_last_success_timestamp_seconds",
        "dockwatch_log_containers_unreadable",
    } <= {name for name, _ in samples}
