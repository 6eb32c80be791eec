"""Issue 11's families as the real exporter renders them, for the dashboard tests' synthetic agent.

`netmap_text(web, app, node)` gives the exposition of exporters/prometheus/netmap.py for two
containers on node `node`: networks with subnets, attachments, published ports (one listening,
one not), swarm service ports and VIPs, listeners, and edges of every kind from both ends
(web -> app:8080 three times, web -> the shop_db service, an external client of app, the host
namespace talking to web).
"""

from __future__ import annotations

import dataclasses
import ipaddress

from prometheus_client import CollectorRegistry, generate_latest

from agent.connections import ConnectionsResult, NamespaceSockets
from agent.docker.models import Container, Network, NetworkAttachment, PublishedPort, Service, ServicePort
from agent.inventory import Snapshot
from agent.peers import EXTERNAL_NAME, Direction, Edge, Peer, PeerKind
from agent.socktable import Listener
from exporters.prometheus.netmap import NetmapMetrics


@dataclasses.dataclass
class _Swarm:
    services: tuple[Service, ...]


def netmap_text(web: Container, app: Container, node: str) -> str:
    front = Network(
        "nid-front",
        "shop_front",
        "overlay",
        "swarm",
        (ipaddress.ip_network("10.0.1.0/24"),),
        ("10.0.1.1",),
        attachable=True,
    )
    default = Network(
        "nid-p", "p_default", "bridge", "local", (ipaddress.ip_network("172.20.0.0/16"),), ("172.20.0.1",)
    )
    web = dataclasses.replace(web, networks=(NetworkAttachment("shop_front", "nid-front", "10.0.1.5", 24),))
    app = dataclasses.replace(
        app,
        networks=(NetworkAttachment("p_default", "nid-p", "172.20.0.2", 16),),
        ports=(PublishedPort(8080, "tcp", "0.0.0.0", 80), PublishedPort(9000, "tcp", "127.0.0.1", 9000)),
    )
    snap = Snapshot(
        containers={web.id: web, app.id: app}, networks={n.id: n for n in (front, default)}, node=node
    )
    svc = Service(
        "s1",
        "shop_web",
        {"com.docker.stack.namespace": "shop"},
        "vip",
        (ServicePort(80, 8080, "tcp", "ingress"),),
        (("nid-front", "10.0.1.2"),),
    )
    app_peer = Peer(PeerKind.CONTAINER, app.name)
    web_peer = Peer(PeerKind.CONTAINER, web.name, web.service)
    host_peer = Peer(PeerKind.HOST, node)
    namespaces = (
        NamespaceSockets(
            1,
            web,
            {Listener("tcp", "0.0.0.0", 80): 1},
            {
                Edge(Direction.CLIENT, app_peer, 8080): 3,
                Edge(Direction.CLIENT, Peer(PeerKind.SERVICE, "shop_db", "shop_db"), 5432): 1,
                Edge(Direction.SERVER, host_peer, 80): 1,
            },
            {},
        ),
        NamespaceSockets(
            2,
            app,
            {
                Listener("tcp", "::", 8080): 1,
                Listener("tcp", "127.0.0.1", 9000): 1,
                Listener("udp", "0.0.0.0", 53): 1,
            },
            {
                Edge(Direction.SERVER, web_peer, 8080): 3,
                Edge(Direction.SERVER, Peer(PeerKind.EXTERNAL, EXTERNAL_NAME), 8080): 2,
            },
            {},
        ),
        NamespaceSockets(
            3, None, {Listener("tcp", "0.0.0.0", 22): 1}, {Edge(Direction.CLIENT, web_peer, 80): 1}, {}
        ),
    )
    result = ConnectionsResult(namespaces=namespaces, by_owner={web.id: namespaces[0], app.id: namespaces[1]})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NetmapMetrics(lambda: snap, _Swarm((svc,)), lambda: result))  # type: ignore[arg-type]  # ours is structurally a client_python Collector
    return generate_latest(registry).decode()
