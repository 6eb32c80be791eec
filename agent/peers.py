"""Who is at the other end: a remote address resolved to a container, a service, the host or
`external`, and a namespace's connections aggregated into edges. Pure: built and tested from
hand-made values; the connection tier (agent/connections.py) feeds it what it read.

Resolution, first match wins:
  1. a running container on this host, by its address on any Docker network (inspect);
  2. a swarm service: its virtual IP (GET /services Endpoint.VirtualIPs, or a swarm network's
     verbose inspect), which is what a client's socket shows when it connects to the service
     name; or one of its tasks on another node (verbose inspect Tasks[].EndpointIP);
  3. this host: an address of the host's own namespace (net/fib_trie, net/if_inet6), or the
     gateway of a local bridge network;
  4. anything else is `external` (its address kept only when asked: cardinality).

A connection's direction comes from its own namespace: when its local port is a port that
namespace listens on (TCP LISTEN), it is the server's end. A server may have closed its listener
and still hold the connections it accepted (a one-shot `nc -l`, a server draining on shutdown):
then, when only the other end's port is in the kernel's ephemeral range, this end is the
server's; otherwise it is the client's. The edge is keyed by the
server's port either way, so both ends of a connection between two containers on this host give
the same pair and port.
"""

from __future__ import annotations

from collections.abc import Container as Container_
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from agent.docker.models import Container, Network, PublishedPort, Service
from agent.socktable import EPHEMERAL_PORTS, Listener, SocketTable, is_loopback


class PeerKind(StrEnum):
    CONTAINER = "container"
    SERVICE = "service"
    HOST = "host"
    EXTERNAL = "external"


EXTERNAL_NAME = "external"


@dataclass(frozen=True, slots=True)
class Peer:
    kind: PeerKind
    name: str  # container name, service name, node name (host), "external" or the address
    service: str = ""  # the peer's swarm service, when it has one


@dataclass(frozen=True, slots=True)
class AddressBook:
    """Address → peer, for one host at one moment."""

    node: str
    addresses: Mapping[str, Peer] = field(default_factory=dict)
    keep_external_ips: bool = False

    def resolve(self, address: str) -> Peer:
        peer = self.addresses.get(address)
        if peer is not None:
            return peer
        return Peer(PeerKind.EXTERNAL, address if self.keep_external_ips else EXTERNAL_NAME)


def address_book(
    node: str,
    containers: Iterable[Container],
    networks: Iterable[Network] = (),
    services: Iterable[Service] = (),
    host_addresses: Iterable[str] = (),
    keep_external_ips: bool = False,
) -> AddressBook:
    """The resolution table; earlier sources win where an address appears twice (see above)."""
    out: dict[str, Peer] = {}

    def put(addr: str, peer: Peer) -> None:
        if addr and addr not in out:
            out[addr] = peer

    nets = list(networks)
    for c in sorted(containers, key=lambda c: (c.created, c.id)):
        for att in c.networks:
            for addr in (att.ip, att.ipv6):
                put(addr, Peer(PeerKind.CONTAINER, c.name, c.service))
    # The services list (managers) first, then what swarm networks show (any node).
    for svc in services:
        for _, vip in svc.vips:
            put(vip, Peer(PeerKind.SERVICE, svc.name, svc.name))
    for n in nets:
        for ns in n.services:
            put(ns.vip, Peer(PeerKind.SERVICE, ns.name, ns.name))
    for n in nets:
        for ns in n.services:
            for task in ns.tasks:
                put(task.ip, Peer(PeerKind.SERVICE, ns.name, ns.name))
    host = Peer(PeerKind.HOST, node)
    for addr in host_addresses:
        put(addr, host)
    for n in nets:
        if n.driver == "bridge" and n.scope == "local":
            for gw in n.gateways:
                put(gw, host)
    return AddressBook(node, out, keep_external_ips)


class Direction(StrEnum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class Edge:
    """Connections of one namespace with one peer on one server port, in one direction."""

    direction: Direction
    peer: Peer
    port: int  # the server's port: the remote port for a client, the local one for a server


def direction(local_port: int, remote_port: int, listening: Container_[int]) -> Direction:
    """Which end this is (see the module docstring)."""
    if local_port in listening:
        return Direction.SERVER
    # Not listening: the client's end, unless only the other end is on an ephemeral port (a
    # server that closed its listener). A server may itself listen on an ephemeral port (a test's
    # free port): then the client's end, also ephemeral, must still say client.
    if local_port not in EPHEMERAL_PORTS and remote_port in EPHEMERAL_PORTS:
        return Direction.SERVER
    return Direction.CLIENT


def edges(table: SocketTable, book: AddressBook) -> dict[Edge, int]:
    """Established connections → edge → count. Connections inside the namespace (over
    loopback) are not edges: they do not leave it."""
    listen = table.tcp_listen_ports()
    out: dict[Edge, int] = {}
    for c in table.connections:
        if is_loopback(c.remote):
            continue
        peer = book.resolve(c.remote)
        if direction(c.local_port, c.remote_port, listen) is Direction.SERVER:
            key = Edge(Direction.SERVER, peer, c.local_port)
        else:
            key = Edge(Direction.CLIENT, peer, c.remote_port)
        out[key] = out.get(key, 0) + 1
    return out


class PortState(StrEnum):
    LISTENING = "listening"  # something listens on an address the published port reaches
    LOOPBACK_ONLY = "loopback_only"  # only on 127.0.0.1 / ::1: Docker's forwarding cannot reach it
    NOT_LISTENING = "not_listening"


def published_port_state(port: PublishedPort, listeners: Iterable[Listener]) -> PortState:
    """Does anything inside the container's namespace take what the published port forwards?

    Docker forwards to the container's address on its network, so a wildcard or interface
    address listener takes it and a loopback-only one does not.
    """
    loopback = False
    for lst in listeners:
        if lst.protocol != port.protocol or lst.port != port.container_port:
            continue
        if not lst.loopback:
            return PortState.LISTENING
        loopback = True
    return PortState.LOOPBACK_ONLY if loopback else PortState.NOT_LISTENING
