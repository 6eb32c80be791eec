"""Build dockwatch's Grafana dashboards as plain dicts and write them to grafana/dashboards/*.json.

    python grafana/build.py           rewrite the JSON (sorted keys, trailing newline)
    python grafana/build.py --check   exit 1 if the committed JSON differs from what this file builds

Every per-namespace series is already reported once, by the namespace's owner (names.py), so
panels sum those series directly; the only join with dockwatch_container_info (container detail,
"namespace traffic") first collapses info to one series per (node, netns_owner), so it cannot
multiply a shared namespace. Self metrics carry no `node` label: they are filtered by node through
dockwatch_build_info, one series per scrape target.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

Json = dict[str, Any]

SCHEMA_VERSION = 39  # Grafana 10.4/11 write 39; 12.x migrates it on load.
DATASOURCE_UID = "dockwatch-prometheus"  # provisioning/datasources/prometheus.yaml
DS: Json = {"type": "prometheus", "uid": "${datasource}"}
TAG = "dockwatch"

# --- selectors ------------------------------------------------------------------------------------
JOB = 'job=~"$job"'
NODE = 'node=~"$node"'
# Swarm (stack, service) and compose (project, compose service) identities; standalone containers
# have both empty, which the ".*" All value still matches.
GROUPS = 'stack=~"$stack",service=~"$service",compose_project=~"$project",compose_service=~"$compose_service"'
CONTAINER = f'{JOB},{NODE},{GROUPS},name=~"$container",name!=""'
HOSTNS = f'{JOB},{NODE},name=""'  # the host's own namespace (--collect.host-netns)
NET = 'network=~"$network"'
RI = "[$__rate_interval]"
# One series per scrape target, carrying its node: filters and labels the node-less self metrics.
TARGET_NODE = f"group by (job, instance, node) (dockwatch_build_info{{{JOB},{NODE}}})"
SERVICE_BY = "stack, service, compose_project, compose_service"
SERVICE_LEGEND = "{{group}}"
STANDALONE = "(no stack or project)"


def sel(metric: str, *matchers: str) -> str:
    return f"{metric}{{{','.join(matchers)}}}"


def rate(metric: str, *matchers: str) -> str:
    return f"rate({sel(metric, *matchers)}{RI})"


def increase(metric: str, *matchers: str) -> str:
    return f"increase({sel(metric, *matchers)}{RI})"


def increase_range(metric: str, *matchers: str) -> str:
    """Increase over the whole dashboard range: for instant "in range" stats only."""
    return f"increase({sel(metric, *matchers)}[$__range])"


def increase_at_end(metric: str, *matchers: str) -> str:
    """Increase over the whole dashboard range, evaluated once at its end: inside a range query,
    this is what an instant query over the range would give, the same at every step."""
    return f"increase({sel(metric, *matchers)}[$__range] @ end())"


def action(a: str) -> str:
    return f'action="{a}"'


NOT_HOST = 'name!=""'
RESTARTS = 'action=~"start|restart"'


def per_service(expr: str) -> str:
    """`expr` summed per swarm stack/service or compose project/service, with one `group` label for
    the legend: "stack/service", "project/service", or STANDALONE for containers with neither
    (one series, instead of a legend reading "/")."""
    sources = ", ".join(f'"{label}"' for label in SERVICE_BY.split(", "))
    joined = f'label_join(sum by ({SERVICE_BY}) ({expr}), "group", ";", {sources})'
    named = f'label_replace({joined}, "group", "$1$3/$2$4", "group", "([^;]*);([^;]*);([^;]*);([^;]*)")'
    return f'label_replace({named}, "group", "{STANDALONE}", "group", "/")'


def per_node(expr: str) -> str:
    """A self metric (labels job, instance) with the target's node attached and filtered by $node."""
    return f"{expr} * on (job, instance) group_left (node) {TARGET_NODE}"


# --- metric names (exporters/prometheus/names.py; the tests check each exists there) -------------
RX_BYTES = "container_network_receive_bytes_total"
TX_BYTES = "container_network_transmit_bytes_total"
RX_PKTS = "container_network_receive_packets_total"
TX_PKTS = "container_network_transmit_packets_total"
RX_ERRS = "container_network_receive_errors_total"
TX_ERRS = "container_network_transmit_errors_total"
RX_DROP = "container_network_receive_packets_dropped_total"
TX_DROP = "container_network_transmit_packets_dropped_total"
INFO = "dockwatch_container_info"
HEALTHY = "dockwatch_container_healthy"
CEVENTS = "dockwatch_container_events_total"


# --- panels ---------------------------------------------------------------------------------------
@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    kind: str  # timeseries | stat | table | state-timeline
    title: str
    description: str
    unit: str
    targets: list[Target]
    w: int = 12
    h: int = 8
    links: list[Json] = field(default_factory=list)
    no_value: str = ""
    extra_defaults: Json = field(default_factory=dict)
    options: Json = field(default_factory=dict)
    overrides: list[Json] = field(default_factory=list)
    transformations: list[Json] = field(default_factory=list)


def ts(title: str, description: str, unit: str, *targets: Target, **kw: Any) -> Panel:
    return Panel("timeseries", title, description, unit, list(targets), **kw)


def stat(title: str, description: str, unit: str, *targets: Target, **kw: Any) -> Panel:
    kw.setdefault("w", 4)
    kw.setdefault("h", 4)
    return Panel("stat", title, description, unit, list(targets), **kw)


def t(expr: str, legend: str = "") -> Target:
    return Target(expr, legend)


def instant(expr: str, legend: str = "") -> Target:
    return Target(expr, legend, instant=True)


def link_to(uid: str, title: str, label: str = "name") -> Json:
    """A data link to another dashboard, carrying the clicked series' container and its own node
    (not ${node:queryparam}: with node=All that would open the container on every node)."""
    return {
        "title": title,
        "url": f"/d/{uid}/{uid}?var-container=${{__field.labels.{label}}}&var-node=${{__field.labels.node}}"
        "&${__url_time_range}&${datasource:queryparam}&${job:queryparam}",
    }


def alarm(warning: float, critical: float) -> Json:
    """Stat colours: green, orange from `warning`, red from `critical` (field defaults)."""
    steps = [
        {"color": "green", "value": None},
        {"color": "orange", "value": warning},
        {"color": "red", "value": critical},
    ]
    return {"thresholds": {"mode": "absolute", "steps": steps}}


# Warning at the shipped alert rules' thresholds (grafana/alerts), critical ten times higher. Errors:
# the alert fires on any, and one error in a 1 m window is already a rate of 0.017/s.
ERRORS_ALARM = alarm(0.01, 1)
DROPS_ALARM = alarm(1, 10)
FAILED_CONNECTS_ALARM = alarm(1, 10)

HEALTH_MAPPINGS: list[Json] = [
    {
        "type": "value",
        "options": {
            "0": {"text": "unhealthy / starting", "color": "red", "index": 0},
            "1": {"text": "healthy", "color": "green", "index": 1},
        },
    }
]
UPDOWN_MAPPINGS: list[Json] = [
    {
        "type": "value",
        "options": {
            "0": {"text": "down", "color": "red", "index": 0},
            "1": {"text": "up", "color": "green", "index": 1},
        },
    }
]


def _target_json(tg: Target, ref: str, kind: str) -> Json:
    d: Json = {
        "datasource": DS,
        "editorMode": "code",
        "expr": tg.expr,
        "legendFormat": tg.legend or "__auto",
        "refId": ref,
    }
    if kind == "table" or tg.instant:
        d.update(instant=True, range=False, format="table" if kind == "table" else "time_series")
    else:
        d.update(instant=False, range=True)
    return d


def _panel_json(p: Panel, pid: int, x: int, y: int) -> Json:
    defaults: Json = {"unit": p.unit, "color": {"mode": "palette-classic"}, "mappings": []}
    defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None}]}
    if p.links:
        defaults["links"] = p.links
    if p.no_value:
        defaults["noValue"] = p.no_value
    options: Json
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "fillOpacity": 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "none"},
        }
        options = {
            "legend": {
                "calcs": ["mean", "max"],
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif p.kind == "stat":
        options = {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        }
    elif p.kind == "table":
        defaults["custom"] = {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True}
        options = {"cellHeight": "sm", "showHeader": True}
    elif p.kind == "state-timeline":
        defaults["custom"] = {"fillOpacity": 80, "lineWidth": 0}
        options = {
            "alignValue": "left",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "mergeValues": True,
            "rowHeight": 0.9,
            "showValue": "auto",
            "tooltip": {"mode": "single", "sort": "none"},
        }
    else:
        raise ValueError(f"panel type {p.kind!r} is not one we use")
    defaults.update(p.extra_defaults)
    options.update(p.options)
    d: Json = {
        "datasource": DS,
        "description": p.description,
        "fieldConfig": {"defaults": defaults, "overrides": p.overrides},
        "gridPos": {"h": p.h, "w": p.w, "x": x, "y": y},
        "id": pid,
        "options": options,
        "targets": [_target_json(tg, chr(ord("A") + i), p.kind) for i, tg in enumerate(p.targets)],
        "title": p.title,
        "type": p.kind,
    }
    if p.transformations:
        d["transformations"] = p.transformations
    return d


def layout(panels: Iterable[Panel]) -> list[Json]:
    """Left to right, wrapping at Grafana's 24 columns; a row is as tall as its tallest panel."""
    out: list[Json] = []
    x = y = row_h = 0
    for pid, p in enumerate(panels, start=1):
        if x + p.w > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append(_panel_json(p, pid, x, y))
        x += p.w
        row_h = max(row_h, p.h)
    return out


# --- variables ------------------------------------------------------------------------------------
def datasource_var() -> Json:
    return {
        "current": {"selected": False, "text": "Prometheus", "value": DATASOURCE_UID},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "type": "datasource",
    }


def query_var(name: str, label: str, query: str, *, multi: bool = True, all_value: str | None = ".*") -> Json:
    include_all = multi
    current: Json = (
        {"selected": True, "text": ["All"], "value": ["$__all"]}
        if include_all
        else {"selected": False, "text": "", "value": ""}
    )
    d: Json = {
        "current": current,
        "datasource": DS,
        "definition": query,
        "hide": 0,
        "includeAll": include_all,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,  # on time range change: containers come and go
        "regex": "",
        "sort": 1,
        "type": "query",
    }
    if include_all and all_value is not None:
        d["allValue"] = all_value
    return d


def variables(*, container_multi: bool = True, network: bool = False) -> list[Json]:
    info = INFO
    vs = [
        datasource_var(),
        # All = the jobs that have agents (a regex of them), not every job Prometheus scrapes.
        query_var("job", "Job", 'label_values(dockwatch_build_info{job!=""}, job)', all_value=None),
        query_var("node", "Node", f"label_values(dockwatch_build_info{{{JOB}}}, node)"),
        query_var("stack", "Stack", f"label_values({info}{{{JOB},{NODE}}}, stack)"),
        query_var("service", "Service", f'label_values({info}{{{JOB},{NODE},stack=~"$stack"}}, service)'),
        query_var("project", "Compose project", f"label_values({info}{{{JOB},{NODE}}}, compose_project)"),
        query_var(
            "compose_service",
            "Compose service",
            f'label_values({info}{{{JOB},{NODE},compose_project=~"$project"}}, compose_service)',
        ),
        query_var(
            "container",
            "Container",
            f"label_values({info}{{{JOB},{NODE},{GROUPS}}}, name)",
            multi=container_multi,
        ),
    ]
    if network:
        vs.append(query_var("network", "Network", f"label_values({RX_BYTES}{{{JOB},{NODE}}}, network)"))
    return vs


def dashboard(uid: str, title: str, description: str, panels: list[Panel], templating: list[Json]) -> Json:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": [TAG],
                "targetBlank": False,
                "title": "dockwatch",
                "type": "dashboards",
            }
        ],
        "panels": layout(panels),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": templating},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --- dashboards -----------------------------------------------------------------------------------
def traffic() -> Json:
    c = CONTAINER
    cn = f"{c},{NET}"
    detail = [link_to("dockwatch-container", "Container detail")]
    by_service = per_service

    def rx_tx(
        title: str,
        desc: str,
        unit: str,
        rx: str,
        tx: str,
        by: str | Callable[[str], str],
        legend: str,
        **kw: Any,
    ) -> Panel:
        agg = by if callable(by) else lambda e: f"{by} ({e})"
        return ts(
            title,
            desc,
            unit,
            t(agg(rate(rx, cn)), legend + " rx"),
            t(agg(rate(tx, cn)), legend + " tx"),
            **kw,
        )

    panels = [
        stat(
            "Receive",
            "Bytes per second received by the selected containers.",
            "Bps",
            t(f"sum({rate(RX_BYTES, cn)})"),
        ),
        stat(
            "Transmit",
            "Bytes per second sent by the selected containers.",
            "Bps",
            t(f"sum({rate(TX_BYTES, cn)})"),
        ),
        stat(
            "Running containers",
            "Running containers matching the filters, from dockwatch_container_info (sidecars and "
            "host-network containers included; they have no traffic series of their own).",
            "short",
            t(f"count({sel(INFO, c)})"),
        ),
        stat(
            "Network namespaces",
            "Distinct container network namespaces with traffic series: a shared namespace counts once.",
            "short",
            t(f"count(count by (node, name) ({rate(RX_BYTES, cn)}))"),
        ),
        stat(
            "Errors",
            "Receive plus transmit errors per second, all selected interfaces. Orange from 0.01/s "
            "(any error), red from 1/s.",
            "pps",
            t(f"sum({rate(RX_ERRS, cn)}) + sum({rate(TX_ERRS, cn)})"),
            extra_defaults=ERRORS_ALARM,
        ),
        stat(
            "Drops",
            "Received plus transmitted packets dropped per second, all selected interfaces. Orange "
            "from 1/s (the ContainerNetworkDrops alert), red from 10/s.",
            "pps",
            t(f"sum({rate(RX_DROP, cn)}) + sum({rate(TX_DROP, cn)})"),
            extra_defaults=DROPS_ALARM,
        ),
        rx_tx(
            "Traffic by node",
            "Container traffic per node (each namespace once; the host's own namespace is not included).",
            "Bps",
            RX_BYTES,
            TX_BYTES,
            "sum by (node)",
            "{{node}}",
        ),
        rx_tx(
            "Traffic by stack / service",
            "Container traffic per swarm stack/service or compose project/service "
            f"(containers with neither: {STANDALONE}).",
            "Bps",
            RX_BYTES,
            TX_BYTES,
            by_service,
            SERVICE_LEGEND,
        ),
        ts(
            "Top talkers",
            "Received plus transmitted bytes per second of the 10 containers that moved the most bytes "
            "over the shown range. The 10 are chosen once, at the end of the range (topk over "
            "[$__range] @ end()), so the panel never shows more than 10 series. Click a series for "
            "its container dashboard.",
            "Bps",
            t(
                f"(sum by (node, name) ({rate(RX_BYTES, cn)}) + sum by (node, name) ({rate(TX_BYTES, cn)}))"
                " and on (node, name) "
                f"topk(10, sum by (node, name) ({increase_at_end(RX_BYTES, cn)}) "
                f"+ sum by (node, name) ({increase_at_end(TX_BYTES, cn)}))",
                "{{node}}/{{name}}",
            ),
            links=detail,
        ),
        Panel(
            "table",
            "Top talkers now",
            "Receive and transmit rate per container at the end of the time range, highest first. "
            "Click a name for its container dashboard.",
            "Bps",
            [
                instant(f"topk(20, sum by (node, name) ({rate(RX_BYTES, cn)}))"),
                instant(f"topk(20, sum by (node, name) ({rate(TX_BYTES, cn)}))"),
            ],
            options={"sortBy": [{"desc": True, "displayName": "receive"}]},
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value #A": "receive", "Value #B": "transmit"},
                    },
                },
            ],
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "name"},
                    "properties": [
                        {
                            "id": "links",
                            "value": [
                                {
                                    "title": "Container detail",
                                    "url": "/d/dockwatch-container/dockwatch-container"
                                    "?var-container=${__value.raw}&var-node=${__data.fields.node}"
                                    "&${__url_time_range}&${datasource:queryparam}&${job:queryparam}",
                                }
                            ],
                        }
                    ],
                }
            ],
        ),
        rx_tx(
            "Packets by stack / service",
            "Packets per second per service, received and transmitted.",
            "pps",
            RX_PKTS,
            TX_PKTS,
            by_service,
            SERVICE_LEGEND,
        ),
        rx_tx(
            "Packets by container",
            "Packets per second per container, received and transmitted.",
            "pps",
            RX_PKTS,
            TX_PKTS,
            "sum by (node, name)",
            "{{node}}/{{name}}",
            links=detail,
        ),
        rx_tx(
            "Errors by container",
            "Receive and transmit errors per second per container (net/dev errs).",
            "pps",
            RX_ERRS,
            TX_ERRS,
            "sum by (node, name)",
            "{{node}}/{{name}}",
            links=detail,
        ),
        rx_tx(
            "Drops by container",
            "Received and transmitted packets dropped per second per container (net/dev drop).",
            "pps",
            RX_DROP,
            TX_DROP,
            "sum by (node, name)",
            "{{node}}/{{name}}",
            links=detail,
        ),
        rx_tx(
            "Traffic by Docker network",
            "Container traffic per Docker network the interface is attached to "
            "(an empty network: an interface Docker did not create).",
            "Bps",
            RX_BYTES,
            TX_BYTES,
            "sum by (network)",
            "{{network}}",
        ),
        rx_tx(
            "Errors by Docker network",
            "Receive and transmit errors per second per Docker network.",
            "pps",
            RX_ERRS,
            TX_ERRS,
            "sum by (network)",
            "{{network}} errors",
        ),
        ts(
            "Host namespace traffic",
            'The host\'s own network namespace (name=""), physical interfaces only: exported with '
            "--collect.host-netns, empty otherwise. Not included in the container totals above.",
            "Bps",
            t(f"sum by (node, interface) ({rate(RX_BYTES, HOSTNS)})", "{{node}} {{interface}} rx"),
            t(f"sum by (node, interface) ({rate(TX_BYTES, HOSTNS)})", "{{node}} {{interface}} tx"),
            no_value="host namespace not exported (--collect.host-netns)",
        ),
        ts(
            "Host namespace errors and drops",
            "Errors and drops per second on the host's own interfaces (--collect.host-netns).",
            "pps",
            t(f"sum by (node, interface) ({rate(RX_ERRS, HOSTNS)})", "{{node}} {{interface}} rx errors"),
            t(f"sum by (node, interface) ({rate(TX_ERRS, HOSTNS)})", "{{node}} {{interface}} tx errors"),
            t(f"sum by (node, interface) ({rate(RX_DROP, HOSTNS)})", "{{node}} {{interface}} rx drops"),
            t(f"sum by (node, interface) ({rate(TX_DROP, HOSTNS)})", "{{node}} {{interface}} tx drops"),
            no_value="host namespace not exported (--collect.host-netns)",
        ),
    ]
    return dashboard(
        "dockwatch-traffic",
        "dockwatch / Traffic overview",
        "Where does the traffic go: per node, stack/service, container and Docker network.",
        panels,
        variables(network=True),
    )


def container() -> Json:
    c = CONTAINER
    cn = f"{c},{NET}"
    by_if = "sum by (name, interface, network)"
    if_legend = "{{name}} {{interface}} ({{network}})"
    # The namespace the container is in, attributed to its owner: one info series per
    # (node, owner) after `group by`, so a namespace shared by several selected containers is
    # still counted once.
    owner = (
        f'label_replace(group by (node, netns_owner) ({sel(INFO, c)}), "name", "$1", "netns_owner", "(.+)")'
    )
    ns_rx = f"{rate(RX_BYTES, JOB, NODE, NOT_HOST)} * on (node, name) group_left () {owner}"
    ns_tx = f"{rate(TX_BYTES, JOB, NODE, NOT_HOST)} * on (node, name) group_left () {owner}"

    def if_pair(title: str, desc: str, unit: str, rx: str, tx: str) -> Panel:
        return ts(
            title,
            desc,
            unit,
            t(f"{by_if} ({rate(rx, cn)})", if_legend + " rx"),
            t(f"{by_if} ({rate(tx, cn)})", if_legend + " tx"),
        )

    def per_ctr(expr: str) -> str:
        return f"sum by (name) ({expr})"

    panels = [
        Panel(
            "table",
            "Container",
            "Identity and network mode. netns_owner is the container whose series carry this "
            "container's traffic (itself, another container for network_mode container:X, or host).",
            "none",
            [instant(sel(INFO, c))],
            w=24,
            h=5,
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value": True, "__name__": True},
                        "indexByName": {
                            "name": 0,
                            "node": 1,
                            "network_mode": 2,
                            "netns_owner": 3,
                            "image": 4,
                            "stack": 5,
                            "service": 6,
                            "task": 7,
                            "compose_project": 8,
                            "compose_service": 9,
                            "container_id": 10,
                        },
                    },
                }
            ],
        ),
        stat(
            "Receive",
            "Bytes per second received on the container's own interfaces.",
            "Bps",
            t(per_ctr(rate(RX_BYTES, cn)), "{{name}}"),
        ),
        stat(
            "Transmit",
            "Bytes per second sent on the container's own interfaces.",
            "Bps",
            t(per_ctr(rate(TX_BYTES, cn)), "{{name}}"),
        ),
        stat(
            "Established",
            "TCP connections in ESTABLISHED or CLOSE-WAIT (the whole namespace).",
            "short",
            t(per_ctr(sel("container_network_tcp_connections_established", c)), "{{name}}"),
        ),
        stat(
            "Health",
            "Healthcheck state (empty: the container has no healthcheck).",
            "none",
            t(sel(HEALTHY, c), "{{name}}"),
            extra_defaults={"mappings": HEALTH_MAPPINGS},
            no_value="no healthcheck",
        ),
        stat(
            "Failed connects",
            "Failed TCP connection attempts per second. Orange from 1/s (the "
            "ContainerTcpFailedConnectsRising alert), red from 10/s.",
            "ops",
            t(per_ctr(rate("container_network_tcp_failed_connection_attempts_total", c)), "{{name}}"),
            extra_defaults=FAILED_CONNECTS_ALARM,
        ),
        stat(
            "Dies in range",
            "die events of this container over the shown time range (a die that created the "
            "series, the first the agent saw, is not counted by increase()).",
            "short",
            instant(f"sum({increase_range(CEVENTS, c, action('die'))})"),
        ),
        if_pair(
            "Traffic by interface",
            "Bytes per second per interface and Docker network.",
            "Bps",
            RX_BYTES,
            TX_BYTES,
        ),
        if_pair("Packets by interface", "Packets per second per interface.", "pps", RX_PKTS, TX_PKTS),
        if_pair(
            "Errors by interface",
            "Receive and transmit errors per second per interface.",
            "pps",
            RX_ERRS,
            TX_ERRS,
        ),
        if_pair("Drops by interface", "Packets dropped per second per interface.", "pps", RX_DROP, TX_DROP),
        ts(
            "Namespace traffic (via netns owner)",
            "Traffic of the network namespace the container is in, from its owner's series: for a "
            "container:X joiner (sidecar) this is the shared namespace's traffic; host-network "
            "containers show nothing here (see the host namespace panel of the traffic dashboard).",
            "Bps",
            t(f"sum by (name, interface) ({ns_rx})", "owner {{name}} {{interface}} rx"),
            t(f"sum by (name, interface) ({ns_tx})", "owner {{name}} {{interface}} tx"),
        ),
        ts(
            "Connections",
            "Established connections, TIME-WAIT sockets and TCP sockets in use by IP version.",
            "short",
            t(per_ctr(sel("container_network_tcp_connections_established", c)), "{{name}} established"),
            t(per_ctr(sel("container_network_tcp_sockets_time_wait", c)), "{{name}} time-wait"),
            t(
                f"sum by (name, ip_version) ({sel('container_network_tcp_sockets_in_use', c)})",
                "{{name}} in use v{{ip_version}}",
            ),
        ),
        ts(
            "Connection opens and failures",
            "Outgoing (active) and incoming (passive) opens, failed attempts and resets per second.",
            "ops",
            t(per_ctr(rate("container_network_tcp_active_opens_total", c)), "{{name}} active opens"),
            t(per_ctr(rate("container_network_tcp_passive_opens_total", c)), "{{name}} passive opens"),
            t(per_ctr(rate("container_network_tcp_failed_connection_attempts_total", c)), "{{name}} failed"),
            t(
                per_ctr(rate("container_network_tcp_established_resets_total", c)),
                "{{name}} established resets",
            ),
        ),
        ts(
            "Retransmits",
            "TCP segments retransmitted and retransmission timeouts per second.",
            "ops",
            t(
                per_ctr(rate("container_network_tcp_retransmitted_segments_total", c)),
                "{{name}} retransmitted",
            ),
            t(per_ctr(rate("container_network_tcp_timeouts_total", c)), "{{name}} timeouts"),
        ),
        ts(
            "Container events",
            "Docker events for this container per interval, by action (die, oom, kill, health_status...).",
            "short",
            t(f"sum by (name, action) ({increase(CEVENTS, c)})", "{{name}} {{action}}"),
        ),
    ]
    return dashboard(
        "dockwatch-container",
        "dockwatch / Container detail",
        "One container: its interfaces and networks, traffic, errors, drops, connections and events.",
        panels,
        variables(container_multi=False, network=True),
    )


def connections() -> Json:
    c = CONTAINER
    ctr = "sum by (node, name)"
    ctr_l = "{{node}}/{{name}}"
    detail = [link_to("dockwatch-container", "Container detail")]

    def by_ctr(title: str, desc: str, unit: str, expr_fn: Any, *metrics: tuple[str, str]) -> Panel:
        return ts(
            title,
            desc,
            unit,
            *(t(f"{ctr} ({expr_fn(m, c)})", f"{ctr_l} {lg}".rstrip()) for m, lg in metrics),
            links=detail,
        )

    panels = [
        stat(
            "Established",
            "TCP connections in ESTABLISHED or CLOSE-WAIT, all selected containers.",
            "short",
            t(f"sum({sel('container_network_tcp_connections_established', c)})"),
        ),
        stat(
            "TIME-WAIT",
            "TCP sockets in TIME-WAIT, all selected containers.",
            "short",
            t(f"sum({sel('container_network_tcp_sockets_time_wait', c)})"),
        ),
        stat(
            "TCP sockets in use",
            "TCP sockets in use (all states but TIME-WAIT), IPv4 and IPv6.",
            "short",
            t(f"sum({sel('container_network_tcp_sockets_in_use', c)})"),
        ),
        stat(
            "Failed connects",
            "Failed TCP connection attempts per second, all selected containers. Orange from 1/s "
            "(the ContainerTcpFailedConnectsRising alert, per container), red from 10/s.",
            "ops",
            t(f"sum({rate('container_network_tcp_failed_connection_attempts_total', c)})"),
            extra_defaults=FAILED_CONNECTS_ALARM,
        ),
        stat(
            "Resets sent",
            "TCP segments sent with RST per second.",
            "ops",
            t(f"sum({rate('container_network_tcp_resets_sent_total', c)})"),
        ),
        stat(
            "Retransmits",
            "TCP segments retransmitted per second.",
            "ops",
            t(f"sum({rate('container_network_tcp_retransmitted_segments_total', c)})"),
        ),
        by_ctr(
            "Established by container",
            "TCP connections in ESTABLISHED or CLOSE-WAIT per container (net/snmp CurrEstab).",
            "short",
            sel,
            ("container_network_tcp_connections_established", ""),
        ),
        ts(
            "Established by stack / service",
            "TCP connections in ESTABLISHED or CLOSE-WAIT per service.",
            "short",
            t(per_service(sel("container_network_tcp_connections_established", c)), SERVICE_LEGEND),
        ),
        by_ctr(
            "TIME-WAIT by container",
            "TCP sockets in TIME-WAIT per container (net/sockstat tw).",
            "short",
            sel,
            ("container_network_tcp_sockets_time_wait", ""),
        ),
        ts(
            "Sockets in use by container",
            "TCP and UDP sockets in use per container and IP version (net/sockstat, sockstat6).",
            "short",
            t(
                f"sum by (node, name, ip_version) ({sel('container_network_tcp_sockets_in_use', c)})",
                ctr_l + " tcp v{{ip_version}}",
            ),
            t(
                f"sum by (node, name, ip_version) ({sel('container_network_udp_sockets_in_use', c)})",
                ctr_l + " udp v{{ip_version}}",
            ),
            links=detail,
        ),
        by_ctr(
            "Connection opens by container",
            "Outgoing (active, SYN sent) and incoming (passive) TCP opens per second.",
            "ops",
            rate,
            ("container_network_tcp_active_opens_total", "active"),
            ("container_network_tcp_passive_opens_total", "passive"),
        ),
        by_ctr(
            "Failed connection attempts by container",
            "TCP connection attempts that failed per second (refused, unreachable, timed out in SYN).",
            "ops",
            rate,
            ("container_network_tcp_failed_connection_attempts_total", ""),
        ),
        ts(
            "Failed connection attempts by stack / service",
            "Failed TCP connection attempts per second per service.",
            "ops",
            t(per_service(rate("container_network_tcp_failed_connection_attempts_total", c)), SERVICE_LEGEND),
        ),
        by_ctr(
            "Resets by container",
            "Connections reset from ESTABLISHED/CLOSE-WAIT, and segments sent with RST, per second.",
            "ops",
            rate,
            ("container_network_tcp_established_resets_total", "established resets"),
            ("container_network_tcp_resets_sent_total", "RST sent"),
        ),
        by_ctr(
            "Retransmits by container",
            "Segments retransmitted, SYN retransmits, retransmission timeouts and connections aborted "
            "on timeout, per second.",
            "ops",
            rate,
            ("container_network_tcp_retransmitted_segments_total", "retransmitted"),
            ("container_network_tcp_syn_retransmits_total", "SYN retransmits"),
            ("container_network_tcp_timeouts_total", "timeouts"),
            ("container_network_tcp_aborted_on_timeout_total", "aborted on timeout"),
        ),
        ts(
            "Retransmit ratio by container",
            "Retransmitted segments as a share of segments sent.",
            "percentunit",
            t(
                f"{ctr} ({rate('container_network_tcp_retransmitted_segments_total', c)}) / "
                f"{ctr} ({rate('container_network_tcp_segments_sent_total', c)})",
                ctr_l,
            ),
            links=detail,
        ),
        by_ctr(
            "TCP segments by container",
            "TCP segments received and sent per second, and segments received in error.",
            "ops",
            rate,
            ("container_network_tcp_segments_received_total", "in"),
            ("container_network_tcp_segments_sent_total", "out"),
            ("container_network_tcp_receive_errors_total", "in errors"),
        ),
        by_ctr(
            "Listen overflows and drops by container",
            "Accept queue full (overflows) and SYNs dropped on a listening socket, per second.",
            "ops",
            rate,
            ("container_network_tcp_listen_overflows_total", "overflows"),
            ("container_network_tcp_listen_drops_total", "drops"),
        ),
        ts(
            "UDP datagrams by container",
            "UDP datagrams received and sent per second, by IP version.",
            "ops",
            t(
                "sum by (node, name, ip_version) "
                f"({rate('container_network_udp_datagrams_received_total', c)})",
                ctr_l + " in v{{ip_version}}",
            ),
            t(
                f"sum by (node, name, ip_version) ({rate('container_network_udp_datagrams_sent_total', c)})",
                ctr_l + " out v{{ip_version}}",
            ),
            links=detail,
        ),
        by_ctr(
            "UDP errors by container",
            "UDP receive errors, datagrams to ports nobody listens on, receive and send buffer "
            "errors, per second (IPv4 and IPv6).",
            "ops",
            rate,
            ("container_network_udp_receive_errors_total", "receive errors"),
            ("container_network_udp_no_port_total", "no port"),
            ("container_network_udp_receive_buffer_errors_total", "receive buffer"),
            ("container_network_udp_send_buffer_errors_total", "send buffer"),
        ),
        ts(
            "TCP sockets by state (opt-in)",
            "TCP sockets per state and container, from net/tcp and net/tcp6. Empty unless the agent "
            "runs with --collect.tcp-states.",
            "short",
            t(
                f"sum by (node, name, state) ({sel('container_network_tcp_connections', c)})",
                ctr_l + " {{state}}",
            ),
            w=24,
            no_value="enable --collect.tcp-states",
        ),
    ]
    return dashboard(
        "dockwatch-connections",
        "dockwatch / Connections",
        "Who has connections, which fail, reset, retransmit or overflow: TCP and UDP per container "
        "and service.",
        panels,
        variables(),
    )


def events() -> Json:
    c = CONTAINER
    ctr_l = "{{node}}/{{name}}"
    detail = [link_to("dockwatch-container", "Container detail")]

    panels = [
        stat(
            "Healthy",
            "Containers whose healthcheck reports healthy (only containers with a healthcheck).",
            "short",
            t(f"sum({sel(HEALTHY, c)})"),
            no_value="no healthchecks",
        ),
        stat(
            "Unhealthy or starting",
            "Containers with a healthcheck that is not healthy (yet).",
            "short",
            t(f"sum(1 - {sel(HEALTHY, c)})"),
            no_value="no healthchecks",
            extra_defaults={
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                }
            },
        ),
        stat(
            "Dies",
            "die events over the shown time range, selected containers.",
            "short",
            instant(f"sum({increase_range(CEVENTS, c, action('die'))})"),
        ),
        stat(
            "OOMs",
            "oom events (the kernel killed a process for memory) over the shown time range.",
            "short",
            instant(f"sum({increase_range(CEVENTS, c, action('oom'))})"),
        ),
        ts(
            "Engine events by type and action",
            "Every event the agent received from the engine's /events stream, per second "
            "(containers, networks, images, volumes...).",
            "ops",
            t(
                f"sum by (type, action) ({per_node(rate('dockwatch_docker_events_total', JOB))})",
                "{{type}} {{action}}",
            ),
            w=24,
        ),
        ts(
            "Container events by action",
            "Events of the selected containers per second, by action.",
            "ops",
            t(f"sum by (action) ({rate(CEVENTS, c)})", "{{action}}"),
        ),
        ts(
            "Restarts by container",
            "start and restart events per interval (a restart policy restarts with die + start).",
            "short",
            t(f"sum by (node, name) ({increase(CEVENTS, c, RESTARTS)})", ctr_l),
            links=detail,
        ),
        ts(
            "Dies by container",
            "die events per interval: the container's main process exited.",
            "short",
            t(f"sum by (node, name) ({increase(CEVENTS, c, action('die'))})", ctr_l),
            links=detail,
        ),
        ts(
            "OOMs and kills by container",
            "oom (the kernel killed a process for memory) and kill (a signal sent through the engine) "
            "events per interval.",
            "short",
            t(f"sum by (node, name) ({increase(CEVENTS, c, action('oom'))})", ctr_l + " oom"),
            t(f"sum by (node, name) ({increase(CEVENTS, c, action('kill'))})", ctr_l + " kill"),
            links=detail,
        ),
        ts(
            "Health status changes",
            "health_status events per interval (each healthcheck result the engine reports as a change).",
            "short",
            t(f"sum by (node, name) ({increase(CEVENTS, c, action('health_status'))})", ctr_l),
            links=detail,
        ),
        Panel(
            "state-timeline",
            "Health over time",
            "Healthcheck state per container: healthy, or unhealthy/starting. Only containers with a "
            "healthcheck.",
            "none",
            [t(f"max by (node, name) ({sel(HEALTHY, c)})", ctr_l)],
            w=24,
            extra_defaults={"mappings": HEALTH_MAPPINGS},
            no_value="no healthchecks",
        ),
    ]
    return dashboard(
        "dockwatch-events",
        "dockwatch / Docker events",
        "What happened to containers: events per second, restarts, dies, OOMs and health.",
        panels,
        variables(),
    )


def agent() -> Json:
    sink = 'sink=~"$sink"'
    no_sink = "empty by design until a log sink is configured"

    def sink_metric(metric: str, *m: str) -> str:
        return per_node(sel(metric, JOB, sink, *m))

    def sink_rate(metric: str, *m: str) -> str:
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
            t(f"sum({per_node(sel('dockwatch_containers_tracked', JOB))})"),
        ),
        stat(
            "Namespaces tracked",
            "Distinct network namespaces read on the last scrape, all selected nodes.",
            "short",
            t(f"sum({per_node(sel('dockwatch_network_namespaces_tracked', JOB))})"),
        ),
        stat(
            "Engines connected",
            "Agents following their engine's event stream, of the selected nodes.",
            "short",
            t(f"sum({per_node(sel('dockwatch_engine_connected', JOB))})"),
        ),
        stat(
            "Collectors failing",
            "Collectors whose last run failed (dockwatch_scrape_collector_success == 0).",
            "short",
            t(f"count({per_node(sel('dockwatch_scrape_collector_success', JOB))} == 0) or vector(0)"),
            w=6,
            extra_defaults={
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                }
            },
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
            [t(f"max by (node) ({per_node(sel('dockwatch_engine_connected', JOB))})", "{{node}}")],
            extra_defaults={"mappings": UPDOWN_MAPPINGS},
        ),
        Panel(
            "table",
            "Agents",
            "Agent version and the engine each agent talks to.",
            "none",
            [instant(sel("dockwatch_build_info", JOB, NODE))],
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
                    f"max by (node, collector) ({per_node(sel('dockwatch_scrape_collector_success', JOB))})",
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
                "max by (node, collector) "
                f"({per_node(sel('dockwatch_scrape_collector_duration_seconds', JOB))})",
                "{{node}} {{collector}}",
            ),
        ),
        ts(
            "Agent CPU",
            "CPU the agent process uses, in cores (process_cpu_seconds_total: user + system).",
            "percentunit",
            t(f"sum by (node) ({per_node(rate('process_cpu_seconds_total', JOB))})", "{{node}}"),
        ),
        ts(
            "Agent memory",
            "Resident memory of the agent process (process_resident_memory_bytes).",
            "bytes",
            t(f"max by (node) ({per_node(sel('process_resident_memory_bytes', JOB))})", "{{node}}"),
        ),
        ts(
            "Agent open files",
            "File descriptors the agent holds, and its limit (process_open_fds, process_max_fds).",
            "short",
            t(f"max by (node) ({per_node(sel('process_open_fds', JOB))})", "{{node}} open"),
            t(f"max by (node) ({per_node(sel('process_max_fds', JOB))})", "{{node}} limit"),
        ),
        ts(
            "Agent uptime",
            "Seconds since each agent process started (process_start_time_seconds): drops on restarts.",
            "s",
            t(f"time() - max by (node) ({per_node(sel('process_start_time_seconds', JOB))})", "{{node}}"),
        ),
        ts(
            "Containers and namespaces tracked",
            "Running containers in the inventory and distinct network namespaces read, per node.",
            "short",
            t(f"max by (node) ({per_node(sel('dockwatch_containers_tracked', JOB))})", "{{node}} containers"),
            t(
                f"max by (node) ({per_node(sel('dockwatch_network_namespaces_tracked', JOB))})",
                "{{node}} namespaces",
            ),
        ),
        ts(
            "Engine reconnects",
            "Times per interval the agent lost and re-established the engine connection.",
            "short",
            t(f"sum by (node) ({per_node(increase('dockwatch_engine_reconnects_total', JOB))})", "{{node}}"),
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
                f"sum by (node, sink) ({sink_rate('dockwatch_log_sink_records_sent_total')})",
                "{{node}} {{sink}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Log bytes sent",
            "Bytes of log lines per second each sink accepted. " + no_sink.capitalize() + ".",
            "Bps",
            t(
                f"sum by (node, sink) ({sink_rate('dockwatch_log_sink_bytes_sent_total')})",
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
            t(f"sum by (node, sink) ({sink_rate('dockwatch_log_sink_retries_total')})", "{{node}} {{sink}}"),
            no_value=no_sink,
        ),
        ts(
            "Log records dropped",
            "Records per second never delivered, by reason (corrupt, rejected, rotated). "
            + no_sink.capitalize()
            + ".",
            "ops",
            t(
                f"sum by (node, sink, reason) ({sink_rate('dockwatch_log_sink_records_dropped_total')})",
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
                "sum by (node, sink) "
                f"({per_node(increase('dockwatch_log_sink_rotated_files_missed_total', JOB, sink))})",
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
                f"sum by (node, sink) ({sink_rate('dockwatch_log_sink_rotated_bytes_missed_total')})",
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
                f"max by (node, sink) ({sink_metric('dockwatch_log_sink_backlog_bytes')})",
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
                f"max by (node, sink) ({sink_metric('dockwatch_log_sink_delivery_lag_seconds')})",
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
                "time() - max by (node, sink) "
                f"({sink_metric('dockwatch_log_sink_last_success_timestamp_seconds')} > 0)",
                "{{node}} {{sink}}",
            ),
            no_value=no_sink,
        ),
        ts(
            "Containers followed",
            "Containers whose logs each sink follows, and running containers whose logs cannot be read "
            "(by reason: driver_none, a driver without the dual-logging cache, tty).",
            "short",
            t(f"max by (node, sink) ({sink_metric('dockwatch_log_sink_containers')})", "{{node}} {{sink}}"),
            t(
                f"max by (node, reason) ({per_node(sel('dockwatch_log_containers_unreadable', JOB))})",
                "{{node}} unreadable: {{reason}}",
            ),
            no_value=no_sink,
        ),
    ]
    templating = [
        datasource_var(),
        query_var("job", "Job", 'label_values(dockwatch_build_info{job!=""}, job)', all_value=None),
        query_var("node", "Node", f"label_values(dockwatch_build_info{{{JOB}}}, node)"),
        query_var("sink", "Log sink", f"label_values(dockwatch_log_sink_records_sent_total{{{JOB}}}, sink)"),
    ]
    return dashboard(
        "dockwatch-agent",
        "dockwatch / Agent and log shipping",
        "Is the agent healthy and what does it cost; are log sinks delivering.",
        panels,
        templating,
    )


DASHBOARDS = {
    "traffic.json": traffic,
    "container.json": container,
    "connections.json": connections,
    "events.json": events,
    "agent.json": agent,
}


def _networking() -> dict[str, Any]:
    """Issue 11's dashboards (networks.json, service-map.json): grafana/networking.py, built over
    the helpers of this module, which it is given rather than imports (no import cycle)."""
    spec = importlib.util.spec_from_file_location("dockwatch_grafana_networking", HERE / "networking.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    made: dict[str, Any] = mod.dashboards(sys.modules[__name__])
    return made


DASHBOARDS.update(_networking())


def render_all() -> dict[str, str]:
    """File name -> exact file text."""
    return {name: json.dumps(fn(), indent=2, sort_keys=True) + "\n" for name, fn in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the JSON on disk differs")
    ap.add_argument("--dir", type=Path, default=OUT, help="dashboards directory (default: %(default)s)")
    args = ap.parse_args(argv)
    rendered = render_all()
    out: Path = args.dir
    if args.check:
        on_disk = {p.name for p in out.glob("*.json")}
        stale = sorted(on_disk - set(rendered))
        differ = sorted(
            n for n, text in rendered.items() if not (out / n).is_file() or (out / n).read_text() != text
        )
        for n in differ:
            print(f"{out / n}: differs from grafana/build.py; run python grafana/build.py", file=sys.stderr)
        for n in stale:
            print(f"{out / n}: not built by grafana/build.py", file=sys.stderr)
        return 1 if differ or stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for n, text in rendered.items():
        (out / n).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
