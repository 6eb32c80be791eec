"""Container detail (dockwatch-container): one container's interfaces and networks, traffic,
errors, drops, connections and events."""

from __future__ import annotations

from exporters.prometheus import names as n
from exporters.prometheus.names import Metric
from grafana.panels import (
    FAILED_CONNECTS_ALARM,
    HEALTH_MAPPINGS,
    Json,
    Panel,
    dashboard,
    instant,
    stat,
    t,
    ts,
    variables,
)
from grafana.queries import (
    CONTAINER,
    JOB,
    NET,
    NODE,
    NOT_HOST,
    action,
    increase,
    increase_range,
    rate,
    sel,
)


def build() -> Json:
    c = CONTAINER
    cn = f"{c},{NET}"
    by_if = "sum by (name, interface, network)"
    if_legend = "{{name}} {{interface}} ({{network}})"
    # The namespace the container is in, attributed to its owner: one info series per
    # (node, owner) after `group by`, so a namespace shared by several selected containers is
    # still counted once.
    info = f"group by (node, netns_owner) ({sel(n.CONTAINER_INFO, c)})"
    owner = f'label_replace({info}, "name", "$1", "netns_owner", "(.+)")'
    ns_rx = f"{rate(n.RX_BYTES, JOB, NODE, NOT_HOST)} * on (node, name) group_left () {owner}"
    ns_tx = f"{rate(n.TX_BYTES, JOB, NODE, NOT_HOST)} * on (node, name) group_left () {owner}"

    def if_pair(title: str, desc: str, unit: str, rx: Metric, tx: Metric) -> Panel:
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
            [instant(sel(n.CONTAINER_INFO, c))],
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
            t(per_ctr(rate(n.RX_BYTES, cn)), "{{name}}"),
        ),
        stat(
            "Transmit",
            "Bytes per second sent on the container's own interfaces.",
            "Bps",
            t(per_ctr(rate(n.TX_BYTES, cn)), "{{name}}"),
        ),
        stat(
            "Established",
            "TCP connections in ESTABLISHED or CLOSE-WAIT (the whole namespace).",
            "short",
            t(per_ctr(sel(n.TCP_ESTABLISHED, c)), "{{name}}"),
        ),
        stat(
            "Health",
            "Healthcheck state (empty: the container has no healthcheck).",
            "none",
            t(sel(n.CONTAINER_HEALTH, c), "{{name}}"),
            extra_defaults={"mappings": HEALTH_MAPPINGS},
            no_value="no healthcheck",
        ),
        stat(
            "Failed connects",
            "Failed TCP connection attempts per second. Orange from 1/s (the "
            "ContainerTcpFailedConnectsRising alert), red from 10/s.",
            "ops",
            t(per_ctr(rate(n.TCP_FAILED, c)), "{{name}}"),
            extra_defaults=FAILED_CONNECTS_ALARM,
        ),
        stat(
            "Dies in range",
            "die events of this container over the shown time range (a die that created the "
            "series, the first the agent saw, is not counted by increase()).",
            "short",
            instant(f"sum({increase_range(n.CONTAINER_EVENTS, c, action('die'))})"),
        ),
        if_pair(
            "Traffic by interface",
            "Bytes per second per interface and Docker network.",
            "Bps",
            n.RX_BYTES,
            n.TX_BYTES,
        ),
        if_pair(
            "Packets by interface", "Packets per second per interface.", "pps", n.RX_PACKETS, n.TX_PACKETS
        ),
        if_pair(
            "Errors by interface",
            "Receive and transmit errors per second per interface.",
            "pps",
            n.RX_ERRORS,
            n.TX_ERRORS,
        ),
        if_pair(
            "Drops by interface",
            "Packets dropped per second per interface.",
            "pps",
            n.RX_DROPPED,
            n.TX_DROPPED,
        ),
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
            t(per_ctr(sel(n.TCP_ESTABLISHED, c)), "{{name}} established"),
            t(per_ctr(sel(n.TCP_TIME_WAIT, c)), "{{name}} time-wait"),
            t(
                f"sum by (name, ip_version) ({sel(n.TCP_INUSE, c)})",
                "{{name}} in use v{{ip_version}}",
            ),
        ),
        ts(
            "Connection opens and failures",
            "Outgoing (active) and incoming (passive) opens, failed attempts and resets per second.",
            "ops",
            t(per_ctr(rate(n.TCP_ACTIVE_OPENS, c)), "{{name}} active opens"),
            t(per_ctr(rate(n.TCP_PASSIVE_OPENS, c)), "{{name}} passive opens"),
            t(per_ctr(rate(n.TCP_FAILED, c)), "{{name}} failed"),
            t(
                per_ctr(rate(n.TCP_ESTAB_RESETS, c)),
                "{{name}} established resets",
            ),
        ),
        ts(
            "Retransmits",
            "TCP segments retransmitted and retransmission timeouts per second.",
            "ops",
            t(
                per_ctr(rate(n.TCP_RETRANS, c)),
                "{{name}} retransmitted",
            ),
            t(per_ctr(rate(n.TCP_TIMEOUTS, c)), "{{name}} timeouts"),
        ),
        ts(
            "Container events",
            "Docker events for this container per interval, by action (die, oom, kill, health_status...).",
            "short",
            t(f"sum by (name, action) ({increase(n.CONTAINER_EVENTS, c)})", "{{name}} {{action}}"),
        ),
    ]
    return dashboard(
        "dockwatch-container",
        "dockwatch / Container detail",
        "One container: its interfaces and networks, traffic, errors, drops, connections and events.",
        panels,
        variables(container_multi=False, network=True),
    )
