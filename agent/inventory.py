"""The live view of running containers: list once, then follow /events.

    engine /events ──► Inventory.run() ──► Snapshot (immutable, swapped atomically)
                              │                 ▲ read by collectors at scrape time
                              └──► listeners (log pipeline: container added / removed / updated)

The events stream is opened before the containers are listed, so a container that starts
while we list is not missed. When the engine goes away (dockerd restart, socket gone) we keep
serving the last snapshot, reconnect with backoff, and re-list: the agent never exits for that.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.docker.client import DockerClient, Event
from agent.docker.models import Container, EngineError, Network, NotFound
from agent.outage import Outage

log = logging.getLogger(__name__)

# Container events that change what we know about a running container.
_REINSPECT = {"start", "restart", "unpause", "rename", "health_status", "update"}
_GONE = {"die", "destroy", "stop"}
# How many exited containers we remember for their per-container event counters (restart loops
# keep their id, so the counter must outlive a die).
_KNOWN_MAX = 2048

Listener = Callable[[str, Container], None]  # ("added" | "updated" | "removed", container)
EventListener = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class Snapshot:
    containers: Mapping[str, Container] = field(default_factory=dict)
    networks: Mapping[str, Network] = field(default_factory=dict)
    node: str = ""
    node_id: str = ""
    engine_version: str = ""
    api_version: str = ""
    generation: int = 0


class Inventory:
    def __init__(self, client: DockerClient | None, node_name: str | None = None) -> None:
        self.client = client
        self._node_override = node_name
        self._snap = Snapshot()
        self.ready = asyncio.Event()  # set once the first full listing is in
        self.changed = asyncio.Event()  # set on every new snapshot; consumers clear it
        self.connected = False
        self.reconnects = 0
        self.events_total: dict[tuple[str, str], int] = {}
        # container id -> action -> count; kept (bounded) after die so restart loops show.
        self.container_events: OrderedDict[str, dict[str, int]] = OrderedDict()
        self._known: OrderedDict[str, Container] = OrderedDict()
        self._listeners: list[Listener] = []
        self._event_listeners: list[EventListener] = []
        self.last_error = ""
        self.outage = Outage(log, "the Docker engine")

    @property
    def snapshot(self) -> Snapshot:
        return self._snap

    @property
    def is_ready(self) -> bool:
        """Connected to the engine with the inventory loaded (what /readyz reports)."""
        return self.ready.is_set() and self.connected

    def known(self, container_id: str) -> Container | None:
        """A running or recently exited container (for labelling its event counters)."""
        return self._known.get(container_id)

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def add_event_listener(self, fn: EventListener) -> None:
        self._event_listeners.append(fn)

    # --- main loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._follow()
            except EngineError as exc:
                # Loud once (an ERROR with the fix when no connection can be made), then a summary
                # every few minutes, then one line when connected again; each attempt at debug.
                if self.connected:
                    self.outage.failed(str(exc), f"engine connection lost: {exc}; reconnecting")
                else:
                    self.outage.failed(str(exc), level=logging.ERROR if exc.unreachable else None)
                log.debug("engine: attempt %d failed; retrying", self.outage.attempts)
                self.last_error = str(exc)
            if self.connected:
                self.reconnects += 1
                backoff = 0.2
            self.connected = False
            # Jittered exponential backoff, capped: a restarted dockerd is back within seconds.
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 5.0)

    async def _follow(self) -> None:
        assert self.client is not None
        ver = await self.client.negotiate()
        info = await self.client.info()
        async for ev in self.client.events():
            if ev.type == "dockwatch":  # the stream is open: now list, nothing can fall between
                await self._relist(ver, info)
                self.connected = True
                self.last_error = ""
                self.ready.set()
                self.outage.recovered(f"connected to {self.client.host}")
                continue
            await self._on_event(ev)

    async def _relist(self, ver: Mapping[str, object], info: Mapping[str, object]) -> None:
        assert self.client is not None
        client = self.client
        ids = await client.running_container_ids()
        sem = asyncio.Semaphore(16)

        async def one(cid: str) -> Container | None:
            async with sem:
                try:
                    c = await client.inspect(cid)
                except NotFound:
                    return None
            return c if c.pid > 0 else None

        found = [c for c in await asyncio.gather(*(one(i) for i in ids)) if c is not None]
        networks = {n.id: n for n in await client.networks()}
        swarm = info.get("Swarm")
        node_id = str(swarm.get("NodeID") or "") if isinstance(swarm, Mapping) else ""
        old = self._snap.containers
        new = {c.id: c for c in found}
        self._snap = Snapshot(
            containers=new,
            networks=networks,
            node=self._node_override or str(info.get("Name") or ""),
            node_id=node_id,
            engine_version=str(ver.get("Version") or ""),
            api_version=client.api_version,
            generation=self._snap.generation + 1,
        )
        self.changed.set()
        for c in found:
            self._remember(c)
            self._notify("updated" if c.id in old else "added", c)
        for cid, c in old.items():
            if cid not in new:
                self._notify("removed", c)

    # --- events ------------------------------------------------------------------------------------
    async def _on_event(self, ev: Event) -> None:
        key = (ev.type, ev.action)
        self.events_total[key] = self.events_total.get(key, 0) + 1
        for fn in self._event_listeners:
            fn(ev)
        if ev.type == "container":
            counts = self.container_events.setdefault(ev.actor_id, {})
            counts[ev.action] = counts.get(ev.action, 0) + 1
            self.container_events.move_to_end(ev.actor_id)
            if ev.action == "destroy":
                self._forget(ev.actor_id)
                self._remove(ev.actor_id)
            elif ev.action in _GONE:
                self._remove(ev.actor_id)
            elif ev.action in _REINSPECT:
                await self._refresh(ev.actor_id)
        elif ev.type == "network":
            if ev.action in ("connect", "disconnect"):
                cid = ev.attributes.get("container", "")
                if cid and (cid in self._snap.containers or ev.action == "connect"):
                    await self._refresh(cid)
            if ev.action in ("create", "destroy", "connect"):
                await self._refresh_networks()

    async def _refresh(self, cid: str) -> None:
        assert self.client is not None
        try:
            c = await self.client.inspect(cid)
        except NotFound:
            self._remove(cid)
            return
        if c.pid <= 0:
            self._remove(cid)
            return
        self._remember(c)
        existed = cid in self._snap.containers
        self._swap({**self._snap.containers, cid: c})
        self._notify("updated" if existed else "added", c)

    async def _refresh_networks(self) -> None:
        assert self.client is not None
        try:
            nets = {n.id: n for n in await self.client.networks()}
        except NotFound:
            return
        s = self._snap
        self._snap = Snapshot(
            s.containers, nets, s.node, s.node_id, s.engine_version, s.api_version, s.generation + 1
        )
        self.changed.set()

    def _remove(self, cid: str) -> None:
        c = self._snap.containers.get(cid)
        if c is None:
            return
        self._swap({k: v for k, v in self._snap.containers.items() if k != cid})
        self._notify("removed", c)

    def _swap(self, containers: dict[str, Container]) -> None:
        s = self._snap
        self._snap = Snapshot(
            containers, s.networks, s.node, s.node_id, s.engine_version, s.api_version, s.generation + 1
        )
        self.changed.set()

    def _remember(self, c: Container) -> None:
        self._known[c.id] = c
        self._known.move_to_end(c.id)
        while len(self._known) > _KNOWN_MAX:
            old, _ = self._known.popitem(last=False)
            self.container_events.pop(old, None)
        while len(self.container_events) > _KNOWN_MAX:
            self.container_events.popitem(last=False)

    def _forget(self, cid: str) -> None:
        self._known.pop(cid, None)
        self.container_events.pop(cid, None)

    def _notify(self, kind: str, c: Container) -> None:
        for fn in self._listeners:
            try:
                fn(kind, c)
            except Exception:  # a listener's bug must not stop the inventory
                log.exception("inventory listener failed on %s %s", kind, c.short_id)


class SidecarInventory(Inventory):
    """Sidecar mode: one fixed "container", this process's own network namespace; no engine.

    A sidecar shares the app's namespace (`network_mode: service:app`), so /proc/self/net is
    the app's. Its identity comes from flags, since there is no socket to ask.
    """

    def __init__(self, me: Container, node: str) -> None:
        super().__init__(client=None, node_name=node)
        self._snap = Snapshot(containers={me.id: me}, node=node, generation=1)
        self._remember(me)

    @property
    def is_ready(self) -> bool:
        return True

    async def run(self) -> None:
        self.ready.set()
        await asyncio.Event().wait()  # nothing to follow; live until cancelled
