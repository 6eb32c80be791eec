"""Connections (dockwatch-connections): who holds connections and which fail, reset,
retransmit or overflow: TCP and UDP per container and service."""

from __future__ import annotations

from collections.abc import Callable

from exporters.prometheus import names as n
from exporters.prometheus.names import Metric
from grafana.panels import (
    FAILED_CONNECTS_ALARM,
    Json,
    Panel,
    dashboard,
    link_to,
    stat,
    t,
    ts,
    variables,
)
from grafana.queries import (
    CONTAINER,
    SERVICE_LEGEND,
    per_service,
    rate,
    sel,
)


def build() -> Json:
    c = CONTAINER
    ctr = "sum by (node, name)"
    ctr_l = "{{node}}/{{name}}"
    detail = [link_to("dockwatch-container", "Container detail")]

    def by_ctr(
        title: str, desc: str, unit: str, expr_fn: Callable[[Metric, str], str], *metrics: tuple[Metric, str]
    ) -> Panel:
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
            t(f"sum({sel(n.TCP_ESTABLISHED, c)})"),
        ),
        stat(
            "TIME-WAIT",
            "TCP sockets in TIME-WAIT, all selected containers.",
            "short",
            t(f"sum({sel(n.TCP_TIME_WAIT, c)})"),
        ),
        stat(
            "TCP sockets in use",
            "TCP sockets in use (all states but TIME-WAIT), IPv4 and IPv6.",
            "short",
            t(f"sum({sel(n.TCP_INUSE, c)})"),
        ),
        stat(
            "Failed connects",
            "Failed TCP connection attempts per second, all selected containers. Orange from 1/s "
            "(the ContainerTcpFailedConnectsRising alert, per container), red from 10/s.",
            "ops",
            t(f"sum({rate(n.TCP_FAILED, c)})"),
            extra_defaults=FAILED_CONNECTS_ALARM,
        ),
        stat(
            "Resets sent",
            "TCP segments sent with RST per second.",
            "ops",
            t(f"sum({rate(n.TCP_OUT_RSTS, c)})"),
        ),
        stat(
            "Retransmits",
            "TCP segments retransmitted per second.",
            "ops",
            t(f"sum({rate(n.TCP_RETRANS, c)})"),
        ),
        by_ctr(
            "Established by container",
            "TCP connections in ESTABLISHED or CLOSE-WAIT per container (net/snmp CurrEstab).",
            "short",
            sel,
            (n.TCP_ESTABLISHED, ""),
        ),
        ts(
            "Established by stack / service",
            "TCP connections in ESTABLISHED or CLOSE-WAIT per service.",
            "short",
            t(per_service(sel(n.TCP_ESTABLISHED, c)), SERVICE_LEGEND),
        ),
        by_ctr(
            "TIME-WAIT by container",
            "TCP sockets in TIME-WAIT per container (net/sockstat tw).",
            "short",
            sel,
            (n.TCP_TIME_WAIT, ""),
        ),
        ts(
            "Sockets in use by container",
            "TCP and UDP sockets in use per container and IP version (net/sockstat, sockstat6).",
            "short",
            t(
                f"sum by (node, name, ip_version) ({sel(n.TCP_INUSE, c)})",
                ctr_l + " tcp v{{ip_version}}",
            ),
            t(
                f"sum by (node, name, ip_version) ({sel(n.UDP_INUSE, c)})",
                ctr_l + " udp v{{ip_version}}",
            ),
            links=detail,
        ),
        by_ctr(
            "Connection opens by container",
            "Outgoing (active, SYN sent) and incoming (passive) TCP opens per second.",
            "ops",
            rate,
            (n.TCP_ACTIVE_OPENS, "active"),
            (n.TCP_PASSIVE_OPENS, "passive"),
        ),
        by_ctr(
            "Failed connection attempts by container",
            "TCP connection attempts that failed per second (refused, unreachable, timed out in SYN).",
            "ops",
            rate,
            (n.TCP_FAILED, ""),
        ),
        ts(
            "Failed connection attempts by stack / service",
            "Failed TCP connection attempts per second per service.",
            "ops",
            t(per_service(rate(n.TCP_FAILED, c)), SERVICE_LEGEND),
        ),
        by_ctr(
            "Resets by container",
            "Connections reset from ESTABLISHED/CLOSE-WAIT, and segments sent with RST, per second.",
            "ops",
            rate,
            (n.TCP_ESTAB_RESETS, "established resets"),
            (n.TCP_OUT_RSTS, "RST sent"),
        ),
        by_ctr(
            "Retransmits by container",
            "Segments retransmitted, SYN retransmits, retransmission timeouts and connections aborted "
            "on timeout, per second.",
            "ops",
            rate,
            (n.TCP_RETRANS, "retransmitted"),
            (n.TCP_SYN_RETRANS, "SYN retransmits"),
            (n.TCP_TIMEOUTS, "timeouts"),
            (n.TCP_ABORT_TIMEOUT, "aborted on timeout"),
        ),
        ts(
            "Retransmit ratio by container",
            "Retransmitted segments as a share of segments sent.",
            "percentunit",
            t(
                f"{ctr} ({rate(n.TCP_RETRANS, c)}) / {ctr} ({rate(n.TCP_OUT_SEGS, c)})",
                ctr_l,
            ),
            links=detail,
        ),
        by_ctr(
            "TCP segments by container",
            "TCP segments received and sent per second, and segments received in error.",
            "ops",
            rate,
            (n.TCP_IN_SEGS, "in"),
            (n.TCP_OUT_SEGS, "out"),
            (n.TCP_IN_ERRS, "in errors"),
        ),
        by_ctr(
            "Listen overflows and drops by container",
            "Accept queue full (overflows) and SYNs dropped on a listening socket, per second.",
            "ops",
            rate,
            (n.TCP_LISTEN_OVERFLOWS, "overflows"),
            (n.TCP_LISTEN_DROPS, "drops"),
        ),
        ts(
            "UDP datagrams by container",
            "UDP datagrams received and sent per second, by IP version.",
            "ops",
            t(
                f"sum by (node, name, ip_version) ({rate(n.UDP_IN, c)})",
                ctr_l + " in v{{ip_version}}",
            ),
            t(
                f"sum by (node, name, ip_version) ({rate(n.UDP_OUT, c)})",
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
            (n.UDP_IN_ERRORS, "receive errors"),
            (n.UDP_NO_PORTS, "no port"),
            (n.UDP_RCVBUF, "receive buffer"),
            (n.UDP_SNDBUF, "send buffer"),
        ),
        ts(
            "TCP sockets by state (opt-in)",
            "TCP sockets per state and container, from net/tcp and net/tcp6. Empty unless the agent "
            "runs with --collector.tcp-states.",
            "short",
            t(
                f"sum by (node, name, state) ({sel(n.TCP_STATES, c)})",
                ctr_l + " {{state}}",
            ),
            w=24,
            no_value="enable --collector.tcp-states",
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
