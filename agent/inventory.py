"""The live view of running containers: list once, then follow /events.

    engine /events ──► EngineInventory._on_event() ──► Snapshot (immutable, swapped whole)
          │               │   counters, removals: at once        ▲ read by collectors in worker threads
          │               └─► inspect tasks (concurrent, latest wins) ──┘
          └──► listeners (log pipeline: container added / removed / updated; events)

`Inventory` holds the snapshot, the counters and the listeners; `EngineInventory` fills it from
the engine (its DockerClient), `SidecarInventory` with one fixed container and no engine.

The events stream is opened before the containers are listed (the client calls `opened` once the
engine has accepted the subscription), so a container that starts while we list is not missed.
Events are handled in order and at once; only re-inspecting a container waits for the engine, in
its own task, so a `destroy` is never queued behind the inspect calls of other containers. An
inspect answer that a later event of the same container made stale (a die, a newer start) is
dropped. When the engine goes away (dockerd restart, socket gone) we keep serving the last
snapshot, reconnect with backoff, and re-list: the agent never exits for that.

Everything another thread may read is in the Snapshot, event counters included: it is never
changed, only replaced. The mutable working state behind it belongs to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.docker.client import DockerClient, Event
from agent.docker.models import Container, EngineError, Info, Network, NotFound, Version
from agent.outage import Outage

log = logging.getLogger(__name__)

# Container events that change what we know about a running container.
_REINSPECT = {"start", "restart", "unpause", "rename", "health_status", "update"}
_GONE = {"die", "destroy", "stop"}
# How many exited containers we remember for their per-container event counters (restart loops
# keep their id, so the counter must outlive a die).
_KNOWN_MAX = 2048
# Per-container event counters that exist at 0 from a container's first sight: the dashboards
# and alerts take increase() of them, which needs a sample before the first event (a series born
# at 1 shows no increase). grafana/'s dashboards and alerts use these (a unit test checks).
COUNTED_ACTIONS: tuple[str, ...] = ("die", "kill", "oom", "restart", "start")
HEALTH_ACTION = "health_status"  # also at 0, for containers that have a healthcheck
# Inspect calls in flight at once (a stack deploy starts dozens of containers together).
_INSPECTS = 8
# An inspect that fails (engine busy, timeout) is retried after these delays, then the
# inventory re-lists: the container is not left out silently.
_RETRY_DELAYS = (0.5, 2.0)

Listener = Callable[[str, Container], None]  # ("added" | "updated" | "removed", container)
EventListener = Callable[[Event], None]


def _without(d: Mapping[str, Container], key: str) -> dict[str, Container]:
    out = dict(d)
    del out[key]
    return out


def _trim(d: dict[str, Any], keep: Mapping[str, object]) -> list[str]:
    """Drop the oldest entries beyond _KNOWN_MAX, except those in `keep` (running containers:
    their counters must not vanish and come back at 1). Returns the dropped keys."""
    dropped = []
    while len(d) > _KNOWN_MAX:
        victim = next((k for k in d if k not in keep), None)
        if victim is None:  # more running containers than the bound: the bound gives way
            break
        del d[victim]
        dropped.append(victim)
    return dropped


@dataclass(frozen=True, slots=True)
class Snapshot:
    containers: Mapping[str, Container] = field(default_factory=dict)
    networks: Mapping[str, Network] = field(default_factory=dict)
    node: str = ""
    node_id: str = ""
    engine_version: str = ""
    api_version: str = ""
    generation: int = 0
    # (type, action) -> events received since the agent started.
    events_total: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # container id -> action -> count; kept (bounded) after die so restart loops show.
    container_events: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # Running and recently exited containers, for labelling their event counters.
    known: Mapping[str, Container] = field(default_factory=dict)


class Inventory:
    """The snapshot, the event counters and the listeners; what fills them is a subclass's `run`.

    On its own it holds what it is given (tests, renderers): ready at once, nothing to follow."""

    def __init__(self) -> None:
        self._snap = Snapshot()
        self.ready = asyncio.Event()  # set once the first full listing is in
        self.changed = asyncio.Event()  # set when containers or networks change; consumers clear it
        self.connected = False
        self.reconnects = 0
        # Working state of the event loop; published into the Snapshot by _publish().
        self._events_total: dict[tuple[str, str], int] = {}
        # Oldest first (dicts keep insertion order; a touched entry is re-inserted at the end).
        # Each count value is a fresh dict, never changed once stored: snapshots share them.
        self._counts: dict[str, Mapping[str, int]] = {}
        self._known: dict[str, Container] = {}
        self._dirty = False  # counters changed since the last published snapshot
        self._known_pub: Mapping[str, Container] | None = None  # published copy of _known, if current
        self._listeners: list[Listener] = []
        self._event_listeners: list[EventListener] = []
        self.last_error = ""

    @property
    def snapshot(self) -> Snapshot:
        return self._snap

    @property
    def is_ready(self) -> bool:
        """Connected to the engine with the inventory loaded (what /readyz reports)."""
        return self.ready.is_set() and self.connected

    @property
    def events_total(self) -> Mapping[tuple[str, str], int]:
        return self._snap.events_total

    @property
    def container_events(self) -> Mapping[str, Mapping[str, int]]:
        return self._snap.container_events

    def known(self, container_id: str) -> Container | None:
        """A running or recently exited container (for labelling its event counters)."""
        return self._snap.known.get(container_id)

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def add_event_listener(self, fn: EventListener) -> None:
        self._event_listeners.append(fn)

    async def run(self) -> None:
        """Follow the source until cancelled; an inventory with nothing to follow is ready at once."""
        self.ready.set()

    # --- counters ----------------------------------------------------------------------------------
    def _zero_actions(self, c: Container) -> tuple[str, ...]:
        return (*COUNTED_ACTIONS, HEALTH_ACTION) if c.health else COUNTED_ACTIONS

    def _count(self, cid: str, action: str) -> None:
        old = self._counts.pop(cid, {})
        self._counts[cid] = {**old, action: old.get(action, 0) + 1}
        _trim(self._counts, self._snap.containers)

    def _remember(self, c: Container) -> None:
        self._known.pop(c.id, None)
        self._known[c.id] = c
        for old in _trim(self._known, self._snap.containers):
            self._counts.pop(old, None)
        self._known_pub = None
        counts = self._counts.get(c.id, {})
        missing = [a for a in self._zero_actions(c) if a not in counts]
        if missing:  # first sight (or a healthcheck appeared): the counters exist from now, at 0
            self._counts.pop(c.id, None)
            self._counts[c.id] = {**dict.fromkeys(missing, 0), **counts}
            _trim(self._counts, self._snap.containers)

    def _forget(self, cid: str) -> bool:
        """Drop a removed container's counters; True when they were exported (it was known)."""
        self._counts.pop(cid, None)
        if self._known.pop(cid, None) is None:
            return False
        self._known_pub = None
        return True

    def _publish_soon(self) -> None:
        """Counters alone changed: publish once for a burst of events, before anything else runs
        on the loop (a scrape request is handled after this callback)."""
        if not self._dirty:
            self._dirty = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        if self._dirty:
            self._publish(changed=False)

    def _publish(self, *, changed: bool | None = None, **fields: Any) -> None:
        """Swap in a new Snapshot with `fields` and the current counters.

        `changed` (default: when containers or networks are given) wakes the interval-mode
        collection; a counter alone does not, it shows in the next collection.
        """
        self._dirty = False
        self._snap = replace(
            self._snap,
            generation=self._snap.generation + 1,
            events_total=dict(self._events_total),
            container_events=self._counts.copy(),
            known=self._published_known(),
            **fields,
        )
        if changed if changed is not None else bool(fields):
            self.changed.set()

    def _published_known(self) -> Mapping[str, Container]:
        if self._known_pub is None:  # copied only when it changed: it is as long as the counters
            self._known_pub = self._known.copy()
        return self._known_pub

    def _notify(self, kind: str, c: Container) -> None:
        for fn in self._listeners:
            try:
                fn(kind, c)
            except Exception:  # a listener's bug must not stop the inventory
                log.exception("inventory listener failed on %s %s", kind, c.short_id)


class EngineInventory(Inventory):
    """The containers and networks of one Docker engine: list once, then follow its /events."""

    def __init__(self, client: DockerClient, node_name: str | None = None) -> None:
        super().__init__()
        self.client = client
        self._node_override = node_name  # --node-name: else the engine's name for its host
        self.outage = Outage(log, "the Docker engine")
        # Re-inspections: key (container id, or "" for the network list) -> the sequence number of
        # the one request whose answer may still apply; a later event replaces or removes it.
        self._pending: dict[str, int] = {}
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._inspects = asyncio.Semaphore(_INSPECTS)
        self._resync = asyncio.Event()
        self._resync_why = ""

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
        """Follow one events stream until it fails, or an inspect keeps failing (then re-list)."""
        self._resync.clear()
        consume = asyncio.ensure_future(self._consume())
        resync = asyncio.ensure_future(self._resync.wait())
        try:
            await asyncio.wait({consume, resync}, return_when=asyncio.FIRST_COMPLETED)
            if consume.done():
                consume.result()  # the stream's EngineError, or a bug
            else:
                raise EngineError(f"re-listing: {self._resync_why}")
        finally:
            # Answers to requests of this stream must not land after the next listing.
            pending = [consume, resync, *self._tasks]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self._pending.clear()

    async def _consume(self) -> None:
        ver = await self.client.negotiate()
        info = await self.client.info()

        async def opened() -> None:  # the stream is open: now list, nothing can fall between
            await self._relist(ver, info)
            self.connected = True
            self.last_error = ""
            self.ready.set()
            self.outage.recovered(f"connected to {self.client.host}")

        async for ev in self.client.events(opened=opened):
            self._on_event(ev)

    async def _relist(self, ver: Version, info: Info) -> None:
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
        old = self._snap.containers
        new = {c.id: c for c in found}
        for c in found:
            self._remember(c)
        self._publish(
            containers=new,
            networks=networks,
            node=self._node_override or info.name,
            node_id=info.node_id,
            engine_version=ver.version,
            api_version=client.api_version,
        )
        for c in found:
            self._notify("updated" if c.id in old else "added", c)
        for cid, c in old.items():
            if cid not in new:
                self._notify("removed", c)

    # --- events ------------------------------------------------------------------------------------
    def _on_event(self, ev: Event) -> None:
        """Count, remove at once; re-inspect in a task of its own (never awaited here)."""
        key = (ev.type, ev.action)
        self._events_total[key] = self._events_total.get(key, 0) + 1
        for fn in self._event_listeners:
            fn(ev)
        removed: Container | None = None
        changed = False
        if ev.type == "container":
            cid = ev.actor_id
            self._count(cid, ev.action)
            if ev.action in _GONE:
                self._pending.pop(cid, None)  # an inspect in flight must not bring it back
                removed = self._snap.containers.get(cid)
                if ev.action == "destroy":
                    changed = self._forget(cid)  # its event series leave with it, at once
            elif ev.action in _REINSPECT:
                self._schedule(cid)
        elif ev.type == "network":
            if ev.action in ("connect", "disconnect"):
                cid = ev.attributes.get("container", "")
                if cid and (cid in self._snap.containers or ev.action == "connect"):
                    self._schedule(cid)
            if ev.action in ("create", "destroy", "connect"):
                self._schedule("")
        if removed is not None:
            self._publish(containers=_without(self._snap.containers, removed.id))
            self._notify("removed", removed)
        elif changed:
            self._publish(changed=True)
        else:
            self._publish_soon()

    def _schedule(self, key: str) -> None:
        """Re-inspect container `key` (or the network list for ""): the latest request wins."""
        self._seq += 1
        self._pending[key] = self._seq
        job = self._refresh_networks(self._seq) if key == "" else self._refresh(key, self._seq)
        self._spawn(job)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _current(self, key: str, seq: int) -> bool:
        return self._pending.get(key) == seq

    async def _ask(self, key: str, seq: int, what: str, call: Callable[[], Any]) -> Any:
        """The engine's answer for a request that is still current; None when it no longer is.

        NotFound propagates. Other errors are retried, then the inventory re-lists (logged).
        """
        for delay in (*_RETRY_DELAYS, None):
            async with self._inspects:
                if not self._current(key, seq):  # superseded while waiting for a slot
                    return None
                try:
                    return await call()
                except NotFound:
                    raise
                except EngineError as exc:
                    if delay is None:
                        self._resync_why = f"{what} failed: {exc}"
                        log.warning("%s failed: %s; re-listing", what, exc)
                        self._resync.set()
                        return None
                    log.debug("%s failed: %s; retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
        return None

    async def _refresh(self, cid: str, seq: int) -> None:
        client = self.client
        c: Container | None
        try:
            c = await self._ask(cid, seq, f"inspect {cid[:12]}", lambda: client.inspect(cid))
            if c is None:  # superseded, or given up on (re-listing)
                return
        except NotFound:
            c = None
        if not self._current(cid, seq):  # a later event of this container made the answer stale
            return
        del self._pending[cid]
        if c is None or c.pid <= 0:
            self._remove(cid)
            return
        self._remember(c)
        existed = cid in self._snap.containers
        self._publish(containers={**self._snap.containers, cid: c})
        self._notify("updated" if existed else "added", c)

    async def _refresh_networks(self, seq: int) -> None:
        client = self.client
        try:
            nets = await self._ask("", seq, "listing networks", client.networks)
        except NotFound:
            return
        if nets is None or not self._current("", seq):
            return
        del self._pending[""]
        self._publish(networks={n.id: n for n in nets})

    def _remove(self, cid: str) -> None:
        c = self._snap.containers.get(cid)
        if c is None:
            return
        self._publish(containers=_without(self._snap.containers, cid))
        self._notify("removed", c)


class SidecarInventory(Inventory):
    """Sidecar mode: one fixed "container", this process's own network namespace; no engine.

    A sidecar shares the app's namespace (`network_mode: service:app`), so /proc/self/net is
    the app's. Its identity comes from flags, since there is no socket to ask.
    """

    def __init__(self, me: Container, node: str) -> None:
        super().__init__()
        self._snap = Snapshot(containers={me.id: me}, node=node, generation=1)
        self._remember(me)
        self._publish()

    def _zero_actions(self, c: Container) -> tuple[str, ...]:
        return ()  # no engine, no events: no event counters to show

    @property
    def is_ready(self) -> bool:
        return True
