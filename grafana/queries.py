"""PromQL for the dashboards: selectors on the template variables and query helpers."""

from __future__ import annotations

from exporters.prometheus import names as n
from exporters.prometheus.names import Metric

# --- selectors ------------------------------------------------------------------------------------
JOB = 'job=~"$job"'
ANY_JOB = 'job!=""'
NODE = 'node=~"$node"'
STACK = 'stack=~"$stack"'
PROJECT = 'compose_project=~"$project"'
# Swarm (stack, service) and compose (project, compose service) identities; standalone containers
# have both empty, which the ".*" All value still matches.
GROUPS = 'stack=~"$stack",service=~"$service",compose_project=~"$project",compose_service=~"$compose_service"'
CONTAINER = f'{JOB},{NODE},{GROUPS},name=~"$container",name!=""'
HOSTNS = f'{JOB},{NODE},name=""'  # the host's own namespace (--collector.host-netns)
NET = 'network=~"$network"'
RI = "[$__rate_interval]"
# One series per scrape target, carrying its node: filters and labels the node-less self metrics.
TARGET_NODE = f"group by (job, instance, node) ({n.BUILD_INFO.name}{{{JOB},{NODE}}})"
SERVICE_BY = "stack, service, compose_project, compose_service"
SERVICE_LEGEND = "{{group}}"
STANDALONE = "(no stack or project)"


def sel(metric: Metric, *matchers: str) -> str:
    """The metric's series matching `matchers`: only metrics names.py declares are queried."""
    return f"{metric.name}{{{','.join(matchers)}}}"


def rate(metric: Metric, *matchers: str) -> str:
    return f"rate({sel(metric, *matchers)}{RI})"


def increase(metric: Metric, *matchers: str) -> str:
    return f"increase({sel(metric, *matchers)}{RI})"


def increase_range(metric: Metric, *matchers: str) -> str:
    """Increase over the whole dashboard range: for instant "in range" stats only."""
    return f"increase({sel(metric, *matchers)}[$__range])"


def increase_at_end(metric: Metric, *matchers: str) -> str:
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
