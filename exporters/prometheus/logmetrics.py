"""Self-metrics of the log pipeline, per sink: a rendering of the snapshot the pipeline gives.

Registered on the agent's own registry by app.py; collect() runs in the scrape worker thread, and
the pipeline's snapshot() only copies plain numbers there.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.logs.sink import Snapshotter
from exporters.prometheus import names as n
from exporters.prometheus.families import CounterMetricFamily, GaugeMetricFamily, Metric


def _counter(m: n.Metric, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(m.name.removesuffix("_total"), m.help, labels=labels)


def _gauge(m: n.Metric) -> GaugeMetricFamily:
    return GaugeMetricFamily(m.name, m.help, labels=["sink"])


class LogMetrics:
    def __init__(self, pipeline: Snapshotter) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        snap = self.pipeline.snapshot()
        sent = _counter(n.LOG_SINK_RECORDS_SENT, ["sink"])
        sent_bytes = _counter(n.LOG_SINK_BYTES_SENT, ["sink"])
        retries = _counter(n.LOG_SINK_RETRIES, ["sink"])
        dropped = _counter(n.LOG_SINK_RECORDS_DROPPED, ["sink", "reason"])
        files_missed = _counter(n.LOG_SINK_ROTATED_FILES_MISSED, ["sink"])
        bytes_missed = _counter(n.LOG_SINK_ROTATED_BYTES_MISSED, ["sink"])
        backlog = _gauge(n.LOG_SINK_BACKLOG_BYTES)
        lag = _gauge(n.LOG_SINK_DELIVERY_LAG)
        last = _gauge(n.LOG_SINK_LAST_SUCCESS)
        tails = _gauge(n.LOG_SINK_CONTAINERS)
        for s in snap.sinks:
            sent.add_metric([s.name], s.sent)
            sent_bytes.add_metric([s.name], s.bytes)
            retries.add_metric([s.name], s.retries)
            for reason in sorted(s.dropped):
                dropped.add_metric([s.name, reason], s.dropped[reason])
            files_missed.add_metric([s.name], s.files_missed)
            bytes_missed.add_metric([s.name], s.bytes_missed)
            backlog.add_metric([s.name], s.backlog_bytes)
            lag.add_metric([s.name], s.lag)
            last.add_metric([s.name], s.last_success)
            tails.add_metric([s.name], s.containers)
        yield from (sent, sent_bytes, retries, dropped, files_missed, bytes_missed, backlog, lag, last, tails)
        unreadable = GaugeMetricFamily(
            n.LOG_CONTAINERS_UNREADABLE.name, n.LOG_CONTAINERS_UNREADABLE.help, labels=["reason"]
        )
        for reason, count in sorted(snap.unreadable.items()):
            unreadable.add_metric([reason], count)
        yield unreadable
