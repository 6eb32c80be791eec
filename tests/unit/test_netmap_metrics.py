"""exporters/prometheus/netmap.py renders issue 11's families from hand-built snapshots."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import load
from agent.connections import ConnectionsResult, NamespaceSockets
from agent.docker.models import (
    Container,
    Network,
    NetworkAttachment,
    PublishedPort,
    Service,
    ServicePort,
)
from agent.inventory import Snapshot
from agent.peers import Direction, Edge, Peer, PeerKind
from agent.socktable import Listener
from exporters.prometheus import names as n
from exporters.prometheus.netmap import NetmapMetrics
from tests.support.toolbox import container

Series = list[tuple[dict[str, str], float]]


def ctr(name: str, ip: str, ports: tuple[PublishedPort, ...] = (), net: str = "shop") -> Container:
    att = NetworkAttachment(net, "nid-" + net, ip=ip, prefix_len=24)
    return replace(container(1, name, net), id=name * 8, networks=(att,), ports=ports)


WEB = ctr(
    "web", "10.5.0.2", (PublishedPort(8080, "tcp", "0.0.0.0", 32768), PublishedPort(9090, "tcp", "", 1))
)
API = ctr("api", "10.5.0.3")
NET = Network(
    "nid-shop",
    "shop",
    "bridge",
    "local",
    subnets=(ipaddress.ip_network("10.5.0.0/24"), ipaddress.ip_network("fd00:5::/64")),
    gateways=("10.5.0.1", ""),
    internal=True,
)
SNAP = Snapshot(containers={c.id: c for c in (WEB, API)}, networks={NET.id: NET}, node="n1")


@dataclass
class Swarm:
    services: tuple[Service, ...]


SWARM = Swarm(
    (
        Service(
            "s",
            "shop_web",
            {"com.docker.stack.namespace": "shop"},
            "vip",
            (ServicePort(80, 8080, "tcp", "ingress"),),
            (("nid-shop", "10.5.0.9"),),
        ),
    )
)


def tier(*owners: Container | None) -> ConnectionsResult:
    nss = []
    for o in owners:
        listeners = (
            {Listener("tcp", "::", 8080): 1, Listener("tcp", "127.0.0.1", 9090): 1} if o is WEB else {}
        )
        peer = Peer(PeerKind.CONTAINER, "api") if o is WEB else Peer(PeerKind.CONTAINER, "web")
        direction = Direction.SERVER if o is WEB else Direction.CLIENT
        nss.append(NamespaceSockets(id(o), o, listeners, {Edge(direction, peer, 8080): 3}, {}))
    return ConnectionsResult(
        namespaces=tuple(nss), by_owner={ns.owner.id: ns for ns in nss if ns.owner is not None}
    )


def scrape(coll: NetmapMetrics) -> dict[str, Series]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(coll)  # type: ignore[arg-type]  # ours is structurally a client_python Collector
    out: dict[str, Series] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def by(series: Series, **labels: str) -> Series:
    return [(lb, v) for lb, v in series if all(lb.get(k) == x for k, x in labels.items())]


def test_always_on_families() -> None:
    m = scrape(NetmapMetrics(lambda: SNAP, SWARM))
    ((info, _),) = m[n.NETWORK_INFO.name]
    assert info == {
        "node": "n1",
        "network": "shop",
        "network_id": "nid-shop",
        "driver": "bridge",
        "scope": "local",
        "internal": "true",
        "attachable": "false",
        "ingress": "false",
        "ipv6": "false",
    }
    subnets = {(lb["subnet"], lb["gateway"]) for lb, _ in m[n.NETWORK_SUBNET.name]}
    assert subnets == {("10.5.0.0/24", "10.5.0.1"), ("fd00:5::/64", "")}
    assert m[n.NETWORK_CONTAINERS.name] == [
        ({"node": "n1", "network": "shop", "network_id": "nid-shop"}, 2.0)
    ]
    att = {lb["name"]: lb["ip_address"] for lb, _ in m[n.CONTAINER_NETWORK.name]}
    assert att == {"web": "10.5.0.2", "api": "10.5.0.3"}
    ports = [
        (lb["container_port"], lb["host_port"], lb["host_ip"]) for lb, _ in m[n.CONTAINER_PUBLISHED_PORT.name]
    ]
    assert ports == [("8080", "32768", "0.0.0.0"), ("9090", "1", "")]
    ((sp, _),) = m[n.SERVICE_PUBLISHED_PORT.name]
    assert (sp["service"], sp["stack"], sp["published_port"], sp["publish_mode"]) == (
        "shop_web",
        "shop",
        "8080",
        "ingress",
    )
    ((vip, _),) = m[n.SERVICE_VIRTUAL_IP.name]
    assert (vip["network"], vip["virtual_ip"]) == ("shop", "10.5.0.9")  # network id shown by name
    # The tier is off: none of its families.
    assert not {n.LISTENING_SOCKETS.name, n.PEER_CONNECTIONS.name, n.PUBLISHED_PORT_LISTENING.name} & set(m)


def test_tier_families_and_published_port_state() -> None:
    m = scrape(NetmapMetrics(lambda: SNAP, None, lambda: tier(WEB, API)))
    assert {(lb["name"], lb["address"], lb["port"]) for lb, _ in m[n.LISTENING_SOCKETS.name]} == {
        ("web", "::", "8080"),
        ("web", "127.0.0.1", "9090"),
    }
    edges = {
        (lb["name"], lb["direction"], lb["peer_kind"], lb["peer"], lb["port"]): v
        for lb, v in m[n.PEER_CONNECTIONS.name]
    }
    assert edges == {
        ("web", "server", "container", "api", "8080"): 3,
        ("api", "client", "container", "web", "8080"): 3,
    }
    states = {lb["container_port"]: (lb["state"], v) for lb, v in m[n.PUBLISHED_PORT_LISTENING.name]}
    assert states == {"8080": ("listening", 1.0), "9090": ("loopback_only", 0.0)}
    # Every family carries the identity labels, names.py's declared set.
    for fam in (n.LISTENING_SOCKETS, n.PEER_CONNECTIONS, n.PUBLISHED_PORT_LISTENING):
        assert all(set(lb) == set(fam.labels) for lb, _ in m[fam.name])


def test_tier_series_follow_the_running_containers() -> None:
    """A container removed after the sweep has no tier series; one not swept yet has no port state."""
    only_api = Snapshot(containers={API.id: API}, networks={NET.id: NET}, node="n1")
    m = scrape(NetmapMetrics(lambda: only_api, None, lambda: tier(WEB, API)))
    assert {lb["name"] for lb, _ in m[n.PEER_CONNECTIONS.name]} == {"api"}
    assert n.LISTENING_SOCKETS.name not in m  # web's were the only ones
    m = scrape(NetmapMetrics(lambda: SNAP, None, lambda: tier(API)))
    assert n.PUBLISHED_PORT_LISTENING.name not in m
    m = scrape(NetmapMetrics(lambda: SNAP, None, lambda: None))  # before the first sweep
    assert n.PEER_CONNECTIONS.name not in m and n.NETWORK_INFO.name in m


def test_host_namespace_has_empty_identity() -> None:
    host = NamespaceSockets("host", None, {Listener("tcp", "0.0.0.0", 22): 1}, {}, {})
    m = scrape(NetmapMetrics(lambda: SNAP, None, lambda: ConnectionsResult(namespaces=(host,))))
    ((lb, v),) = m[n.LISTENING_SOCKETS.name]
    assert (lb["node"], lb["name"], lb["image"], lb["port"], v) == ("n1", "", "", "22", 1.0)


def test_config_keys() -> None:
    cfg = load({}, env={})
    assert (cfg.collector_connections, cfg.collector_connections_external_ips) == (False, False)
    assert cfg.collector_connections_interval > 0
    cfg = load({"collector.connections": True, "collector.connections-interval": "2s"}, env={})
    assert cfg.collector_connections and cfg.collector_connections_interval == 2.0
    env = {"DOCKWATCH_COLLECTOR_CONNECTIONS_EXTERNAL_IPS": "true"}
    assert load({}, env=env).collector_connections_external_ips


def test_two_networks_with_one_name_stay_apart() -> None:
    """The engine allows two networks of one name (e.g. a local and a swarm one): no duplicate series."""
    other = Network("nid-other", "shop", "overlay", "swarm", subnets=(ipaddress.ip_network("10.9.0.0/24"),))
    snap = Snapshot(containers={WEB.id: WEB}, networks={NET.id: NET, other.id: other}, node="n1")
    m = scrape(NetmapMetrics(lambda: snap))
    for fam in (n.NETWORK_INFO, n.NETWORK_SUBNET, n.NETWORK_CONTAINERS):
        keys = [tuple(sorted(lb.items())) for lb, _ in m[fam.name]]
        assert len(keys) == len(set(keys)), fam.name
    counts = {lb["network_id"]: v for lb, v in m[n.NETWORK_CONTAINERS.name]}
    assert counts == {"nid-shop": 1.0, "nid-other": 0.0}
