"""Pure parsers for the kernel's per-namespace network files, named after them.

Each takes the file's text and returns plain values; no I/O here, so they are tested from
captured bytes (tests/data/proc). Formats: net/dev (net/core/net-procfs.c), net/snmp and
net/netstat (net/ipv4/proc.c: header line of names, then a line of values, per section),
net/snmp6 (name value per line), net/sockstat{,6}, net/route, net/tcp{,6}.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple


class DevCounters(NamedTuple):
    """The net/dev columns exported, of the 16 after "iface:" (receive, then transmit). A
    NamedTuple, not a dataclass: agent/_procnet.c builds one per interface per collection without
    a Python call (a frozen dataclass's __init__ cost more than parsing the line)."""

    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


def parse_net_dev(text: str) -> dict[str, DevCounters]:
    """net/dev → interface name → counters. Skips the two header lines."""
    out: dict[str, DevCounters] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        v = rest.split()
        if len(v) < 16:
            continue
        out[name.strip()] = DevCounters(
            rx_bytes=int(v[0]),
            rx_packets=int(v[1]),
            rx_errors=int(v[2]),
            rx_dropped=int(v[3]),
            tx_bytes=int(v[8]),
            tx_packets=int(v[9]),
            tx_errors=int(v[10]),
            tx_dropped=int(v[11]),
        )
    return out


def parse_net_snmp(text: str) -> dict[str, dict[str, int]]:
    """net/snmp or net/netstat → section ("Tcp", "TcpExt", "Udp"...) → field → value.

    Each section is two lines with the same prefix: names, then values.
    """
    out: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        sec, _, keys = names.partition(":")
        sec2, _, vals = values.partition(":")
        if sec != sec2:
            continue
        out[sec] = {k: int(v) for k, v in zip(keys.split(), vals.split(), strict=False)}
    return out


# header line -> field -> column; the kernel prints the same header every time, so the
# name lookup is done once per distinct header, not per scrape.
_HEADER_INDEX: dict[str, dict[str, int]] = {}


def pick_net_snmp(text: str, wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
    """Like parse_net_snmp, but converts only the `wanted` section fields (the hot path).

    net/netstat's TcpExt alone has over a hundred fields; we export five of them.
    """
    out: dict[str, dict[str, int]] = {}
    lines = text.split("\n")
    for i in range(0, len(lines) - 1, 2):
        names = lines[i]
        sec, _, _ = names.partition(":")
        fields = wanted.get(sec)
        if fields is None:
            continue
        idx = _HEADER_INDEX.get(names)
        if idx is None:
            idx = {k: j for j, k in enumerate(names.split()[1:])}
            if len(_HEADER_INDEX) < 64:
                _HEADER_INDEX[names] = idx
        vals = lines[i + 1].split()[1:]
        got: dict[str, int] = {}
        for f in fields:
            j = idx.get(f)
            if j is not None and j < len(vals):
                got[f] = int(vals[j])
        out[sec] = got
    return out


def pick_net_snmp6(text: str, prefix: str) -> dict[str, int]:
    """The fields of net/snmp6 that start with `prefix` (e.g. "Udp6"), prefix removed."""
    start = text.find("\n" + prefix)
    if start < 0:
        return {}
    out: dict[str, int] = {}
    for line in text[start + 1 :].split("\n"):
        if not line.startswith(prefix):
            break
        name, _, value = line.partition(" ")
        if name[len(prefix)].isupper():  # Udp6InDatagrams, not UdpLite6...
            out[name[len(prefix) :]] = int(value)
    return out


def parse_net_snmp6(text: str) -> dict[str, int]:
    """net/snmp6 → field → value (one "Name value" pair per line)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = int(parts[1])
    return out


def parse_sockstat(text: str, wanted: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, int]]:
    """net/sockstat{,6} → protocol ("TCP", "UDP", "TCP6"...) → field ("inuse", "tw"...) → value;
    only the protocols and fields in `wanted` if given (the others' values are not converted)."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        proto, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = None
        if wanted is not None:
            fields = wanted.get(proto)
            if fields is None:
                continue
        toks = rest.split()
        out[proto] = {
            toks[i]: int(toks[i + 1])
            for i in range(0, len(toks) - 1, 2)
            if fields is None or toks[i] in fields
        }
    return out


@dataclass(frozen=True, slots=True)
class Route:
    iface: str
    network: ipaddress.IPv4Network
    gateway: str


def parse_net_route(text: str) -> list[Route]:
    """net/route (IPv4 FIB, little-endian hex) → routes. Connected routes have gateway 0.0.0.0."""
    out: list[Route] = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        try:
            dest = socket.inet_ntoa(struct.pack("<I", int(f[1], 16)))
            gw = socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
            mask = socket.inet_ntoa(struct.pack("<I", int(f[7], 16)))
            net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        except ValueError:
            continue
        out.append(Route(iface=f[0], network=net, gateway=gw))
    return out


def parse_if_inet6(text: str) -> dict[str, list[ipaddress.IPv6Interface]]:
    """net/if_inet6 → interface → its IPv6 addresses with prefix length."""
    out: dict[str, list[ipaddress.IPv6Interface]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 6:
            continue
        addr = ":".join(f[0][i : i + 4] for i in range(0, 32, 4))
        try:
            out.setdefault(f[5], []).append(ipaddress.IPv6Interface(f"{addr}/{int(f[2], 16)}"))
        except ValueError:
            continue
    return out


# net/tcp "st" column codes (include/net/tcp_states.h).
TCP_STATES: dict[str, str] = {
    "01": "established",
    "02": "syn_sent",
    "03": "syn_recv",
    "04": "fin_wait1",
    "05": "fin_wait2",
    "06": "time_wait",
    "07": "close",
    "08": "close_wait",
    "09": "last_ack",
    "0A": "listen",
    "0B": "closing",
    "0C": "new_syn_recv",
}


def count_tcp_states(text: str, into: dict[str, int] | None = None) -> dict[str, int]:
    """net/tcp or net/tcp6 → state name → socket count (adds into `into` to merge v4 and v6)."""
    out = into if into is not None else dict.fromkeys(TCP_STATES.values(), 0)
    for line in text.splitlines()[1:]:
        f = line.split(None, 4)
        if len(f) >= 4:
            state = TCP_STATES.get(f[3])
            if state is not None:
                out[state] = out.get(state, 0) + 1
    return out


@dataclass(frozen=True, slots=True)
class Socket:
    """One line of net/tcp, net/tcp6, net/udp or net/udp6."""

    local: ipaddress.IPv4Address | ipaddress.IPv6Address
    local_port: int
    remote: ipaddress.IPv4Address | ipaddress.IPv6Address
    remote_port: int
    state: str  # TCP_STATES name; for UDP "close" is an unconnected (bound) socket


def _hex_address(h: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The kernel prints addresses as 32-bit words in host byte order (%08X of a __be32)."""
    raw = bytes.fromhex(h)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw)


def parse_net_sockets(text: str) -> list[Socket]:
    """net/tcp{,6} or net/udp{,6} → sockets with their addresses, ports and state."""
    out: list[Socket] = []
    for line in text.splitlines()[1:]:
        f = line.split(None, 4)
        if len(f) < 4:
            continue
        try:
            lh, _, lp = f[1].partition(":")
            rh, _, rp = f[2].partition(":")
            out.append(
                Socket(
                    _hex_address(lh), int(lp, 16), _hex_address(rh), int(rp, 16), TCP_STATES.get(f[3], f[3])
                )
            )
        except ValueError:
            continue
    return out
