"""Agent and log shipping (dockwatch-agent): is the agent healthy, what does it cost, are the
log sinks delivering."""

from __future__ import annotations

from exporters.prometheus import names as n
from exporters.prometheus.names import Metric
from grafana.panels import (
    ANY_IS_BAD,
    UPDOWN_MAPPINGS,
    Json,
    Panel,
    dashboard,
    datasource_var,
    instant,
    job_var,
    node_var,
    query_var,
    stat,
    t,
    ts,
)
from grafana.queries import (
    JOB,
    NODE,
    increase,
    per_node,
    rate,
    sel,
)


def build() -> Json:
    sink = 'sink=~"$sink"'
    no_sink = "empty by design until a log sink is configured"

    def sink_metric(metric: Metric, *m: str) -> str:
        return per_node(sel(metric, JOB, sink, *m))

    def sink_rate(metric: Metric, *m: str) -> str:
        return per_node(rate(metric, JOB, sink, *m))

    panels = [
        stat(
            "Agents up",
            "Scrape targets of the selected jobs that answered the last scrape (up == 1) out of all "
            "(not filtered by node: a down target has no node label).",
            "short",
            t(f"sum(up{{{JOB}}})", "up"),
            t(f"count(up{{{JOB}}})", "targets"),
            w=6,
        ),
        stat(
            "Containers tracked",
            "Running containers in the agents' inventories.",
            "short",
            t(f"sum({per_node(sel(n.CONTAINERS_TRACKED, JOB))})"),
        ),
        stat(
            "Namespaces tracked",
            "Distinct network namespaces read on the last scrape, all selected nodes.",
            "short",
            t(f"sum({per_node(sel(n.NETNS_TRACKED, JOB))})"),
        ),
        stat(
            "Engines connected",
            "Agents following their engine's event stream, of the selected nodes.",
            "short",
            t(f"sum({per_node(sel(n.ENGINE_CONNECTED, JOB))})"),
        ),
        stat(
            "Collectors failing",
            f"Collectors whose last run failed ({n.COLLECTOR_SUCCESS.name} == 0).",
            "short",
            t(f"count({per_node(sel(n.COLLECTOR_SUCCESS, JOB))} == 0) or vector(0)"),
            w=6,
            extra_defaults=ANY_IS_BAD,
        ),
        Panel(
            "state-timeline",
            "Target up",
            "up per scrape target of the selected jobs.",
            "none",
            [t(f"up{{{JOB}}}", "{{instance}}")],
            extra_defaults={"mappings": UPDOWN_MAPPINGS},
        ),
        Panel(
            "state-timeline",
            "Engine connected",
            "1 while the agent follows the engine's event stream.",
            "none",
            [t(f"max by (node) ({per_node(sel(n.ENGINE_CONNECTED, JOB))})", "{{node}}")],
            extra_defaults={"mappings": UPDOWN_MAPPINGS},
        ),
        Panel(
            "table",
            "Agents",
            "Agent version and the engine each agent talks to.",
            "none",
            [instant(sel(n.BUILD_INFO, JOB, NODE))],
            w=24,
            h=6,
            transformations=[
                {
                    "id": "organize",
                    "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}},
                }
            ],
        ),
        Panel(
            "state-timeline",
            "Collector success",
            "Each collector's last run per node: 1 ok, 0 failed (a namespace that could not be read).",
            "none",
            [
                t(
                    f"max by (node, collector) ({per_node(sel(n.COLLECTOR_SUCCESS, JOB))})",
                    "{{node}} {{collector}}",
                )
            ],
            extra_defaults={"mappings": UPDOWN_MAPPINGS},
        ),
        ts(
            "Collector duration",
            "Wall time of each collector's last run.",
            "s",
            t(
                f"max by (node, collector) ({per_node(sel(n.COLLECTOR_DURATION, JOB))})",
                "{{node}} {{collector}}",
            ),
        ),
        ts(
            "Agent CPU",
            f"CPU the agent process uses, in cores ({n.PROCESS_CPU.name}: user + system).",
            "percentunit",
            t(f"sum by (node) ({per_node(rate(n.PROCESS_CPU, JOB))})", "{{node}}"),
        ),
        ts(
            "Agent memory",
            f"Resident memory of the agent process ({n.PROCESS_RSS.name}).",
            "bytes",
            t(f"max by (node) ({per_node(sel(n.PROCESS_RSS, JOB))})", "{{node}}"),
        ),
        ts(
            "Agent open files",
            "File descriptors the agent holds, and its limit "
            f"({n.PROCESS_OPEN_FDS.name}, {n.PROCESS_MAX_FDS.name}).",
            "short",
            t(f"max by (node) ({per_node(sel(n.PROCESS_OPEN_FDS, JOB))})", "{{node}} open"),
            t(f"max by (node) ({per_node(sel(n.PROCESS_MAX_FDS, JOB))})", "{{node}} limit"),
        ),
        ts(
            "Agent uptime",
            f"Seconds since each agent process started ({n.PROCESS_START.name}): drops on restarts.",
            "s",
            t(f"time() - max by (node) ({per_node(sel(n.PROCESS_START, JOB))})", "{{node}}"),
        ),
        ts(
            "Containers and namespaces tracked",
            "Running containers in the inventory and distinct network namespaces read, per node.",
            "short",
            t(f"max by (node) ({per_node(sel(n.CONTAINERS_TRACKED, JOB))})", "{{node}} containers"),
            t(
                f"max by (node) ({per_node(sel(n.NETNS_TRACKED, JOB))})",
                "{{node}} namespaces",
            ),
        ),
        ts(
            "Engine reconnects",
            "Times per interval the agent lost and re-established the engine connection.",
            "short",
            t(f"sum by (node) ({per_node(increase(n.ENGINE_RECONNECTS, JOB))})", "{{node}}"),
        ),
        ts(
            "Scrape duration",
            "How long Prometheus took to scrape each agent (Prometheus's scrape_duration_seconds).",
            "s",
            t(f"scrape_duration_seconds{{{JOB}}}", "{{instance}}"),
        ),
        ts(
            "Samples scraped",
            "Samples per scrape of each agent: the series count Prometheus stores for it.",
            "short",
            t(f"scrape_samples_scraped{{{JOB}}}", "{{instance}}"),
        ),
        ts(
            "Log records sent",
            "Records per second each sink accepted. " + no_sink.capitalize() + ".",
            "ops",
            t(
                f"sum by (node, sink) ({sink_rate(n.LOG_SINK_RECORDS_SENT)})",
                "{{node}} {{sink}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Log bytes sent",
            "Bytes of log lines per second each sink accepted. " + no_sink.capitalize() + ".",
            "Bps",
            t(
                f"sum by (node, sink) ({sink_rate(n.LOG_SINK_BYTES_SENT)})",
                "{{node}} {{sink}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Log retries",
            "Batches per second a sink could not take now (peer down, timeout) and will retry. "
            + no_sink.capitalize()
            + ".",
            "ops",
            t(f"sum by (node, sink) ({sink_rate(n.LOG_SINK_RETRIES)})", "{{node}} {{sink}}"),
            no_value=no_sink,
        ),
        ts(
            "Log records dropped",
            "Records per second never delivered, by reason (corrupt, rejected, rotated). "
            + no_sink.capitalize()
            + ".",
            "ops",
            t(
                f"sum by (node, sink, reason) ({sink_rate(n.LOG_SINK_RECORDS_DROPPED)})",
                "{{node}} {{sink}} {{reason}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Log files missed in rotation",
            "json-file log files per interval that Docker deleted before the sink's tail read them to "
            "their end (held bound exceeded, not opened in time, or rotated away while the agent was "
            "down). " + no_sink.capitalize() + ".",
            "short",
            t(
                f"sum by (node, sink) ({per_node(increase(n.LOG_SINK_ROTATED_FILES_MISSED, JOB, sink))})",
                "{{node}} {{sink}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Log bytes missed in rotation",
            "Bytes per second of those files never read (exact when let go over the held bound, "
            "otherwise a lower bound from the container's max-size). " + no_sink.capitalize() + ".",
            "Bps",
            t(
                f"sum by (node, sink) ({sink_rate(n.LOG_SINK_ROTATED_BYTES_MISSED)})",
                "{{node}} {{sink}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Log backlog",
            "Bytes of json-file logs read ahead of the sink's checkpoint, not yet delivered. "
            + no_sink.capitalize()
            + ".",
            "bytes",
            t(
                f"max by (node, sink) ({sink_metric(n.LOG_SINK_BACKLOG_BYTES)})",
                "{{node}} {{sink}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Log delivery lag",
            "Age of the newest record of the last delivered batch when the sink took it. "
            + no_sink.capitalize()
            + ".",
            "s",
            t(
                f"max by (node, sink) ({sink_metric(n.LOG_SINK_DELIVERY_LAG)})",
                "{{node}} {{sink}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Time since last delivery",
            "Seconds since each sink's last successful delivery (absent until its first one). "
            + no_sink.capitalize()
            + ".",
            "s",
            t(
                f"time() - max by (node, sink) ({sink_metric(n.LOG_SINK_LAST_SUCCESS)} > 0)",
                "{{node}} {{sink}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Containers followed",
            "Containers whose logs each sink follows, and running containers whose logs cannot be read "
            "(by reason: driver_none, a driver without the dual-logging cache, tty).",
            "short",
            t(f"max by (node, sink) ({sink_metric(n.LOG_SINK_CONTAINERS)})", "{{node}} {{sink}}"),
            t(
                f"max by (node, reason) ({per_node(sel(n.LOG_CONTAINERS_UNREADABLE, JOB))})",
                "{{node}} unreadable: {{reason}}",
            ),
            no_value=no_sink,
        ),
    ]
    templating = [
        datasource_var(),
        job_var(),
        node_var(),
        query_var("sink", "Log sink", f"label_values({sel(n.LOG_SINK_RECORDS_SENT, JOB)}, sink)"),
    ]
    return dashboard(
        "dockwatch-agent",
        "dockwatch / Agent and log shipping",
        "Is the agent healthy and what does it cost; are log sinks delivering.",
        panels,
        templating,
    )
