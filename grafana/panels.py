"""Panels, variables and the dashboard frame, as plain dicts in Grafana's JSON model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from exporters.prometheus import names as n
from grafana.queries import ANY_JOB, GROUPS, JOB, NODE, PROJECT, STACK, sel

Json = dict[str, Any]

SCHEMA_VERSION = 39  # Grafana 10.4/11 write 39; 12.x migrates it on load.
DATASOURCE_UID = "dockwatch-prometheus"  # provisioning/datasources/prometheus.yaml
DS: Json = {"type": "prometheus", "uid": "${datasource}"}
TAG = "dockwatch"


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
# A count of things that are wrong: green at 0, red from 1.
ANY_IS_BAD: Json = {
    "thresholds": {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
    }
}

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


def job_var() -> Json:
    # All = the jobs that have agents (a regex of them), not every job Prometheus scrapes.
    return query_var("job", "Job", f"label_values({sel(n.BUILD_INFO, ANY_JOB)}, job)", all_value=None)


def node_var() -> Json:
    return query_var("node", "Node", f"label_values({sel(n.BUILD_INFO, JOB)}, node)")


def variables(*, container_multi: bool = True, network: bool = False) -> list[Json]:
    info = n.CONTAINER_INFO
    vs = [
        datasource_var(),
        job_var(),
        node_var(),
        query_var("stack", "Stack", f"label_values({sel(info, JOB, NODE)}, stack)"),
        query_var("service", "Service", f"label_values({sel(info, JOB, NODE, STACK)}, service)"),
        query_var("project", "Compose project", f"label_values({sel(info, JOB, NODE)}, compose_project)"),
        query_var(
            "compose_service",
            "Compose service",
            f"label_values({sel(info, JOB, NODE, PROJECT)}, compose_service)",
        ),
        query_var(
            "container",
            "Container",
            f"label_values({sel(info, JOB, NODE, GROUPS)}, name)",
            multi=container_multi,
        ),
    ]
    if network:
        vs.append(query_var("network", "Network", f"label_values({sel(n.RX_BYTES, JOB, NODE)}, network)"))
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
