"""Per network namespace: find each container's namespace, dedupe shared ones, read and parse.

Collection is per namespace, not per container: containers are grouped by the inode of
<procfs>/<pid>/ns/net. A group is reported once, attributed to its owner (the member that
did not join another's namespace); `container:X` joiners and host-network containers are
members only (see dockwatch_container_info). Nothing here needs privileges or setns: the
kernel shows <pid>'s namespace in <procfs>/<pid>/net/*.

The host's namespace is recognised however it is reached: `/proc/1`, a host-network
container's own link, or a `container:X` joiner of one (directly or through other joiners).
`/proc/1/ns/net` is often unreadable (ptrace rules; the documented `--cap-drop ALL` agent),
while a joiner's own link may be readable: it must still land in the host's group.

Two collectors (agent/collector.py) read namespaces: NetCollector (counters, every scrape) and
TcpStatesCollector (the opt-in net/tcp{,6} tier, on its own interval). Both are blocking file
I/O and run in a worker thread, never on the event loop; neither shares state with the other.
With the connection tier on (agent/connections.py) its sweep reads net/tcp{,6} already, so the
TCP-states collector is not registered and namespaces() takes the states from that sweep.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from agent import fastproc, procnet
from agent.collector import Collection, Key
from agent.docker.models import Container, Network
from agent.fastproc import has_ipv6_text, read_bytes
from agent.hostfs import HostFS
from agent.inventory import Snapshot
from agent.nsfiles import Budget, Kept, Opened, default_budget

log = logging.getLogger(__name__)

HOST_NETWORK = "host"
# A namespace's key: the inode of its nsfs file, or a stand-in where that may not be read.
NsKey = int | str
HOST_KEY: NsKey = "host"
_MAX_JOIN_DEPTH = 8  # container:X chains longer than this are a loop, not a topology


@dataclass(frozen=True, slots=True)
class Membership:
    """How one container relates to the namespace it is in (for the info metric)."""

    container: Container
    inode: NsKey
    owner: Container | None  # None: the host namespace


@dataclass(frozen=True, slots=True)
class NetnsSample:
    """One namespace's counters, attributed to `owner` (None for the host namespace)."""

    inode: NsKey
    owner: Container | None
    devices: Mapping[str, procnet.DevCounters]
    networks: Mapping[str, str]  # interface -> Docker network name ("" when unknown)
    mib: Mapping[str, Mapping[str, int]]  # net/snmp + net/netstat sections
    udp6: Mapping[str, int]
    sockstat: Mapping[str, Mapping[str, int]]
    tcp_states: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class CollectResult:
    """The netns collector's result: one sample per namespace, and every container's membership."""

    samples: Sequence[NetnsSample] = ()
    members: Sequence[Membership] = ()
    errors: int = 0
    vanished: int = 0
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class TcpStates:
    """The TCP-states collector's result: namespace key -> state -> sockets."""

    by_netns: Mapping[NsKey, Mapping[str, int]] = field(default_factory=dict)
    errors: int = 0


NETNS: Key[CollectResult] = Key("netns")
TCP_STATES: Key[TcpStates] = Key("tcp_states")


class _Gone(Exception):
    """The process (so maybe the namespace) went away between listing and reading."""


def _read(path: str, single: bool = False) -> str:
    """The whole file as text (fastproc.read_bytes: raw reads, `single` for single_open files);
    _Gone where the process went away."""
    try:
        return read_bytes(path, single).decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise _Gone(path) from exc


IPV6_MODES = ("auto", "always", "never")


has_ipv6 = has_ipv6_text  # the name the tests and agent/connections.py know


# --- grouping ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Grouping:
    """Containers by network namespace, the host's key among them, and how many vanished."""

    groups: Mapping[NsKey, Sequence[Container]]
    vanished: int
    host_key: NsKey


def own_procfs(fs: HostFS) -> HostFS:
    """What a sidecar reads: its own process's namespace through its own /proc; the configured
    procfs (/host/proc in the image) is the host's, where our pid means nothing."""
    return HostFS(procfs=Path("/proc"), docker_root=fs.docker_root)


def _inode(fs: HostFS, pid: int) -> int | None:
    try:
        return fs.netns_inode(pid)
    except OSError:  # denied (ptrace rules) or gone
        return None


def group_namespaces(
    fs: HostFS,
    containers: Iterable[Container],
    *,
    sidecar: bool = False,
    known: dict[tuple[str, int], NsKey] | None = None,
) -> Grouping:
    """Namespace key -> members; the host's key; how many containers vanished.

    `known`: the caller's own memo of (container id, pid) -> key from its last call, updated
    here to this call's containers. A running process keeps its namespace, so only new pids
    are stat()ed: at 300 containers the stat()s were most of a change-driven collection. A
    restarted container has a new pid; a vanished one is found when its files are read.

    The key is the inode of <pid>/ns/net where we may read it. Where we may not (ptrace rules
    deny it for non-dumpable processes and for a capability-less agent), Docker's own word
    decides: `host` is the host namespace and `container:X` is X's. Docker's word also puts a
    joiner of a host-network container in the host's group, even when the joiner's own link is
    readable and /proc/1's is not: then both would be "the host" under two different keys.
    """
    cs = list(containers)
    by_ref: dict[str, Container] = {}
    for c in cs:
        by_ref[c.id] = by_ref[c.name] = c

    def in_host_netns(c: Container) -> bool:
        """Docker says so: host network mode, or a chain of container:X joins ending at one."""
        for _ in range(_MAX_JOIN_DEPTH):
            if c.host_network:
                return True
            target = by_ref.get(c.joins) if c.joins else None
            if target is None:
                return False
            c = target
        return False

    host = {c.id for c in cs if in_host_netns(c)}
    # In a sidecar, pid 1 is in the app's namespace, not the host's: never call it "host".
    host_ino = None if sidecar else _inode(fs, 1)
    if host_ino is None and not sidecar:
        # /proc/1 is hidden: a host-namespace container whose link we may read names the inode,
        # so containers reached only by their own link (e.g. a joiner of a joiner) land here too.
        host_ino = next((i for c in cs if c.id in host and (i := _inode(fs, c.pid)) is not None), None)
    host_key: NsKey = host_ino if host_ino is not None else HOST_KEY
    keys: dict[str, NsKey] = {}
    vanished = 0

    def key_of(c: Container, depth: int = 0) -> NsKey | None:
        if c.id in keys:
            return keys[c.id]
        if c.id in host:
            return host_key
        k0 = known.get((c.id, c.pid)) if known is not None else None
        if k0 is not None:
            keys[c.id] = k0
            return k0
        try:
            k: NsKey | None = fs.netns_inode(c.pid)
        except PermissionError:
            target = by_ref.get(c.joins) if c.joins and depth < _MAX_JOIN_DEPTH else None
            k = key_of(target, depth + 1) if target is not None else f"ns:{c.id}"
        except OSError:  # ENOENT/ESRCH: the process is gone
            k = None
        if k is not None:
            keys[c.id] = k
        return k

    groups: dict[NsKey, list[Container]] = {}
    for c in cs:
        k = key_of(c)
        if k is None:
            vanished += 1
            continue
        groups.setdefault(k, []).append(c)
    if known is not None:
        # Not the host's members: host_key may change (e.g. /proc/1 becoming readable).
        fresh = {(c.id, c.pid): k for c in cs if (k := keys.get(c.id)) is not None and k != host_key}
        known.clear()
        known.update(fresh)
    return Grouping(groups, vanished, host_key)


def owner_of(members: Sequence[Container]) -> Container:
    """The member that created the namespace: not a joiner; else the oldest member."""
    own = [c for c in members if not c.joins and not c.host_network]
    return min(own or members, key=lambda c: (c.created, c.id))


# --- the counters collector ----------------------------------------------------------------------
# Reads of a namespace whose bytes keep changing between two lookups of its process (_sample).
ALIVE_EVERY = 4


class NetCollector:
    """Every namespace's counters (net/dev, snmp, netstat, sockstat, snmp6) and the memberships."""

    key = NETNS

    def __init__(
        self,
        fs: HostFS,
        *,
        loopback: bool = False,
        host_netns: bool = True,
        ignore: re.Pattern[str] | None = None,
        host_ignore: re.Pattern[str] | None = None,
        sidecar: bool = False,
        mib_fields: Mapping[str, Sequence[str]] | None = None,
        sockstat_fields: Mapping[str, Sequence[str]] | None = None,
        ipv6: str = "auto",
        workers: int = 1,
        parser: fastproc.Parser | None = None,
        keep_open: bool = True,
        budget: Budget | None = None,
    ) -> None:
        """`mib_fields`: the net/snmp and net/netstat fields to convert, by section. The exporter
        declares them with its metrics (exporters/prometheus/names.py MIB_FIELDS) and the
        composition root hands them in, so agent/ need not import exporters/. None converts
        every field: the same values, slower (net/netstat's TcpExt alone has over a hundred).

        `sockstat_fields`: likewise for net/sockstat{,6}, by protocol; None keeps every field.

        `ipv6`: when to read net/sockstat6 and net/snmp6 (a quarter of the kernel's time per
        namespace, bench/RESULTS.md): "auto" only where net/if_inet6 shows IPv6 beyond lo,
        "always", or "never". Where they are not read, the IPv6 series are absent, not 0.

        `workers`: namespaces are read by this many threads at once; the samples keep the
        namespaces' order. 1 (the default): serially, in the caller's thread. More threads were
        meant to overlap one thread's kernel reads with another's parsing, but measured on real
        /proc (bench/pool.py, 200 namespaces, 2 cores, quiet) 3 threads cost 2x the CPU and 1.7x
        the wall time of one: the GIL hand-offs cost more than the overlap gains.

        `parser`: how each file is read and parsed (agent/fastproc.py); None: the C module where
        it was built (--collector.parser=auto).

        `keep_open`: keep each namespace's files open between collections and read them again
        from offset 0 (agent/nsfiles.py: ~35 % less kernel CPU, ~5 KB of kernel memory a file);
        `budget`: how many descriptors that may use (None: half the open-files limit)."""
        if ipv6 not in IPV6_MODES:
            raise ValueError(f"ipv6: expected one of {', '.join(IPV6_MODES)}, not {ipv6!r}")
        self.ipv6 = ipv6
        self.parser = parser if parser is not None else fastproc.choose()
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        self.fs = fs  # a sidecar's own /proc (own_procfs) is chosen by build_collectors
        self.sidecar = sidecar
        self.mib_fields = mib_fields
        self.sockstat_fields = sockstat_fields
        self.loopback = loopback
        self.host_netns = host_netns
        self.ignore = ignore
        self.host_ignore = host_ignore
        # (inode, owner's networks) -> interface -> network; routes only change with attachments.
        # Private to this collector, which the registry never runs twice at once.
        self._netmap_cache: dict[tuple[NsKey, tuple[object, ...]], dict[str, str]] = {}
        # The last run's samples by namespace, for collect_changed() (same privacy as above).
        self._last: dict[NsKey, NetnsSample] = {}
        self._inodes: dict[tuple[str, int], NsKey] = {}  # group_namespaces' memo (same privacy)
        # (namespace key, pid read through) -> its files kept open; closed when the namespace is
        # not in a collection, or by release_idle (same privacy: the registry's unit lock).
        self.keep_open = keep_open
        self._budget = budget if budget is not None else Budget(default_budget())
        self._kept: dict[tuple[NsKey, int], Kept] = {}
        self._last_end = time.monotonic()
        # A collector dropped without close() (a tool, a test) still closes its files.
        weakref.finalize(self, _close_kept, self._kept, frozenset())

    def close(self) -> None:
        """Stop the reader threads and close the kept files (at shutdown; a later collect would
        start them again). Not during a collection: the registry holds this unit's lock."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        _close_kept(self._kept, frozenset())

    def release_idle(self, idle: float) -> int:
        """Close every kept file when nothing was collected for `idle` seconds: the namespaces of
        containers gone since are not held alive while nobody scrapes. How many were closed."""
        if time.monotonic() - self._last_end < idle:
            return 0
        return _close_kept(self._kept, frozenset())

    @property
    def kept_files(self) -> int:
        """Descriptors held open now, over every namespace."""
        return sum(len(k.fds) + (k.pid_fd is not None) for k in self._kept.values())

    def collect(self, snap: Snapshot) -> CollectResult:
        """Collector entry point: every namespace of the snapshot's containers, read once."""
        return self.collect_namespaces(snap.containers.values(), snap.networks)

    def collect_changed(self, snap: Snapshot) -> CollectResult:
        """Like collect(), but a namespace the last run read, with the same owner (so the same
        interfaces and networks), keeps that sample: only new namespaces are read. For interval
        mode's collection on an inventory change; its timer still reads everything."""
        return self.collect_namespaces(snap.containers.values(), snap.networks, reuse=self._last)

    def collect_namespaces(
        self,
        containers: Iterable[Container],
        networks: Mapping[str, Network],
        reuse: Mapping[NsKey, NetnsSample] | None = None,
    ) -> CollectResult:
        t0 = time.perf_counter()
        samples: list[NetnsSample] = []
        members: list[Membership] = []
        g = group_namespaces(self.fs, containers, sidecar=self.sidecar, known=self._inodes)
        errors, vanished = 0, g.vanished
        if self.sidecar and vanished:  # see _Gone below: for a sidecar that is an error
            errors += vanished
            log.warning("sidecar: cannot read this process's network namespace under %s", self.fs.procfs)
        # (key, pid, owner) to read, in the groups' order; a reused sample stands in its place.
        jobs: list[NetnsSample | tuple[NsKey, int, Container | None]] = []
        for ino, group in g.groups.items():
            is_host = ino == g.host_key
            owner = None if is_host else owner_of(group)
            for c in group:
                members.append(Membership(c, ino, owner))
            if is_host:
                continue  # the host namespace is read once below, not per member
            old = reuse.get(ino) if reuse is not None else None
            if old is not None and old.owner == owner:
                jobs.append(old)
            else:
                jobs.append((ino, owner.pid if owner else 1, owner))
        if self.host_netns:
            old_host = reuse.get(g.host_key) if reuse is not None else None
            jobs.append(
                old_host if old_host is not None and old_host.owner is None else (g.host_key, 1, None)
            )
        try:
            got_all = self._read_all(jobs, networks)
        finally:
            # Files of namespaces not in this collection are closed: their containers left.
            live = {
                (j.inode, j.owner.pid if j.owner else 1) if isinstance(j, NetnsSample) else (j[0], j[1])
                for j in jobs
            }
            _close_kept(self._kept, live)
            self._last_end = time.monotonic()
        for job, got in zip(jobs, got_all, strict=True):
            if isinstance(got, NetnsSample):
                samples.append(got)
                continue
            if not isinstance(got, OSError | ValueError | IndexError | _Gone):
                raise got  # our own bug: the registry fails this collector alone
            owner = job[2] if isinstance(job, tuple) else None
            if owner is None:  # the host namespace: never "vanished"
                errors += 1
                log.warning("reading the host namespace failed: %s", got)
            elif isinstance(got, _Gone):
                if self.sidecar:  # our own process cannot vanish: the files are not where we look
                    errors += 1
                    log.warning("sidecar: cannot read this process's namespace: %s", got)
                else:
                    vanished += 1
            else:
                errors += 1
                log.warning("reading namespace of %s failed: %s", owner.name, got)
        self._last = {smp.inode: smp for smp in samples}
        return CollectResult(tuple(samples), tuple(members), errors, vanished, time.perf_counter() - t0)

    def _read_all(
        self,
        jobs: Sequence[NetnsSample | tuple[NsKey, int, Container | None]],
        networks: Mapping[str, Network],
    ) -> list[NetnsSample | BaseException]:
        """Each job's sample (a reused one as it is) or what reading it raised, in the jobs' order."""

        def run(
            part: Sequence[NetnsSample | tuple[NsKey, int, Container | None]],
        ) -> list[NetnsSample | BaseException]:
            out: list[NetnsSample | BaseException] = []
            for job in part:
                if isinstance(job, NetnsSample):
                    out.append(job)
                    continue
                try:
                    out.append(self._sample(job[0], job[1], job[2], networks))
                except Exception as exc:  # sorted out by the caller, in order
                    out.append(exc)
            return out

        todo = sum(1 for j in jobs if not isinstance(j, NetnsSample))
        if self.workers == 1 or todo < 2 * self.workers:
            return run(jobs)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="netns")
        # Interleaved parts (job i to part i % workers): equal work whatever the reuse pattern.
        parts = [jobs[i :: self.workers] for i in range(self.workers)]
        done = list(self._pool.map(run, parts))
        out: list[NetnsSample | BaseException] = []
        for i in range(len(jobs)):
            out.append(done[i % self.workers][i // self.workers])
        return out

    def _sample(
        self, ino: NsKey, pid: int, owner: Container | None, networks: Mapping[str, Network]
    ) -> NetnsSample:
        net = f"{self.fs.procfs}/{pid}/net/"
        kept: Kept | None = None
        if self.keep_open:
            kept = self._kept.get((ino, pid)) or self._kept.setdefault(
                (ino, pid), Kept(net, self.parser, self._budget)
            )
        parser = self.parser
        try:
            raw = parser.read_namespace(kept or Opened(net, parser), self.ipv6)
            if kept is not None:
                # Files whose bytes did not change since the last read give the same sample: an idle
                # namespace costs its reads and this hash (~2 µs for ~6 KB), not its parse, its
                # networks and its rendering (the same object is a hit in the renderer's cache).
                # A 64-bit keyed hash: a false match is a chance of 2^-64 a namespace a scrape.
                # net/sockstat is compared parsed: its kernel-wide fields move with any socket.
                stamp = hash((raw[0], raw[1], raw[2], raw[4], raw[6]))
                last: tuple[int, NetnsSample] | None = kept.memo
                # Kept files read on after their process exits: frozen, or still moving where the
                # namespace outlives it (Docker's sandbox with its veth on the bridge, while the
                # engine is down: broadcasts arrive). So the process is looked up (~5 µs) where
                # the bytes did not change, and at least every ALIVE_EVERY reads where they did:
                # a dead namespace is exported ALIVE_EVERY - 1 more times at most, then it is gone
                # as an open by path finds it.
                kept.unchecked += 1
                if last is None or last[0] == stamp or kept.unchecked >= ALIVE_EVERY:
                    kept.unchecked = 0
                    if not kept.alive():
                        raise ProcessLookupError(3, "gone", net)
                if last is not None and last[0] == stamp and last[1].owner is owner:
                    socks = parser.sockstat(raw[3], self.sockstat_fields)
                    if raw[5] is not None and raw[6] is not None:
                        socks.update(parser.sockstat(raw[5], self.sockstat_fields))
                    if socks == last[1].sockstat:
                        return last[1]
            dev, mib, sockstat, udp6 = parser.parse_namespace(raw, self.mib_fields, self.sockstat_fields)
        except BaseException as exc:
            # Whatever failed is opened afresh next time (a process gone halfway: its open files).
            kept = self._kept.pop((ino, pid), None)
            if kept is not None:
                kept.close()
            if isinstance(exc, FileNotFoundError | ProcessLookupError):
                raise _Gone(net) from exc
            raise
        ignore = self.host_ignore if owner is None else self.ignore
        devices = {
            name: ctr
            for name, ctr in dev.items()
            if (name != "lo" or self.loopback) and not (ignore and ignore.match(name))
        }
        if owner is None:
            netmap = dict.fromkeys(devices, HOST_NETWORK)
        else:
            netmap = self._networks(ino, pid, owner, devices, networks)
        sample = NetnsSample(ino, owner, devices, netmap, mib, udp6, sockstat)
        if kept is not None:
            kept.memo = (stamp, sample)
        return sample

    def _networks(
        self,
        ino: NsKey,
        pid: int,
        owner: Container,
        devices: Mapping[str, procnet.DevCounters],
        networks: Mapping[str, Network],
    ) -> dict[str, str]:
        """Interface -> Docker network, by matching connected routes to the networks' subnets.

        The container's own attachments (inspect) come first; engine networks the container
        is not attached to by name (docker_gwbridge, ingress) are the fallback.
        """
        key = (ino, owner.networks)
        cached = self._netmap_cache.get(key)
        if cached is not None and set(devices) <= set(cached):
            return cached
        subnets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        for att in owner.networks:
            for sub in (att.subnet, att.subnet6):
                if sub is not None:
                    subnets.append((sub, att.name))
        for n in networks.values():
            subnets.extend((sub, n.name) for sub in n.subnets)
        out = dict.fromkeys(devices, "")
        for route in procnet.parse_net_route(_read(f"{self.fs.procfs}/{pid}/net/route")):
            if route.iface in out and not out[route.iface] and route.gateway == "0.0.0.0":
                out[route.iface] = next((name for sub, name in subnets if sub == route.network), "")
        if any(not v for k, v in out.items() if k != "lo"):
            try:
                v6 = procnet.parse_if_inet6(_read(f"{self.fs.procfs}/{pid}/net/if_inet6"))
            except _Gone:
                v6 = {}
            for iface, addrs in v6.items():
                if iface in out and not out[iface]:
                    for a in addrs:
                        out[iface] = next((name for sub, name in subnets if a.network == sub), "")
                        if out[iface]:
                            break
        if "lo" in out:
            out["lo"] = ""
        if len(self._netmap_cache) > 4096:
            self._netmap_cache.clear()
        self._netmap_cache[key] = out
        return out


def _close_kept(kept: dict[tuple[NsKey, int], Kept], live: Set[tuple[NsKey, int]]) -> int:
    """Close the kept files of every namespace not in `live`; how many descriptors. A function,
    not a method: the collector's finalizer calls it too, without the collector."""
    closed = 0
    for key in [k for k in kept if k not in live]:
        f = kept.pop(key)
        closed += len(f.fds) + (f.pid_fd is not None)
        f.close()
    return closed


# --- the opt-in slow tier ---------------------------------------------------------------------
class TcpStatesCollector:
    """TCP sockets by state from net/tcp{,6}, once per namespace (milliseconds each: the kernel
    walks the global established hash), so it runs in the background on its own interval."""

    key = TCP_STATES

    def __init__(self, fs: HostFS, *, host_netns: bool = True, sidecar: bool = False) -> None:
        self.fs = fs  # a sidecar's own /proc (own_procfs) is chosen by build_collectors
        self.sidecar = sidecar
        self.host_netns = host_netns

    def collect(self, snap: Snapshot) -> TcpStates:
        g = group_namespaces(self.fs, snap.containers.values(), sidecar=self.sidecar)
        failed = 0
        fresh: dict[NsKey, Mapping[str, int]] = {}
        targets = [(ino, owner_of(m).pid) for ino, m in g.groups.items() if ino != g.host_key]
        if self.host_netns:
            targets.append((g.host_key, 1))
        for ino, pid in targets:
            try:
                counts = procnet.count_tcp_states(_read(f"{self.fs.procfs}/{pid}/net/tcp"))
                with contextlib.suppress(_Gone):  # IPv6 disabled in that namespace
                    procnet.count_tcp_states(_read(f"{self.fs.procfs}/{pid}/net/tcp6"), into=counts)
                fresh[ino] = MappingProxyType(counts)
            except _Gone:
                continue
            except (OSError, ValueError) as exc:
                failed += 1
                log.warning("reading TCP states of namespace %s failed: %s", ino, exc)
        return TcpStates(MappingProxyType(fresh), failed)


class _StatesByNetns(Protocol):
    """A result that carries TCP states per namespace: TcpStates, or the connection tier's."""

    @property
    def errors(self) -> int: ...

    @property
    def by_netns(self) -> Mapping[NsKey, Mapping[str, int]]: ...


# The connection tier (agent/connections.py, registered only when on) reads net/tcp{,6} too: with
# it on, the TCP-states collector is not registered and the states come from its sweep.
_CONNECTION_STATES: Key[_StatesByNetns] = Key("connections")


def namespaces(col: Collection) -> CollectResult:
    """The netns result of a collection, with each namespace's TCP states attached when the
    tier has them (joined by namespace key: a namespace gone since the tier ran has none)."""
    res = col.result(NETNS) or CollectResult()
    tcp: _StatesByNetns | None = col.result(TCP_STATES) or col.result(_CONNECTION_STATES)
    if tcp is None:
        return res
    states = tcp.by_netns
    return replace(res, samples=tuple(replace(s, tcp_states=states.get(s.inode)) for s in res.samples))
