"""Self-metrics of the log pipeline, per sink, read from live counters at scrape time.

Registered on the agent's own registry by app.py; collect() runs in the scrape worker thread, so it
only copies plain numbers (dict copies are atomic under the GIL).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.logs.pipeline import LogPipeline
from exporters.prometheus import names as n

DROP_REASONS = ("corrupt", "rejected", "rotated")
EVENTS_DROP = "events_overflow"  # only on sinks that ship docker events


def _counter(m: n.Metric, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(m.name.removesuffix("_total"), m.help, labels=labels)


def _gauge(m: n.Metric) -> GaugeMetricFamily:
    return GaugeMetricFamily(m.name, m.help, labels=["sink"])


class LogMetrics(Collector):
    def __init__(self, pipeline: LogPipeline) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        p = self.pipeline
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
        per_sink = Counter(s for (_, s) in list(p.tails))
        for r in p.runners:
            st = r.stats
            sent.add_metric([r.name], st.sent)
            sent_bytes.add_metric([r.name], st.bytes)
            retries.add_metric([r.name], st.retries)
            drops = dict(st.dropped)
            reasons = set(DROP_REASONS) | set(drops)
            if r.spec.events:
                reasons.add(EVENTS_DROP)
            for reason in sorted(reasons):
                dropped.add_metric([r.name, reason], drops.get(reason, 0))
            files_missed.add_metric([r.name], st.files_missed)
            bytes_missed.add_metric([r.name], st.bytes_missed)
            backlog.add_metric([r.name], p.backlog(r.name))
            lag.add_metric([r.name], st.lag)
            last.add_metric([r.name], st.last_success)
            tails.add_metric([r.name], per_sink.get(r.name, 0))
        yield from (sent, sent_bytes, retries, dropped, files_missed, bytes_missed, backlog, lag, last, tails)
        unreadable = GaugeMetricFamily(
            n.LOG_CONTAINERS_UNREADABLE.name, n.LOG_CONTAINERS_UNREADABLE.help, labels=["reason"]
        )
        for reason, count in sorted(Counter(dict(p.unreadable).values()).items()):
            unreadable.add_metric([reason], count)
        yield unreadable
