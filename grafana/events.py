"""Docker events (dockwatch-events): what happened to containers: events, restarts, dies, OOMs
and health."""

from __future__ import annotations

from exporters.prometheus import names as n
from grafana.panels import (
    ANY_IS_BAD,
    HEALTH_MAPPINGS,
    Json,
    Panel,
    dashboard,
    instant,
    link_to,
    stat,
    t,
    ts,
    variables,
)
from grafana.queries import (
    CONTAINER,
    JOB,
    RESTARTS,
    action,
    increase,
    increase_range,
    per_node,
    rate,
    sel,
)


def build() -> Json:
    c = CONTAINER
    ctr_l = "{{node}}/{{name}}"
    detail = [link_to("dockwatch-container", "Container detail")]

    panels = [
        stat(
            "Healthy",
            "Containers whose healthcheck reports healthy (only containers with a healthcheck).",
            "short",
            t(f"sum({sel(n.CONTAINER_HEALTH, c)})"),
            no_value="no healthchecks",
        ),
        stat(
            "Unhealthy or starting",
            "Containers with a healthcheck that is not healthy (yet).",
            "short",
            t(f"sum(1 - {sel(n.CONTAINER_HEALTH, c)})"),
            no_value="no healthchecks",
            extra_defaults=ANY_IS_BAD,
        ),
        stat(
            "Dies",
            "die events over the shown time range, selected containers.",
            "short",
            instant(f"sum({increase_range(n.CONTAINER_EVENTS, c, action('die'))})"),
        ),
        stat(
            "OOMs",
            "oom events (the kernel killed a process for memory) over the shown time range.",
            "short",
            instant(f"sum({increase_range(n.CONTAINER_EVENTS, c, action('oom'))})"),
        ),
        ts(
            "Engine events by type and action",
            "Every event the agent received from the engine's /events stream, per second "
            "(containers, networks, images, volumes...).",
            "ops",
            t(
                f"sum by (type, action) ({per_node(rate(n.DOCKER_EVENTS, JOB))})",
                "{{type}} {{action}}",
            ),
            w=24,
        ),
        ts(
            "Container events by action",
            "Events of the selected containers per second, by action.",
            "ops",
            t(f"sum by (action) ({rate(n.CONTAINER_EVENTS, c)})", "{{action}}"),
        ),
        ts(
            "Restarts by container",
            "start and restart events per interval (a restart policy restarts with die + start).",
            "short",
            t(f"sum by (node, name) ({increase(n.CONTAINER_EVENTS, c, RESTARTS)})", ctr_l),
            links=detail,
        ),
        ts(
            "Dies by container",
            "die events per interval: the container's main process exited.",
            "short",
            t(f"sum by (node, name) ({increase(n.CONTAINER_EVENTS, c, action('die'))})", ctr_l),
            links=detail,
        ),
        ts(
            "OOMs and kills by container",
            "oom (the kernel killed a process for memory) and kill (a signal sent through the engine) "
            "events per interval.",
            "short",
            t(f"sum by (node, name) ({increase(n.CONTAINER_EVENTS, c, action('oom'))})", ctr_l + " oom"),
            t(f"sum by (node, name) ({increase(n.CONTAINER_EVENTS, c, action('kill'))})", ctr_l + " kill"),
            links=detail,
        ),
        ts(
            "Health status changes",
            "health_status events per interval (each healthcheck result the engine reports as a change).",
            "short",
            t(f"sum by (node, name) ({increase(n.CONTAINER_EVENTS, c, action('health_status'))})", ctr_l),
            links=detail,
        ),
        Panel(
            "state-timeline",
            "Health over time",
            "Healthcheck state per container: healthy, or unhealthy/starting. Only containers with a "
            "healthcheck.",
            "none",
            [t(f"max by (node, name) ({sel(n.CONTAINER_HEALTH, c)})", ctr_l)],
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
