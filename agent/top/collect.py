"""Standalone `dockwatch top`: the ONE adapter to the agent's own collection code.

With no --url, top reads what the agent reads, with the agent's parts and no parsing of its
own: the engine client and EngineInventory (list, then follow /events) for the containers, and
NetCollector (per-namespace /proc reads, procnet's parsers, namespace dedupe, interface →
network mapping) for the counters. Nothing else in agent/top imports agent.inventory or
agent.netstats: when collection changes shape, re-point `Standalone` and `to_sample` here.
Like the agent (app.py), it converts only the kernel fields names.py declares metrics for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from agent import procnet
from agent.clock import within
from agent.config import Config
from agent.docker.client import DockerClient
from agent.docker.models import Container, Network
from agent.inventory import EngineInventory
from agent.netstats import CollectResult, NetCollector, NetnsSample, NsKey
from agent.top.model import HOST_NAME, Iface, NsCounters, Sample
from agent.top.sources import SourceError
from exporters.prometheus.names import MIB_FIELDS, SOCKSTAT_FIELDS


class _TimedCollector(NetCollector):
    """The agent's NetCollector, noting when it read each namespace.

    Its samples carry no read time, and on a busy host one collection of hundreds of
    namespaces can take most of a second: a rate divided by the collection's mid-time would
    then be off by that much. (If NetnsSample gets a read time of its own, drop this class.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_at: dict[NsKey, tuple[float, float]] = {}

    def _sample(
        self, ino: NsKey, pid: int, owner: Container | None, networks: Mapping[str, Network]
    ) -> NetnsSample:
        # net/dev, whose counters give the byte and packet rates, is the first file read.
        self.read_at[ino] = (time.monotonic(), time.time())
        return super()._sample(ino, pid, owner, networks)


def to_sample(
    res: CollectResult,
    node: str,
    mono: float,
    wall: float,
    warning: str = "",
    read_at: Mapping[NsKey, tuple[float, float]] | None = None,
    duration: float = 0.0,
) -> Sample:
    """One collection of the agent's NetCollector → a Sample."""
    read_at = read_at or {}
    members: dict[object, list[str]] = {}
    for m in res.members:
        if m.owner is None or m.container.id != m.owner.id:
            members.setdefault(m.inode, []).append(m.container.name)
    out = []
    for s in res.samples:
        c = s.owner
        out.append(
            NsCounters(
                # The namespace inode is part of the key: a restarted container is a new
                # namespace whose counters start again, so it gets no rate on its first sample.
                key=f"{node}/{c.id}/{s.inode}" if c is not None else f"{node}/host",
                name=c.name if c is not None else HOST_NAME,
                ifaces=tuple(Iface(i, s.networks.get(i, ""), ctr) for i, ctr in sorted(s.devices.items())),
                mib=s.mib,
                time_wait=s.sockstat.get("TCP", {}).get("tw"),
                tcp_states=s.tcp_states,
                container_id=c.id if c is not None else "",
                image=c.image if c is not None else "",
                node=node,
                project=(c.compose_project or c.stack) if c is not None else "",
                service=(c.compose_service or c.service) if c is not None else "",
                members=tuple(sorted(members.get(s.inode, []))),
                addresses=tuple(a.ip for a in c.networks if a.ip) if c is not None else (),
                pid=c.pid if c is not None else 1,
                mono=read_at[s.inode][0] if s.inode in read_at else None,
                wall=read_at[s.inode][1] if s.inode in read_at else None,
            )
        )
    return Sample(mono=mono, wall=wall, namespaces=tuple(out), node=node, warning=warning, duration=duration)


class Standalone:
    """Samples read on this host, as the agent would read them at scrape time."""

    label = "standalone"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.client = DockerClient(cfg.docker_host, cfg.docker_timeout)
        self.inventory = EngineInventory(self.client, cfg.node_name)
        self.collector = _TimedCollector(
            cfg.hostfs,
            loopback=cfg.collector_loopback,
            host_netns=cfg.collector_host_netns,
            ignore=cfg.collector_interfaces_ignore,
            host_ignore=cfg.collector_host_interfaces_ignore,
            mib_fields=MIB_FIELDS,  # read what the agent reads: the exported fields
            sockstat_fields=SOCKSTAT_FIELDS,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Until the inventory's first listing is in; fails fast when the engine does not answer."""
        self._task = asyncio.create_task(self.inventory.run(), name="top-inventory")
        loop = asyncio.get_running_loop()
        # A host with hundreds of containers takes a while to list (one inspect each).
        deadline = loop.time() + max(60.0, self.cfg.docker_timeout)
        while not self.inventory.ready.is_set():
            if self.inventory.last_error:
                raise SourceError(f"engine at {self.cfg.docker_host}: {self.inventory.last_error}")
            if loop.time() > deadline:
                raise SourceError(f"engine at {self.cfg.docker_host}: no container list after 60 s")
            await within(0.2, self.inventory.ready.wait())

    async def sample(self) -> Sample:
        return await asyncio.to_thread(self._sample)

    def _sample(self) -> Sample:
        snap = self.inventory.snapshot
        m0, w0 = time.monotonic(), time.time()
        self.collector.read_at = {}
        res = self.collector.collect_namespaces(snap.containers.values(), snap.networks)
        m1, w1 = time.monotonic(), time.time()
        # Disconnected, the inventory keeps its last listing: still worth showing, with why.
        warning = "" if self.inventory.connected else f"engine: {self.inventory.last_error or 'disconnected'}"
        mid_m, mid_w = (m0 + m1) / 2, (w0 + w1) / 2
        return to_sample(res, snap.node, mid_m, mid_w, warning, self.collector.read_at, m1 - m0)

    async def sockets(self, ns: NsCounters) -> list[tuple[str, procnet.Socket]] | None:
        if ns.pid <= 0:
            return None
        return await asyncio.to_thread(self._sockets, ns.pid)

    def _sockets(self, pid: int) -> list[tuple[str, procnet.Socket]]:
        out: list[tuple[str, procnet.Socket]] = []
        for proto in ("tcp", "tcp6", "udp", "udp6"):
            with contextlib.suppress(OSError):  # IPv6 off in that namespace, or the process left
                text = self.cfg.hostfs.net(pid, proto).read_text()
                out.extend((proto.rstrip("6"), sock) for sock in procnet.parse_net_sockets(text))
        return out

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()
