"""Traffic overview (dockwatch-traffic): where does the traffic go, per node, stack/service,
container and Docker network, and the host's own namespace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporters.prometheus import names as n
from exporters.prometheus.names import Metric
from grafana.panels import (
    DROPS_ALARM,
    ERRORS_ALARM,
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
    HOSTNS,
    NET,
    SERVICE_LEGEND,
    STANDALONE,
    increase_at_end,
    per_service,
    rate,
    sel,
)


def build() -> Json:
    c = CONTAINER
    cn = f"{c},{NET}"
    detail = [link_to("dockwatch-container", "Container detail")]
    by_service = per_service

    def rx_tx(
        title: str,
        desc: str,
        unit: str,
        rx: Metric,
        tx: Metric,
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
            t(f"sum({rate(n.RX_BYTES, cn)})"),
        ),
        stat(
            "Transmit",
            "Bytes per second sent by the selected containers.",
            "Bps",
            t(f"sum({rate(n.TX_BYTES, cn)})"),
        ),
        stat(
            "Running containers",
            f"Running containers matching the filters, from {n.CONTAINER_INFO.name} (sidecars and "
            "host-network containers included; they have no traffic series of their own).",
            "short",
            t(f"count({sel(n.CONTAINER_INFO, c)})"),
        ),
        stat(
            "Network namespaces",
            "Distinct container network namespaces with traffic series: a shared namespace counts once.",
            "short",
            t(f"count(count by (node, name) ({rate(n.RX_BYTES, cn)}))"),
        ),
        stat(
            "Errors",
            "Receive plus transmit errors per second, all selected interfaces. Orange from 0.01/s "
            "(any error), red from 1/s.",
            "pps",
            t(f"sum({rate(n.RX_ERRORS, cn)}) + sum({rate(n.TX_ERRORS, cn)})"),
            extra_defaults=ERRORS_ALARM,
        ),
        stat(
            "Drops",
            "Received plus transmitted packets dropped per second, all selected interfaces. Orange "
            "from 1/s (the ContainerNetworkDrops alert), red from 10/s.",
            "pps",
            t(f"sum({rate(n.RX_DROPPED, cn)}) + sum({rate(n.TX_DROPPED, cn)})"),
            extra_defaults=DROPS_ALARM,
        ),
        rx_tx(
            "Traffic by node",
            "Container traffic per node (each namespace once; the host's own namespace is not included).",
            "Bps",
            n.RX_BYTES,
            n.TX_BYTES,
            "sum by (node)",
            "{{node}}",
        ),
        rx_tx(
            "Traffic by stack / service",
            "Container traffic per swarm stack/service or compose project/service "
            f"(containers with neither: {STANDALONE}).",
            "Bps",
            n.RX_BYTES,
            n.TX_BYTES,
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
                f"(sum by (node, name) ({rate(n.RX_BYTES, cn)}) "
                f"+ sum by (node, name) ({rate(n.TX_BYTES, cn)}))"
                " and on (node, name) "
                f"topk(10, sum by (node, name) ({increase_at_end(n.RX_BYTES, cn)}) "
                f"+ sum by (node, name) ({increase_at_end(n.TX_BYTES, cn)}))",
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
                instant(f"topk(20, sum by (node, name) ({rate(n.RX_BYTES, cn)}))"),
                instant(f"topk(20, sum by (node, name) ({rate(n.TX_BYTES, cn)}))"),
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
            n.RX_PACKETS,
            n.TX_PACKETS,
            by_service,
            SERVICE_LEGEND,
        ),
        rx_tx(
            "Packets by container",
            "Packets per second per container, received and transmitted.",
            "pps",
            n.RX_PACKETS,
            n.TX_PACKETS,
            "sum by (node, name)",
            "{{node}}/{{name}}",
            links=detail,
        ),
        rx_tx(
            "Errors by container",
            "Receive and transmit errors per second per container (net/dev errs).",
            "pps",
            n.RX_ERRORS,
            n.TX_ERRORS,
            "sum by (node, name)",
            "{{node}}/{{name}}",
            links=detail,
        ),
        rx_tx(
            "Drops by container",
            "Received and transmitted packets dropped per second per container (net/dev drop).",
            "pps",
            n.RX_DROPPED,
            n.TX_DROPPED,
            "sum by (node, name)",
            "{{node}}/{{name}}",
            links=detail,
        ),
        rx_tx(
            "Traffic by Docker network",
            "Container traffic per Docker network the interface is attached to "
            "(an empty network: an interface Docker did not create).",
            "Bps",
            n.RX_BYTES,
            n.TX_BYTES,
            "sum by (network)",
            "{{network}}",
        ),
        rx_tx(
            "Errors by Docker network",
            "Receive and transmit errors per second per Docker network.",
            "pps",
            n.RX_ERRORS,
            n.TX_ERRORS,
            "sum by (network)",
            "{{network}} errors",
        ),
        ts(
            "Host namespace traffic",
            'The host\'s own network namespace (name=""), physical interfaces only: exported with '
            "--collector.host-netns, empty otherwise. Not included in the container totals above.",
            "Bps",
            t(f"sum by (node, interface) ({rate(n.RX_BYTES, HOSTNS)})", "{{node}} {{interface}} rx"),
            t(f"sum by (node, interface) ({rate(n.TX_BYTES, HOSTNS)})", "{{node}} {{interface}} tx"),
            no_value="host namespace not exported (--collector.host-netns)",
        ),
        ts(
            "Host namespace errors and drops",
            "Errors and drops per second on the host's own interfaces (--collector.host-netns).",
            "pps",
            t(f"sum by (node, interface) ({rate(n.RX_ERRORS, HOSTNS)})", "{{node}} {{interface}} rx errors"),
            t(f"sum by (node, interface) ({rate(n.TX_ERRORS, HOSTNS)})", "{{node}} {{interface}} tx errors"),
            t(f"sum by (node, interface) ({rate(n.RX_DROPPED, HOSTNS)})", "{{node}} {{interface}} rx drops"),
            t(f"sum by (node, interface) ({rate(n.TX_DROPPED, HOSTNS)})", "{{node}} {{interface}} tx drops"),
            no_value="host namespace not exported (--collector.host-netns)",
        ),
    ]
    return dashboard(
        "dockwatch-traffic",
        "dockwatch / Traffic overview",
        "Where does the traffic go: per node, stack/service, container and Docker network.",
        panels,
        variables(network=True),
    )
