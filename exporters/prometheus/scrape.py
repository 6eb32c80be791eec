"""One collection: read every namespace and render, in a worker thread, once at a time.

By default collection happens at scrape time: the numbers are as fresh as the scrape, nothing
is polled when nobody scrapes, and a removed container's series are gone on the next scrape.
With hundreds of containers a scrape then costs ~0.35 ms of CPU per namespace (most of it the
kernel generating the /proc files), so `--collect.interval` moves collection to a background
loop: /metrics answers from the last rendered body at once, and the loop re-collects on every
inventory change, so new containers still appear and removed ones leave within a second.

The work (file reads, parsing, rendering, gzip) runs in a thread so the event loop keeps
following docker events and answering /healthz; concurrent requests share one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.inventory import Inventory
from agent.netstats import CollectResult, NetCollector
from exporters.prometheus import names as n
from exporters.prometheus.render import MetricsPage, Renderer


@dataclass(slots=True)
class CollectorStatus:
    success: float = 1.0
    duration: float = 0.0


class SelfMetrics(Collector):
    """The agent's own metrics, read from live state at collect time (client_python custom collector)."""

    def __init__(
        self, inventory: Inventory, status: dict[str, CollectorStatus], namespaces: Callable[[], int]
    ) -> None:
        self.inventory = inventory
        self.status = status
        self.namespaces = namespaces  # namespaces read by the last collection

    def collect(self) -> Iterator[Metric]:
        inv = self.inventory
        snap = inv.snapshot
        ok = GaugeMetricFamily(n.COLLECTOR_SUCCESS.name, n.COLLECTOR_SUCCESS.help, labels=["collector"])
        dur = GaugeMetricFamily(n.COLLECTOR_DURATION.name, n.COLLECTOR_DURATION.help, labels=["collector"])
        for name, st in sorted(self.status.items()):
            ok.add_metric([name], st.success)
            dur.add_metric([name], st.duration)
        yield ok
        yield dur
        yield GaugeMetricFamily(
            n.CONTAINERS_TRACKED.name, n.CONTAINERS_TRACKED.help, value=len(snap.containers)
        )
        yield GaugeMetricFamily(n.NETNS_TRACKED.name, n.NETNS_TRACKED.help, value=self.namespaces())
        yield GaugeMetricFamily(n.ENGINE_CONNECTED.name, n.ENGINE_CONNECTED.help, value=int(inv.connected))
        yield CounterMetricFamily(
            n.ENGINE_RECONNECTS.name.removesuffix("_total"), n.ENGINE_RECONNECTS.help, value=inv.reconnects
        )
        ev = CounterMetricFamily(
            n.DOCKER_EVENTS.name.removesuffix("_total"), n.DOCKER_EVENTS.help, labels=["type", "action"]
        )
        for (typ, action), count in sorted(inv.events_total.items()):
            ev.add_metric([typ, action], count)
        yield ev
        info = GaugeMetricFamily(n.BUILD_INFO.name, n.BUILD_INFO.help, labels=list(n.BUILD_INFO.labels))
        info.add_metric([__version__, snap.engine_version, snap.api_version, snap.node, snap.node_id], 1)
        yield info


class Scraper:
    def __init__(
        self,
        inventory: Inventory,
        collector: NetCollector,
        registry: CollectorRegistry | None = None,
        interval: float = 0.0,
    ) -> None:
        self.inventory = inventory
        self.interval = interval  # 0: collect at scrape time
        self._page: MetricsPage | None = None
        self.collector = collector
        self.renderer = Renderer()
        self.status: dict[str, CollectorStatus] = {"netns": CollectorStatus()}
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.registry.register(SelfMetrics(inventory, self.status, self._namespaces))
        # process_* (CPU seconds, resident memory, open fds, start time) of the agent itself, from
        # /proc/self like every client_python exporter: the agent's own procfs, not --path.procfs.
        self.registry.register(ProcessCollector(registry=None))
        self._inflight: asyncio.Future[MetricsPage] | None = None
        self.last_result: CollectResult | None = None

    def _namespaces(self) -> int:
        return len(self.last_result.samples) if self.last_result is not None else 0

    async def scrape(
        self, gzip_ok: bool = False, openmetrics: bool = False, names: Collection[str] | None = None
    ) -> bytes:
        """The exposition body: text 0.0.4 or OpenMetrics, only `names` if given, gzip when gzip_ok."""
        if self.interval > 0 and self._page is not None:
            page = self._page
        else:
            page = await self.collect()
        return await asyncio.to_thread(page.body, openmetrics, names, gzip_ok)

    async def collect(self) -> MetricsPage:
        """Collect and render now (single flight: concurrent callers share one run)."""
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(asyncio.to_thread(self._scrape_blocking))
            self._inflight.add_done_callback(lambda _: setattr(self, "_inflight", None))
        page = await asyncio.shield(self._inflight)
        if self.interval > 0:  # only interval mode answers from the last collection
            self._page = page
        return page

    async def run_interval(self) -> None:
        """Interval mode: collect every `interval` seconds, and promptly when the inventory changes."""
        changed = self.inventory.changed
        while True:
            changed.clear()
            await self.collect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=self.interval)
                # A stack deploy starts dozens of containers at once: take them in one pass.
                await asyncio.sleep(0.05)

    def _scrape_blocking(self) -> MetricsPage:
        t0 = time.perf_counter()
        inv = self.inventory
        snap = inv.snapshot
        res = self.collector.collect(snap.containers.values(), snap.networks)
        self.last_result = res
        st = self.status["netns"]
        # A namespace that vanished mid-scrape is not a failure; an unreadable one is.
        st.success = 0.0 if res.errors else 1.0
        known = {cid: c for cid in inv.container_events if (c := inv.known(cid)) is not None}
        exposition = self.renderer.render(
            snap.node, snap.node_id, res, dict(inv.container_events), known, snap.containers.values()
        )
        # Keep the identity strings of every running container, not only those with events:
        # containers already running at agent start have none and were re-rendered every scrape.
        self.renderer.forget_except([*snap.containers, *known])
        st.duration = time.perf_counter() - t0
        return MetricsPage(exposition, self.registry.collect())
