"""Docker networking as metrics (issue 11): networks, attachments, published ports, swarm services,
and, from the connection tier's last sweep, what listens and who talks to whom.

A client_python custom collector: everything is read from immutable snapshots at collect time
(the inventory's, the swarm view's, the tier's last result), so a scrape never reads /proc for
it. Tier series are rendered only for containers still running: a removed container's series
are gone on the next scrape even before the next sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from agent.connections import ConnectionsResult
from agent.docker.models import Container, Service
from agent.inventory import Snapshot
from agent.peers import PortState, published_port_state
from exporters.prometheus import names as n
from exporters.prometheus.families import GaugeMetricFamily, Metric


class _Services(Protocol):
    services: tuple[Service, ...]


def identity(c: Container | None, node: str) -> list[str]:
    """The IDENTITY label values (names.IDENTITY order); the host namespace has only `node`."""
    if c is None:
        return [node, "", "", "", "", "", "", ""]
    return [node, c.name, c.image, c.compose_project, c.compose_service, c.stack, c.service, c.task]


def _family(m: n.Metric) -> GaugeMetricFamily:
    return GaugeMetricFamily(m.name, m.help, labels=list(m.labels))


def _flag(v: bool) -> str:
    return "true" if v else "false"


class NetmapMetrics:
    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        swarm: _Services | None = None,
        connections: Callable[[], ConnectionsResult | None] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.swarm = swarm
        self.connections = connections  # None: the tier is off
        # Per part: the inputs it was built from (compared by identity: snapshots, their mappings
        # and the tier's results are immutable and replaced on change) and its families. The same
        # Metric objects again let the page reuse their text (render.FamilyTexts).
        self._built: dict[str, tuple[tuple[object, ...], list[Metric]]] = {}

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        services = self.swarm.services if self.swarm is not None else ()
        yield from self._part("networks", (snap.containers, snap.networks, snap.node), self._networks, snap)
        yield from self._part("services", (services, snap.networks, snap.node), self._services, snap)
        if self.connections is not None:
            res = self.connections()
            yield from self._part(
                "tier", (snap.containers, res, snap.node), lambda s: self._tier(s, res), snap
            )

    def _part(
        self,
        name: str,
        inputs: tuple[object, ...],
        build: Callable[[Snapshot], Iterator[Metric]],
        snap: Snapshot,
    ) -> list[Metric]:
        """The part's families as last built when its inputs are the same objects, else built now."""
        last = self._built.get(name)
        if last is not None and all(a is b for a, b in zip(last[0], inputs, strict=True)):
            return last[1]
        families = list(build(snap))
        self._built[name] = (inputs, families)  # one assignment: a concurrent collect sees either
        return families

    # --- always on: the Engine API --------------------------------------------------------------
    def _networks(self, snap: Snapshot) -> Iterator[Metric]:
        node = snap.node
        info, subnet, count = (
            _family(n.NETWORK_INFO),
            _family(n.NETWORK_SUBNET),
            _family(n.NETWORK_CONTAINERS),
        )
        attached: dict[str, int] = {}
        att = _family(n.CONTAINER_NETWORK)
        ports = _family(n.CONTAINER_PUBLISHED_PORT)
        for c in sorted(snap.containers.values(), key=lambda c: c.name):
            ident = identity(c, node)
            for a in c.networks:
                attached[a.network_id or a.name] = attached.get(a.network_id or a.name, 0) + 1
                att.add_metric([*ident, a.name, a.ip, a.ipv6], 1)
            for p in c.ports:
                ports.add_metric([*ident, str(p.container_port), p.protocol, p.host_ip, str(p.host_port)], 1)
        for net in sorted(snap.networks.values(), key=lambda x: x.name):
            flags = (net.internal, net.attachable, net.ingress, net.ipv6)
            info.add_metric([node, net.name, net.id, net.driver, net.scope, *map(_flag, flags)], 1)
            for sub, gw in zip(net.subnets, net.gateways or ("",) * len(net.subnets), strict=False):
                subnet.add_metric([node, net.name, net.id, str(sub), gw], 1)
            count.add_metric([node, net.name, net.id], attached.get(net.id, 0) + attached.get(net.name, 0))
        yield from (info, subnet, count, att, ports)

    def _services(self, snap: Snapshot) -> Iterator[Metric]:
        node = snap.node
        ports, vips = _family(n.SERVICE_PUBLISHED_PORT), _family(n.SERVICE_VIRTUAL_IP)
        services: Sequence[Service] = self.swarm.services if self.swarm is not None else ()
        net_names = {net.id: net.name for net in snap.networks.values()}
        for s in sorted(services, key=lambda s: s.name):
            for p in s.ports:
                ports.add_metric(
                    [
                        node,
                        s.stack,
                        s.name,
                        str(p.target_port),
                        str(p.published_port),
                        p.protocol,
                        p.publish_mode,
                    ],
                    1,
                )
            for net_id, vip in s.vips:
                vips.add_metric([node, s.stack, s.name, net_names.get(net_id, net_id), vip], 1)
        yield from (ports, vips)

    # --- the connection tier's last sweep ----------------------------------------------------------
    def _tier(self, snap: Snapshot, res: ConnectionsResult | None) -> Iterator[Metric]:
        node = snap.node
        listening, peers = _family(n.LISTENING_SOCKETS), _family(n.PEER_CONNECTIONS)
        published = _family(n.PUBLISHED_PORT_LISTENING)
        running = snap.containers
        for ns in res.namespaces if res is not None else ():
            if ns.owner is not None and ns.owner.id not in running:
                continue  # removed since the sweep
            ident = identity(ns.owner, node)
            for lst, k in sorted(
                ns.listeners.items(), key=lambda kv: (kv[0].protocol, kv[0].port, kv[0].address)
            ):
                listening.add_metric([*ident, lst.protocol, lst.address, str(lst.port)], k)
            for e, k in sorted(
                ns.edges.items(), key=lambda kv: (kv[0].direction, kv[0].peer.name, kv[0].port)
            ):
                p = e.peer
                peers.add_metric([*ident, e.direction.value, p.kind.value, p.name, p.service, str(e.port)], k)
        if res is not None:
            for c in sorted(running.values(), key=lambda c: c.name):
                swept = res.by_owner.get(c.id)
                if swept is None or not c.ports:
                    continue  # not swept yet, or publishes nothing
                ident = identity(c, node)
                for pp in c.ports:
                    st = published_port_state(pp, swept.listeners)
                    port = [str(pp.container_port), pp.protocol, pp.host_ip, str(pp.host_port)]
                    published.add_metric([*ident, *port, st.value], 1 if st is PortState.LISTENING else 0)
        yield from (listening, peers, published)
