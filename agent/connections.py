"""The connection tier: per network namespace, what listens and who talks to whom.

    inventory snapshot ─┐
    swarm view ─────────┼─► ConnectionCollector.sweep() ─► ConnectionsResult (immutable)
    host addresses ─────┘     per namespace: net/tcp, tcp6, udp, udp6        ▲ rendered at scrape
                              parse (socktable) → resolve peers (peers)      │ time, never read there

Reading net/tcp{,6} costs the kernel a walk of the global socket hash per namespace (about a
millisecond each on the reference machine, growing with every socket on the host: see
bench/connections.py), so this runs on its own interval in a worker thread and never on the
scrape path. A namespace is read once, through its owner, like the traffic counters.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agent import procnet
from agent.collector import Key
from agent.docker.models import Container, Network, Service
from agent.hostfs import HostFS
from agent.inventory import Snapshot

# One raw reader of /proc files for both collectors (its _Gone: the process went away).
from agent.netstats import NsKey, _Gone, _read, group_namespaces, owner_of
from agent.peers import AddressBook, Edge, address_book, edges
from agent.socktable import Listener, SocketTable, parse_fib_trie_local, parse_tcp, parse_udp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NamespaceSockets:
    """One namespace's listeners and edges, attributed to its owner (None: the host namespace)."""

    inode: NsKey
    owner: Container | None
    listeners: Mapping[Listener, int]
    edges: Mapping[Edge, int]
    states: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ConnectionsResult:
    namespaces: tuple[NamespaceSockets, ...] = ()
    errors: int = 0  # namespaces whose tables could not be read (not counting vanished ones)
    vanished: int = 0
    duration: float = 0.0  # wall seconds of the sweep
    cpu: float = 0.0  # CPU seconds of the sweeping thread
    book: AddressBook | None = None
    by_owner: Mapping[str, NamespaceSockets] = field(default_factory=dict)  # container id -> ns
    tcp_states: bool = False  # --collector.tcp-states is on too: export the states read here

    @property
    def by_netns(self) -> Mapping[NsKey, Mapping[str, int]]:
        """TCP sockets by state per namespace key, when --collector.tcp-states asks for them
        (netstats.namespaces() attaches them: this sweep already read net/tcp{,6}); else none."""
        return {ns.inode: ns.states for ns in self.namespaces} if self.tcp_states else {}


CONNECTIONS: Key[ConnectionsResult] = Key("connections")


class SwarmSource(Protocol):
    """Where swarm services come from (agent/swarm.py's SwarmView): immutable tuples, replaced
    whole by their owner on the event loop, so reading them from the sweep's thread is safe."""

    services: tuple[Service, ...]
    networks: tuple[Network, ...]  # swarm-scoped networks, verbose: their services' VIPs, tasks


class ConnectionCollector:
    """The tier as a collector: `collect(snapshot)` returns an immutable ConnectionsResult with
    an `errors` count; registered in agent/collectors.py as a background unit."""

    key = CONNECTIONS

    def __init__(
        self,
        fs: HostFS,
        *,
        sidecar: bool = False,
        host_netns: bool = True,
        keep_external_ips: bool = False,
        swarm: SwarmSource | None = None,
        tcp_states: bool = False,
    ) -> None:
        self.tcp_states = tcp_states  # also publish the TCP states (the tcp_states tier is off)
        self.fs = fs  # a sidecar's own /proc (own_procfs) is chosen by build_collectors
        self.sidecar = sidecar
        self.host_netns = host_netns  # build_collectors: never in sidecar mode
        self.keep_external_ips = keep_external_ips
        self.swarm = swarm

    def collect(self, snap: Snapshot) -> ConnectionsResult:
        """One sweep for an inventory snapshot (blocking: run it in a worker thread)."""
        nets = [*snap.networks.values(), *(self.swarm.networks if self.swarm is not None else ())]
        services = self.swarm.services if self.swarm is not None else ()
        return self.sweep(snap.node, snap.containers.values(), nets, services)

    def _targets(self, cs: list[Container]) -> tuple[list[tuple[NsKey, int, Container | None]], int]:
        """(namespace, a pid in it, its owner) to read, and how many containers vanished.

        The grouping is the traffic collector's (netstats.group_namespaces / owner_of): one read
        per namespace, through its owner; the host namespace through pid 1."""
        g = group_namespaces(self.fs, cs, sidecar=self.sidecar)
        targets: list[tuple[NsKey, int, Container | None]] = []
        for ino, members in g.groups.items():
            if ino != g.host_key:
                own = owner_of(members)
                targets.append((ino, own.pid, own))
        if self.host_netns:
            targets.append((g.host_key, 1, None))
        return targets, g.vanished

    def host_addresses(self) -> set[str]:
        """The host namespace's own addresses (IPv4 from net/fib_trie, IPv6 from net/if_inet6)."""
        if self.sidecar:
            return set()
        net = f"{self.fs.procfs}/1/net/"
        out: set[str] = set()
        try:
            out |= parse_fib_trie_local(_read(net + "fib_trie"))
        except (OSError, _Gone) as exc:
            log.debug("host addresses: %s", exc)
        try:
            for addrs in procnet.parse_if_inet6(_read(net + "if_inet6")).values():
                out.update(str(a.ip) for a in addrs)
        except (OSError, _Gone):
            pass  # IPv6 disabled on the host
        return out

    def read_table(self, pid: int) -> SocketTable:
        """One namespace's socket tables (through a pid in it); raises _Gone when it vanished.

        Reading net/tcp or net/tcp6 walks the whole host's established hash, whatever the
        namespace holds (~2 ms each here): a table is read only when net/sockstat{,6} says the
        namespace has sockets of that kind (TIME-WAIT is counted for v4 and v6 together).
        """
        net = f"{self.fs.procfs}/{pid}/net/"
        counts = procnet.parse_sockstat(_read(net + "sockstat"))
        with contextlib.suppress(_Gone):  # IPv6 disabled in this namespace: no v6 files at all
            counts.update(procnet.parse_sockstat(_read(net + "sockstat6")))
        tw = counts.get("TCP", {}).get("tw", 0)
        table = SocketTable()
        for proto, name, parse in (
            ("TCP", "tcp", parse_tcp),
            ("UDP", "udp", parse_udp),
            ("TCP6", "tcp6", parse_tcp),
            ("UDP6", "udp6", parse_udp),
        ):
            inuse = counts.get(proto, {}).get("inuse", 0)
            if inuse or (tw and proto.startswith("TCP")):
                parse(_read(net + name), table)
        return table

    def sweep(
        self,
        node: str,
        containers: Iterable[Container],
        networks: Iterable[Network] = (),
        services: Iterable[Service] = (),
    ) -> ConnectionsResult:
        """Read every namespace once and resolve its connections (blocking: run in a thread)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        cs = list(containers)
        book = address_book(node, cs, networks, services, self.host_addresses(), self.keep_external_ips)
        targets, vanished = self._targets(cs)
        errors = 0
        out: list[NamespaceSockets] = []
        for ino, pid, owner in targets:
            try:
                table = self.read_table(pid)
            except _Gone:
                vanished += 1
                continue
            except (OSError, ValueError) as exc:
                errors += 1
                log.warning("reading the sockets of %s failed: %s", owner.name if owner else "the host", exc)
                continue
            out.append(NamespaceSockets(ino, owner, dict(table.listeners), edges(table, book), table.states))
        res = ConnectionsResult(
            namespaces=tuple(out),
            errors=errors,
            vanished=vanished,
            duration=time.perf_counter() - t0,
            cpu=time.thread_time() - c0,
            book=book,
            by_owner={ns.owner.id: ns for ns in out if ns.owner is not None},
            tcp_states=self.tcp_states,
        )
        log.debug(
            "connection sweep: %d namespaces, %d errors, %.3f s CPU, %.3f s wall",
            len(out),
            errors,
            res.cpu,
            res.duration,
        )
        return res
