"""The agent's collectors, one line each (the framework is agent/collector.py).

For any reader of namespaces (the /metrics scraper, a terminal view):

    registry = build_collectors(cfg)
    col = registry.collect(inventory.snapshot, everything=True)  # blocking: in a worker thread
    res = netstats.namespaces(col)  # CollectResult: per-namespace samples (+ TCP states), members
    col.outcomes                    # per collector: success, duration, error
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from agent import fastproc
from agent.collector import Registry
from agent.config import Config
from agent.connections import CONNECTIONS, ConnectionCollector, SwarmSource
from agent.netstats import NetCollector, TcpStatesCollector, own_procfs

__all__ = ["CONNECTIONS", "build_collectors"]

log = logging.getLogger(__name__)


def build_collectors(
    cfg: Config,
    swarm: SwarmSource | None = None,
    mib_fields: Mapping[str, Sequence[str]] | None = None,
    sockstat_fields: Mapping[str, Sequence[str]] | None = None,
) -> Registry:
    """`mib_fields`, `sockstat_fields`: the net/snmp + net/netstat and net/sockstat{,6} fields the
    exporter exports (see NetCollector).

    Sidecar mode is decided here for every collector: they read this process's own /proc and
    see no host namespace; `sidecar=` only tells them that pid 1 is not the host's."""
    sidecar = cfg.sidecar
    fs = own_procfs(cfg.hostfs) if sidecar else cfg.hostfs
    host_netns = cfg.collector_host_netns and not sidecar
    parser = fastproc.choose(cfg.collector_parser)
    log.info("collector: parsing /proc/<pid>/net files with the %s parser", parser.name)
    reg = Registry()
    reg.register(
        NetCollector(
            fs,
            loopback=cfg.collector_loopback,
            host_netns=host_netns,
            ignore=cfg.collector_interfaces_ignore,
            host_ignore=cfg.collector_host_interfaces_ignore,
            sidecar=sidecar,
            mib_fields=mib_fields,
            sockstat_fields=sockstat_fields,
            ipv6=cfg.collector_ipv6,
            parser=parser,
            keep_open=cfg.collector_keep_files_open,
        )
    )
    if cfg.collector_connections:  # opt-in, off the scrape path: ~3-4 ms CPU per namespace (bench/)
        conns = ConnectionCollector(
            fs,
            sidecar=sidecar,
            host_netns=host_netns,
            keep_external_ips=cfg.collector_connections_external_ips,
            swarm=swarm,
            tcp_states=cfg.collector_tcp_states,
        )
        reg.register(conns, interval=cfg.collector_connections_interval)
    if cfg.collector_tcp_states and not cfg.collector_connections:
        # opt-in, off the scrape path: ~10 ms CPU per namespace. With the connection tier on, its
        # sweep already reads net/tcp{,6}: netstats.namespaces() takes the states from it instead.
        tcp = TcpStatesCollector(fs, host_netns=host_netns, sidecar=sidecar)
        reg.register(tcp, interval=cfg.collector_tcp_states_interval)
    return reg
