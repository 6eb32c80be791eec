"""Pure parser of a namespace's socket tables: net/tcp, net/tcp6, net/udp, net/udp6.

From the text the kernel prints (net/ipv4/tcp_ipv4.c get_tcp4_sock, net/ipv6/tcp_ipv6.c
get_tcp6_sock, net/ipv4/udp.c udp4_format_sock) to what the connection tier needs: what
listens (TCP LISTEN, UDP bound and unconnected), the established TCP connections, and the
count per TCP state. No I/O here: tested from captured and hand-written tables.

A line, after the header:

    sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid ...
     0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 ...

Addresses are the raw bytes of the address printed as 32-bit words in the host's byte order
(%08X each; one word for IPv4, four for IPv6); ports are printed as numbers (%04X).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from functools import lru_cache

from agent.procnet import TCP_STATES

_ESTABLISHED = "01"
_LISTEN = "0A"
_UDP_UNCONNECTED = "07"  # TCP_CLOSE: a UDP socket that is bound but not connected
# Docker's embedded DNS resolver listens on 127.0.0.11 in every container of a user-defined
# network (dockerd creates the sockets there and DNATs port 53 to them); not the app's.
DOCKER_DNS = "127.0.0.11"
# The kernel's default net.ipv4.ip_local_port_range: the ports it picks for a client's socket
# (connect() without bind(), or sendto() on an unbound UDP socket). The sysctl is per namespace
# and not readable from outside it, so the default stands for all.
EPHEMERAL_PORTS = range(32768, 61000)


@dataclass(frozen=True, slots=True)
class Listener:
    protocol: str  # "tcp" or "udp"
    address: str  # "0.0.0.0", "::", "127.0.0.1", an interface address
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.address)

    @property
    def wildcard(self) -> bool:
        return self.address in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class Connection:
    """One established TCP connection as seen from this namespace."""

    local: str
    local_port: int
    remote: str
    remote_port: int


@dataclass(slots=True)
class SocketTable:
    """One namespace's sockets; parse_tcp / parse_udp add into it (v4 and v6 share a table)."""

    listeners: dict[Listener, int] = field(default_factory=dict)  # -> sockets (SO_REUSEPORT: >1)
    connections: list[Connection] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TCP_STATES.values(), 0))

    def tcp_listen_ports(self) -> set[int]:
        return {lst.port for lst in self.listeners if lst.protocol == "tcp"}


@lru_cache(maxsize=8192)
def decode_address(hexaddr: str) -> str:
    """The kernel's hex address as text; IPv4-mapped IPv6 (::ffff:a.b.c.d) as plain IPv4."""
    if len(hexaddr) == 8:
        # Packing the word in native order gives back the address's bytes (network order).
        return socket.inet_ntop(socket.AF_INET, struct.pack("=I", int(hexaddr, 16)))
    if len(hexaddr) != 32:
        raise ValueError(f"not an address: {hexaddr!r}")
    raw = struct.pack("=4I", *(int(hexaddr[i : i + 8], 16) for i in range(0, 32, 8)))
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


@lru_cache(maxsize=4096)
def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _endpoint(field_: str) -> tuple[str, int]:
    addr, _, port = field_.partition(":")
    return decode_address(addr), int(port, 16)


def parse_tcp(text: str, into: SocketTable | None = None) -> SocketTable:
    """net/tcp or net/tcp6 → listeners, established connections and the per-state counts."""
    table = into if into is not None else SocketTable()
    states = table.states
    listeners = table.listeners
    conns = table.connections
    for line in text.split("\n")[1:]:
        f = line.split(None, 4)
        if len(f) < 4:
            continue
        st = f[3]
        name = TCP_STATES.get(st)
        if name is None:
            continue
        states[name] = states.get(name, 0) + 1
        if st == _ESTABLISHED:
            la, lp = _endpoint(f[1])
            ra, rp = _endpoint(f[2])
            conns.append(Connection(la, lp, ra, rp))
        elif st == _LISTEN:
            la, lp = _endpoint(f[1])
            if la != DOCKER_DNS:
                key = Listener("tcp", la, lp)
                listeners[key] = listeners.get(key, 0) + 1
    return table


def parse_udp(text: str, into: SocketTable | None = None) -> SocketTable:
    """net/udp or net/udp6 → the bound, unconnected sockets (what receives datagrams on a port),
    except on ephemeral ports (EPHEMERAL_PORTS)."""
    table = into if into is not None else SocketTable()
    listeners = table.listeners
    for line in text.split("\n")[1:]:
        f = line.split(None, 4)
        if len(f) < 4 or f[3] != _UDP_UNCONNECTED:
            continue
        if not f[2].endswith(":0000"):  # a remote port: connected, a client's socket
            continue
        la, lp = _endpoint(f[1])
        # An ephemeral port is a client's socket that sent without connecting (a statsd or syslog
        # library): one series per such socket would follow sockets, not listeners.
        if la != DOCKER_DNS and lp and lp not in EPHEMERAL_PORTS:
            key = Listener("udp", la, lp)
            listeners[key] = listeners.get(key, 0) + 1
    return table


def parse_fib_trie_local(text: str) -> set[str]:
    """net/fib_trie → the namespace's own IPv4 addresses (the "/32 host LOCAL" leaves).

    A leaf is a `|-- a.b.c.d` line followed by one line per route through it; `/32 host LOCAL`
    is an address configured on an interface of this namespace (net/ipv4/fib_trie.c).
    """
    out: set[str] = set()
    leaf = ""
    for line in text.split("\n"):
        s = line.strip()
        if s.startswith("|-- "):
            leaf = s[4:]
        elif s.startswith("/32 host LOCAL") and leaf:
            out.add(leaf)
    return out
