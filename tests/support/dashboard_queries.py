"""Every PromQL query in grafana/dashboards/*.json, with template variables set to "all".

For the end-to-end proof (a real Prometheus scraping a real agent): run each `Query.expr` against
Prometheus's HTTP API (/api/v1/query) and expect a non-empty result unless `Query.needs` names
something the run did not set up. The unit tests parse the same strings with promtool.

    from tests.support.dashboard_queries import dashboard_queries
    for q in dashboard_queries():
        ...  # GET /api/v1/query?query=q.expr
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"

# Grafana's built-in range variables, as a 15 s scrape interval would make them.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# Label values of a variable set to All: ".*" also matches the empty value (standalone containers
# have stack="" and service=""), like the dashboards' allValue.
ALL = ".*"

# `$1` in label_replace is PromQL's, not a variable: Grafana names start with a letter or `_`.
_VAR = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", re.S)

# What a query needs besides a running agent with containers (checked in this order).
_NEEDS: tuple[tuple[str, str], ...] = (
    ("dockwatch_log_sink_", "a log sink configured"),
    ("dockwatch_log_containers_unreadable", "a container whose logs cannot be read"),
    ("container_network_tcp_connections{", "--collector.tcp-states"),
    ("dockwatch_service_", "a swarm manager whose services publish ports"),
    ("container_network_tcp_peer_connections", "--collector.connections"),
    ("container_network_listening_sockets", "--collector.connections"),
    ("dockwatch_container_published_port_listening", "--collector.connections"),
    ('collector="connections"', "--collector.connections"),
    ('name=""', "--collector.host-netns"),
    ("dockwatch_container_healthy", "a container with a healthcheck"),
    ("dockwatch_container_events_total", "container events since the agent started"),
    ("dockwatch_docker_events_total", "engine events since the agent started"),
)


@dataclass(frozen=True, slots=True)
class Query:
    dashboard: str  # uid
    source: str  # "panel <id> <title> <refId>" or "variable <name>"
    expr: str  # PromQL, variables substituted
    raw: str  # as written in the dashboard
    needs: str | None  # None: non-empty whenever an agent with containers is scraped


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Replace $var / ${var} / ${var:fmt}: Grafana built-ins by durations, the rest by `values` or All."""
    values = values or {}

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        return values.get(name, ALL)

    return _VAR.sub(one, expr)


def needs(expr: str) -> str | None:
    for marker, what in _NEEDS:
        if marker in expr:
            return what
    return None


def _variable_expr(var: Mapping[str, Any]) -> str | None:
    q = var.get("query")
    text = q.get("query") if isinstance(q, Mapping) else q
    if var.get("type") != "query" or not isinstance(text, str):
        return None
    m = _LABEL_VALUES.match(text)
    # label_values(selector, label) is Grafana's; the selector is the PromQL part.
    return m.group(1) if m else text


def dashboard_queries(
    directory: Path = DASHBOARDS, values: Mapping[str, str] | None = None
) -> Iterator[Query]:
    """Each panel target and each query variable of every dashboard, variables set to All.

    `values` pins variables instead (e.g. {"job": "dockwatch"}); the rest stay All.
    """
    for path in sorted(directory.glob("*.json")):
        dash = json.loads(path.read_text())
        uid = dash["uid"]
        for var in dash.get("templating", {}).get("list", []):
            raw = _variable_expr(var)
            if raw is not None:
                expr = substitute(raw, values)
                yield Query(uid, f"variable {var['name']}", expr, raw, needs(expr))
        for panel in dash.get("panels", []):
            for target in panel.get("targets", []):
                raw = target["expr"]
                expr = substitute(raw, values)
                src = f"panel {panel['id']} {panel['title']!r} {target['refId']}"
                yield Query(uid, src, expr, raw, needs(expr))


# --- PromQL text helpers (shared with the unit tests' lint rules) ---------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'" + r"|`[^`]*`")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")


def strip_strings(expr: str) -> str:
    """The expression with every string literal emptied, so label values cannot look like syntax."""
    return _STRING.sub('""', expr)


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, matchers text) of every `metric{...}` selector; matcher values kept as written."""
    return _SELECTOR.findall(expr)


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in selectors(strip_strings(expr))}
