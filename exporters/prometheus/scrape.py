"""One collection: run the collectors and render, in a worker thread, once at a time.

By default collection happens at scrape time: the numbers are as fresh as the scrape, nothing
is polled when nobody scrapes, and a removed container's series are gone on the next scrape.
With hundreds of containers a scrape then costs ~0.35 ms of CPU per namespace (most of it the
kernel generating the /proc files), so `--collector.interval` moves collection to a background
loop: /metrics answers from the last rendered body at once, and the loop re-collects on an
inventory change (only namespaces new since its last run; at most once per CHANGE_GAP under
churn), so new containers still appear and removed ones leave within a second.

    GET /metrics ──► Scraper.collect() ── one flight per inventory generation ──┐
    interval loop ─┘                                                           │
        worker thread: Registry.collect(snapshot) ─► Collection ─► Renderer ─► bytes
                       (each collector isolated)      (immutable)

The worker thread gets only immutable inputs (the inventory Snapshot, the engine state read on
the event loop) and returns bytes and the Collection; the loop publishes them. Concurrent
requests share one run, unless the inventory changed after that run took its snapshot: then
they wait for a new one, so a scrape that starts after the agent read `destroy` never holds
the removed container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection as Names
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from agent import __version__
from agent.clock import within
from agent.collector import Collection, Outcome, Registry
from agent.inventory import Inventory, Snapshot
from agent.netstats import NETNS, CollectResult, namespaces
from exporters.prometheus import names as n
from exporters.prometheus.families import (
    Collector,
    CounterMetricFamily,
    Family,
    GaugeMetricFamily,
    Metric,
    ProcessMetrics,
)
from exporters.prometheus.pieces import Piece
from exporters.prometheus.render import Exposition, FamilyTexts, MetricsPage, Renderer

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CHANGE_GAP = 0.5  # s: interval mode's least time between collections started by inventory changes


@dataclass(frozen=True, slots=True)
class EngineState:
    """The inventory's connection state, read on the event loop when a collection starts."""

    connected: bool = False
    reconnects: int = 0


class SelfMetrics:
    """The agent's own metrics, from one collection's immutable inputs (a client_python collector)."""

    def __init__(
        self,
        snap: Snapshot,
        collection: Collection,
        engine: EngineState,
        extra: Mapping[str, Outcome] | None = None,
    ) -> None:
        self.snap = snap
        self.collection = collection
        self.engine = engine
        self.extra = extra or {}  # exposition collectors (log pipeline) of the same scrape

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        ok = GaugeMetricFamily(n.COLLECTOR_SUCCESS.name, n.COLLECTOR_SUCCESS.help, labels=["collector"])
        dur = GaugeMetricFamily(n.COLLECTOR_DURATION.name, n.COLLECTOR_DURATION.help, labels=["collector"])
        outcomes = {**self.collection.outcomes, **self.extra}
        for name, o in sorted(outcomes.items()):
            ok.add_metric([name], 1.0 if o.success else 0.0)
            dur.add_metric([name], o.duration)
        yield ok
        yield dur
        yield GaugeMetricFamily(
            n.CONTAINERS_TRACKED.name, n.CONTAINERS_TRACKED.help, value=len(snap.containers)
        )
        netns = namespaces(self.collection)
        yield GaugeMetricFamily(n.NETNS_TRACKED.name, n.NETNS_TRACKED.help, value=len(netns.samples))
        yield GaugeMetricFamily(
            n.ENGINE_CONNECTED.name, n.ENGINE_CONNECTED.help, value=int(self.engine.connected)
        )
        yield CounterMetricFamily(
            n.ENGINE_RECONNECTS.name.removesuffix("_total"),
            n.ENGINE_RECONNECTS.help,
            value=self.engine.reconnects,
        )
        ev = CounterMetricFamily(
            n.DOCKER_EVENTS.name.removesuffix("_total"), n.DOCKER_EVENTS.help, labels=["type", "action"]
        )
        for (typ, action), count in sorted(snap.events_total.items()):
            ev.add_metric([typ, action], count)
        yield ev
        info = GaugeMetricFamily(n.BUILD_INFO.name, n.BUILD_INFO.help, labels=list(n.BUILD_INFO.labels))
        info.add_metric([__version__, snap.engine_version, snap.api_version, snap.node, snap.node_id], 1)
        yield info


class ExpositionCollectors:
    """client_python collectors (the log pipeline's metrics), each run in its own try: one that
    raises loses its own families and reports dockwatch_scrape_collector_success 0, nothing else."""

    def __init__(self) -> None:
        self._units: list[tuple[str, Collector]] = []

    def register(self, collector: Collector, name: str = "") -> None:
        self._units.append((name or type(collector).__name__.lower(), collector))

    def collect(self) -> tuple[list[Family], dict[str, Outcome]]:
        families: list[Family] = []
        outcomes: dict[str, Outcome] = {}
        for name, c in self._units:
            t0 = time.perf_counter()
            try:
                got = list(c.collect())
            except Exception as exc:
                log.exception("collector %s failed", name)
                outcomes[name] = Outcome(name, None, False, time.perf_counter() - t0, str(exc))
                continue
            families.extend(got)
            outcomes[name] = Outcome(name, None, True, time.perf_counter() - t0)
        return families, outcomes


@dataclass(frozen=True, slots=True)
class _Run:
    page: MetricsPage
    collection: Collection


@dataclass(frozen=True, slots=True)
class _Flight:
    generation: int
    future: asyncio.Future[_Run]


class Scraper:
    def __init__(
        self,
        inventory: Inventory,
        collectors: Registry,
        registry: ExpositionCollectors | None = None,
        interval: float = 0.0,
    ) -> None:
        self.inventory = inventory
        self.collectors = collectors
        self.interval = interval  # 0: collect at scrape time
        self.renderer = Renderer()  # used by one run at a time (single flight)
        self.texts = FamilyTexts()  # the own families' texts, kept across pages
        self.registry = registry or ExpositionCollectors()
        # process_* (CPU seconds, resident memory, open fds, start time) of the agent itself, from
        # /proc/self like every client_python exporter: the agent's own procfs, not --path.procfs.
        self.process = ProcessMetrics()
        self._inflight: _Flight | None = None
        self._page: MetricsPage | None = None
        self.last: Collection | None = None  # the last finished collection (set on the event loop)

    @property
    def last_result(self) -> CollectResult | None:
        return self.last.result(NETNS) if self.last is not None else None

    async def scrape(
        self, gzip_ok: bool = False, openmetrics: bool = False, names: Names[str] | None = None
    ) -> bytes:
        """The exposition body: text 0.0.4 or OpenMetrics, only `names` if given, gzip when gzip_ok."""
        return b"".join(await self.scrape_parts(gzip_ok, openmetrics, names))

    async def scrape_parts(
        self, gzip_ok: bool = False, openmetrics: bool = False, names: Names[str] | None = None
    ) -> list[Piece]:
        """scrape()'s body as pieces to write one after the other (MetricsPage.parts)."""
        if self.interval > 0 and self._page is not None:
            page = self._page
        else:
            page = await self.collect()
        if gzip_ok:
            return [await asyncio.to_thread(page.body, openmetrics, names, True)]
        return await asyncio.to_thread(page.parts, openmetrics, names)

    async def collect(self, changed_only: bool = False) -> MetricsPage:
        """Collect and render now: one run at a time, shared by callers of the same snapshot.

        `changed_only`: collectors that can (netns) read only what is new since their last run
        (interval mode on an inventory change)."""
        while True:
            snap = self.inventory.snapshot
            flight = self._inflight
            if flight is None or flight.future.done():  # done: its callback has not run yet
                break
            if flight.generation == snap.generation:
                return (await asyncio.shield(flight.future)).page
            # That run took its snapshot before the last inventory change: wait for it (one run at
            # a time), then look again.
            with contextlib.suppress(Exception):
                await asyncio.shield(flight.future)
        engine = EngineState(self.inventory.connected, self.inventory.reconnects)
        fut = asyncio.ensure_future(asyncio.to_thread(self._scrape_blocking, snap, engine, changed_only))
        mine = _Flight(snap.generation, fut)
        self._inflight = mine

        def done(f: asyncio.Future[_Run]) -> None:
            if self._inflight is mine:
                self._inflight = None
            if not f.cancelled() and f.exception() is None:
                run = f.result()
                self._page, self.last = run.page, run.collection

        fut.add_done_callback(done)
        return (await asyncio.shield(fut)).page

    async def run(self) -> None:
        """Background work: the background collectors, and interval-mode collection, until cancelled
        (returns when there is none: scrape-time mode without background collectors)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._background())
            if self.interval > 0:
                tg.create_task(self.run_interval())

    async def _background(self) -> None:
        # After the first full listing: a sweep of the empty start-up inventory would leave a
        # slow tier (the connection tier runs every 120 s by default) empty for a whole interval.
        await self.inventory.ready.wait()
        await self.collectors.run_background(lambda: self.inventory.snapshot)

    async def run_interval(self) -> None:
        """Interval mode: collect every `interval` seconds, and promptly when the inventory changes."""
        changed = self.inventory.changed
        on_change = False  # the first run and every timer tick read everything
        loop = asyncio.get_running_loop()
        while True:
            changed.clear()
            started = loop.time()
            try:
                # On a change only new namespaces are read (issue 14: container churn re-read every
                # namespace, 35 % of a core at 300 containers); the timer refreshes all of them.
                await self.collect(changed_only=on_change)
            except Exception:  # collectors are isolated; this would be our own bug: keep serving
                log.exception("interval collection failed; /metrics keeps the last body")
            on_change = await within(self.interval, changed.wait())
            if on_change:
                # A lone change is collected at once (50 ms to take a burst's other events along);
                # under churn, at most one change-driven run per CHANGE_GAP: each re-renders every
                # series, and a container start or stop is half a dozen events (issue 14).
                await asyncio.sleep(max(0.05, started + CHANGE_GAP - loop.time()))

    def _scrape_blocking(
        self, snap: Snapshot | None = None, engine: EngineState | None = None, changed_only: bool = False
    ) -> _Run:
        """Worker thread: collect, render. Reads only its arguments (immutable) and its own parts."""
        snap = snap if snap is not None else self.inventory.snapshot
        engine = engine or EngineState()
        col = self.collectors.collect(snap, changed_only=changed_only)
        res = namespaces(col)
        try:
            exposition = self.renderer.render(
                snap.node, snap.node_id, res, snap.container_events, snap.known, snap.containers.values()
            )
        except Exception as exc:  # never fail /metrics: the self-metrics say what is missing
            log.exception("rendering the per-container families failed")
            exposition = Exposition([], [])
            bad = Outcome(NETNS.name, None, False, 0.0, f"render: {exc}")
            col = replace(col, outcomes=MappingProxyType({**col.outcomes, NETNS.name: bad}))
        # Keep the identity strings of every running container and of every container with event
        # counters: containers already running at agent start were re-rendered every scrape.
        self.renderer.forget_except([*snap.containers, *snap.known])
        families, extra = self.registry.collect()
        own = SelfMetrics(snap, col, engine, extra)
        try:
            process = list(self.process.collect())
        except Exception:  # /proc/self unreadable: the agent's own process metrics are missing
            log.exception("process metrics failed")
            process = []
        return _Run(MetricsPage(exposition, [*own.collect(), *families, *process], self.texts), col)
