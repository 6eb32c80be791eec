"""Per network namespace: find each container's namespace, dedupe shared ones, read and parse.

Collection is per namespace, not per container: containers are grouped by the inode of
<procfs>/<pid>/ns/net. A group is reported once, attributed to its owner (the member that
did not join another's namespace); `container:X` joiners and host-network containers are
members only (see dockwatch_container_info). Nothing here needs privileges or setns: the
kernel shows <pid>'s namespace in <procfs>/<pid>/net/*.

Everything here is blocking file I/O and runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent import procnet
from agent.docker.models import Container, Network
from agent.hostfs import HostFS

log = logging.getLogger(__name__)

HOST_NETWORK = "host"
# A namespace's key: the inode of its nsfs file, or a stand-in where that may not be read.
NsKey = int | str
HOST_KEY: NsKey = "host"


@dataclass(frozen=True, slots=True)
class Membership:
    """How one container relates to the namespace it is in (for the info metric)."""

    container: Container
    inode: NsKey
    owner: Container | None  # None: the host namespace


@dataclass(slots=True)
class NetnsSample:
    """One namespace's counters, attributed to `owner` (None for the host namespace)."""

    inode: NsKey
    owner: Container | None
    devices: dict[str, procnet.DevCounters]
    networks: dict[str, str]  # interface -> Docker network name ("" when unknown)
    mib: dict[str, dict[str, int]]  # net/snmp + net/netstat sections
    udp6: dict[str, int]
    sockstat: dict[str, dict[str, int]]
    tcp_states: dict[str, int] | None = None


@dataclass(slots=True)
class CollectResult:
    samples: list[NetnsSample] = field(default_factory=list)
    members: list[Membership] = field(default_factory=list)
    errors: int = 0
    vanished: int = 0
    duration: float = 0.0


class _Gone(Exception):
    """The process (so maybe the namespace) went away between listing and reading."""


def _read(path: str) -> str:
    """The whole file, with raw reads: no buffered text layer on the hot path."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise _Gone(path) from exc
    try:
        chunks = []
        while True:
            # Only an empty read is the end: seq_file hands out one page per read for files of
            # many records (net/tcp: 27 lines; net/dev of a host with many interfaces).
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    except ProcessLookupError as exc:
        raise _Gone(path) from exc
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")


# The net/snmp and net/netstat fields we export (see exporters/prometheus/names.py).
WANTED_MIB: dict[str, tuple[str, ...]] = {
    "Tcp": (
        "CurrEstab",
        "ActiveOpens",
        "PassiveOpens",
        "AttemptFails",
        "EstabResets",
        "OutRsts",
        "RetransSegs",
        "InSegs",
        "OutSegs",
        "InErrs",
    ),
    "Udp": ("InDatagrams", "OutDatagrams", "NoPorts", "InErrors", "RcvbufErrors", "SndbufErrors"),
    "TcpExt": ("ListenOverflows", "ListenDrops", "TCPTimeouts", "TCPSynRetrans", "TCPAbortOnTimeout"),
}


class NetCollector:
    def __init__(
        self,
        fs: HostFS,
        *,
        loopback: bool = False,
        host_netns: bool = True,
        ignore: re.Pattern[str] | None = None,
        host_ignore: re.Pattern[str] | None = None,
        sidecar: bool = False,
    ) -> None:
        # A sidecar reads its own process's namespace, always through its own /proc: the
        # configured procfs (/host/proc in the image) is the host's, where our pid means nothing.
        self.fs = HostFS(procfs=Path("/proc"), docker_root=fs.docker_root) if sidecar else fs
        # In a sidecar, pid 1 is in the app's namespace, not the host's: never call it "host".
        self.sidecar = sidecar
        self.loopback = loopback
        self.host_netns = host_netns
        self.ignore = ignore
        self.host_ignore = host_ignore
        # (inode, owner's networks) -> interface -> network; routes only change with attachments.
        self._netmap_cache: dict[tuple[NsKey, tuple[object, ...]], dict[str, str]] = {}
        # inode -> TCP state counts, filled by the opt-in slow tier.
        self.tcp_states: dict[NsKey, dict[str, int]] = {}

    # --- grouping ------------------------------------------------------------------------------
    def host_inode(self) -> int | None:
        try:
            return self.fs.netns_inode(1)
        except OSError:  # pid 1 is often not dumpable: without CAP_SYS_PTRACE its ns link is denied
            return None

    def group(self, containers: Iterable[Container]) -> tuple[dict[NsKey, list[Container]], int, NsKey]:
        """Namespace key -> members; also how many containers vanished, and the host's key.

        The key is the inode of <pid>/ns/net where we may read it. Where we may not (ptrace
        rules deny it for non-dumpable processes), Docker's own word decides: `host` is the
        host namespace and `container:X` is X's.
        """
        by_ref: dict[str, Container] = {}
        cs = list(containers)
        for c in cs:
            by_ref[c.id] = by_ref[c.name] = c
        host_key: NsKey = HOST_KEY if self.sidecar else (self.host_inode() or HOST_KEY)
        keys: dict[str, NsKey] = {}
        vanished = 0

        def key_of(c: Container, depth: int = 0) -> NsKey | None:
            if c.id in keys:
                return keys[c.id]
            if c.host_network:
                return host_key
            try:
                k: NsKey | None = self.fs.netns_inode(c.pid)
            except PermissionError:
                target = by_ref.get(c.joins) if c.joins else None
                k = key_of(target, depth + 1) if target is not None and depth < 8 else f"ns:{c.id}"
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
        return groups, vanished, host_key

    @staticmethod
    def owner_of(members: list[Container]) -> Container:
        """The member that created the namespace: not a joiner; else the oldest member."""
        own = [c for c in members if not c.joins and not c.host_network]
        return min(own or members, key=lambda c: (c.created, c.id))

    # --- collection ----------------------------------------------------------------------------
    def collect(self, containers: Iterable[Container], networks: Mapping[str, Network]) -> CollectResult:
        t0 = time.perf_counter()
        res = CollectResult()
        groups, res.vanished, host_key = self.group(containers)
        if self.sidecar and res.vanished:  # see _Gone below: for a sidecar that is an error
            res.errors += res.vanished
            log.warning("sidecar: cannot read this process's network namespace under %s", self.fs.procfs)
        for ino, members in groups.items():
            is_host = ino == host_key
            owner = None if is_host else self.owner_of(members)
            for c in members:
                res.members.append(Membership(c, ino, owner))
            if is_host:
                continue  # the host namespace is read once below, not per host-network container
            try:
                res.samples.append(self._sample(ino, owner.pid if owner else 1, owner, networks))
            except _Gone as exc:
                if self.sidecar:  # our own process cannot vanish: the files are not where we look
                    res.errors += 1
                    log.warning("sidecar: cannot read this process's namespace: %s", exc)
                else:
                    res.vanished += 1
            except (OSError, ValueError, IndexError) as exc:
                res.errors += 1
                log.warning("reading namespace of %s failed: %s", owner.name if owner else "host", exc)
        if self.host_netns:
            try:
                res.samples.append(self._sample(host_key, 1, None, networks))
            except (OSError, ValueError, IndexError, _Gone) as exc:
                res.errors += 1
                log.warning("reading the host namespace failed: %s", exc)
        live = {s.inode for s in res.samples}
        for ino in [i for i in self.tcp_states if i not in live]:
            del self.tcp_states[ino]
        res.duration = time.perf_counter() - t0
        return res

    def _sample(
        self, ino: NsKey, pid: int, owner: Container | None, networks: Mapping[str, Network]
    ) -> NetnsSample:
        net = f"{self.fs.procfs}/{pid}/net/"
        dev = procnet.parse_net_dev(_read(net + "dev"))
        ignore = self.host_ignore if owner is None else self.ignore
        devices = {
            name: ctr
            for name, ctr in dev.items()
            if (name != "lo" or self.loopback) and not (ignore and ignore.match(name))
        }
        mib = procnet.pick_net_snmp(_read(net + "snmp"), WANTED_MIB)
        mib.update(procnet.pick_net_snmp(_read(net + "netstat"), WANTED_MIB))
        sockstat = procnet.parse_sockstat(_read(net + "sockstat"))
        try:
            sockstat.update(procnet.parse_sockstat(_read(net + "sockstat6")))
            udp6 = procnet.pick_net_snmp6(_read(net + "snmp6"), "Udp6")
        except _Gone:  # IPv6 disabled in this namespace: the v6 files do not exist
            udp6 = {}
        if owner is None:
            netmap = dict.fromkeys(devices, HOST_NETWORK)
        else:
            netmap = self._networks(ino, pid, owner, devices, networks)
        return NetnsSample(ino, owner, devices, netmap, mib, udp6, sockstat, self.tcp_states.get(ino))

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

    # --- the opt-in slow tier ------------------------------------------------------------------
    def collect_tcp_states(self, containers: Iterable[Container]) -> int:
        """Read net/tcp{,6} once per namespace (milliseconds each: the kernel walks the global
        established hash). Returns how many namespaces failed."""
        groups, _, host_key = self.group(containers)
        failed = 0
        fresh: dict[NsKey, dict[str, int]] = {}
        targets = [(ino, self.owner_of(m).pid) for ino, m in groups.items() if ino != host_key]
        if self.host_netns:
            targets.append((host_key, 1))
        for ino, pid in targets:
            try:
                counts = procnet.count_tcp_states(_read(f"{self.fs.procfs}/{pid}/net/tcp"))
                with contextlib.suppress(_Gone):  # IPv6 disabled in that namespace
                    procnet.count_tcp_states(_read(f"{self.fs.procfs}/{pid}/net/tcp6"), into=counts)
                fresh[ino] = counts
            except _Gone:
                continue
            except (OSError, ValueError) as exc:
                failed += 1
                log.warning("reading TCP states of namespace %s failed: %s", ino, exc)
        self.tcp_states = fresh
        return failed
