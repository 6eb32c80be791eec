"""agent/peers.py from hand-built values: who is at the other end, and which way the edge goes."""

from __future__ import annotations

from dataclasses import replace

from agent.docker.models import (
    SWARM_SERVICE,
    Container,
    Network,
    NetworkAttachment,
    NetworkService,
    NetworkTask,
    PublishedPort,
    Service,
)
from agent.peers import (
    EXTERNAL_NAME,
    AddressBook,
    Direction,
    Edge,
    Peer,
    PeerKind,
    PortState,
    address_book,
    direction,
    edges,
    published_port_state,
)
from agent.socktable import Connection, Listener, SocketTable
from tests.support.toolbox import container


def ctr(name: str, *ips: str, service: str = "", mode: str = "bridge", created: str = "1") -> Container:
    atts = tuple(NetworkAttachment(name=f"net{i}", network_id=f"n{i}", ip=ip) for i, ip in enumerate(ips))
    labels = {SWARM_SERVICE: service} if service else {}
    return replace(container(1, name, mode, **labels), id=name * 4, networks=atts, created=created)


WEB = ctr("web", "10.0.0.2", "10.1.0.2")  # on two networks
API = ctr("api", "10.0.0.3", service="shop_api")
BRIDGE = Network("b", "bridge", "bridge", "local", gateways=("172.17.0.1",))
OVERLAY = Network(
    "o",
    "shop_back",
    "overlay",
    "swarm",
    gateways=("10.9.0.1",),
    services=(
        NetworkService("shop_db", "10.9.0.2", (NetworkTask("shop_db.1.x", "10.9.0.7"),)),
        NetworkService("shop_api", "10.9.0.4", (NetworkTask("shop_api.1.y", "10.0.0.3"),)),
    ),
)
SVC = Service("s1", "shop_cache", vips=(("o", "10.9.0.9"),))


def book(keep: bool = False) -> AddressBook:
    return address_book(
        "node1", [WEB, API], [BRIDGE, OVERLAY], [SVC], host_addresses={"192.0.2.10"}, keep_external_ips=keep
    )


def test_resolution_order_and_kinds() -> None:
    b = book()
    assert b.resolve("10.0.0.2") == Peer(PeerKind.CONTAINER, "web")
    assert b.resolve("10.1.0.2") == Peer(PeerKind.CONTAINER, "web")  # its second network
    # A local task is the container (with its service), not the service's remote task entry.
    assert b.resolve("10.0.0.3") == Peer(PeerKind.CONTAINER, "api", "shop_api")
    assert b.resolve("10.9.0.9") == Peer(PeerKind.SERVICE, "shop_cache", "shop_cache")  # /services VIP
    assert b.resolve("10.9.0.2") == Peer(PeerKind.SERVICE, "shop_db", "shop_db")  # network's VIP
    assert b.resolve("10.9.0.7") == Peer(PeerKind.SERVICE, "shop_db", "shop_db")  # remote task
    assert b.resolve("192.0.2.10") == Peer(PeerKind.HOST, "node1")
    assert b.resolve("172.17.0.1") == Peer(PeerKind.HOST, "node1")  # a local bridge's gateway
    assert b.resolve("10.9.0.1") == Peer(PeerKind.EXTERNAL, EXTERNAL_NAME)  # overlay gateway: not us
    assert b.resolve("203.0.113.5") == Peer(PeerKind.EXTERNAL, EXTERNAL_NAME)
    assert book(keep=True).resolve("203.0.113.5") == Peer(PeerKind.EXTERNAL, "203.0.113.5")


def test_an_address_seen_twice_goes_to_the_first_source() -> None:
    clash = Service("s2", "other", vips=(("o", "10.0.0.2"),))
    b = address_book("n", [WEB], [], [clash], host_addresses={"10.0.0.2"})
    assert b.resolve("10.0.0.2").kind is PeerKind.CONTAINER


def _table(listen: list[int], conns: list[Connection]) -> SocketTable:
    t = SocketTable()
    for p in listen:
        t.listeners[Listener("tcp", "0.0.0.0", p)] = 1
    t.connections.extend(conns)
    return t


def test_both_ends_of_three_connections_agree() -> None:
    """web holds three connections to api:8080; each side's table gives the same pair and port."""
    b = book()
    ports = (41000, 41001, 41002)
    client = _table([], [Connection("10.0.0.2", p, "10.0.0.3", 8080) for p in ports])
    server = _table([8080], [Connection("10.0.0.3", 8080, "10.0.0.2", p) for p in ports])
    assert edges(client, b) == {Edge(Direction.CLIENT, Peer(PeerKind.CONTAINER, "api", "shop_api"), 8080): 3}
    assert edges(server, b) == {Edge(Direction.SERVER, Peer(PeerKind.CONTAINER, "web"), 8080): 3}


def test_edges_aggregate_by_peer_and_port_and_skip_loopback() -> None:
    b = book()
    t = _table(
        [80],
        [
            Connection("10.0.0.2", 80, "203.0.113.5", 50000),
            Connection("10.0.0.2", 80, "198.51.100.7", 50001),  # another external: same edge
            Connection("10.0.0.2", 42000, "10.9.0.9", 6379),  # to a service VIP
            Connection("127.0.0.1", 42001, "127.0.0.1", 80),  # inside the namespace
            Connection("127.0.0.1", 80, "127.0.0.1", 42001),
        ],
    )
    assert edges(t, b) == {
        Edge(Direction.SERVER, Peer(PeerKind.EXTERNAL, EXTERNAL_NAME), 80): 2,
        Edge(Direction.CLIENT, Peer(PeerKind.SERVICE, "shop_cache", "shop_cache"), 6379): 1,
    }
    # With the option, one edge per external address.
    assert len(edges(t, book(keep=True))) == 3


def test_published_port_state() -> None:
    port = PublishedPort(8080, "tcp", "0.0.0.0", 32768)
    wild = Listener("tcp", "::", 8080)
    lo = Listener("tcp", "127.0.0.1", 8080)
    iface = Listener("tcp", "10.0.0.2", 8080)
    assert published_port_state(port, []) is PortState.NOT_LISTENING
    assert published_port_state(port, [lo]) is PortState.LOOPBACK_ONLY
    assert published_port_state(port, [lo, wild]) is PortState.LISTENING
    assert published_port_state(port, [iface]) is PortState.LISTENING
    assert published_port_state(port, [Listener("udp", "0.0.0.0", 8080)]) is PortState.NOT_LISTENING
    assert published_port_state(port, [Listener("tcp", "0.0.0.0", 8081)]) is PortState.NOT_LISTENING
    udp = PublishedPort(53, "udp", "", 5353)
    assert published_port_state(udp, [Listener("udp", "0.0.0.0", 53)]) is PortState.LISTENING


def test_a_server_that_closed_its_listener_is_still_the_server() -> None:
    """A one-shot `nc -l` (or a server draining on shutdown) keeps the connections it accepted
    with no LISTEN socket: the ephemeral range says which end is which, so both ends still agree
    and the port label is the server's, not one series per client port."""
    b = book()
    ports = (41000, 41001, 41002)
    server = _table([], [Connection("10.0.0.3", 9000, "10.0.0.2", p) for p in ports])
    client = _table([], [Connection("10.0.0.2", p, "10.0.0.3", 9000) for p in ports])
    assert edges(server, b) == {Edge(Direction.SERVER, Peer(PeerKind.CONTAINER, "web"), 9000): 3}
    assert edges(client, b) == {Edge(Direction.CLIENT, Peer(PeerKind.CONTAINER, "api", "shop_api"), 9000): 3}
    # Both ports ephemeral (a server listening on a free port the kernel chose), or neither: with
    # no listener here, this is the client's end, whichever port is lower.
    assert direction(33000, 45000, ()) is Direction.CLIENT
    assert direction(45000, 33000, ()) is Direction.CLIENT
    assert direction(8080, 5432, ()) is Direction.CLIENT
    assert direction(45000, 33000, {45000}) is Direction.SERVER  # a listener decides first
