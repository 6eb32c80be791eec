"""Collectors are isolated units: one that raises costs only its own result (issue 9 item 2,
issue 10 item 1). The same against a real engine and a running agent: tests/integration/test_collectors.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.collector import Key, Registry
from agent.hostfs import HostFS
from agent.inventory import Inventory, Snapshot
from agent.netstats import NETNS, NetCollector
from exporters.prometheus.scrape import Scraper
from tests.support.toolbox import container


@dataclass(frozen=True, slots=True)
class Count:
    n: int
    errors: int = 0


class Counter:
    """Counts its runs; raises on the runs listed in `fail`."""

    def __init__(self, name: str, fail: set[int] | None = None) -> None:
        self.key: Key[Count] = Key(name)
        self.fail = fail or set()
        self.runs = 0

    def collect(self, snap: Snapshot) -> Count:
        self.runs += 1
        if self.runs in self.fail:
            raise RuntimeError(f"{self.key.name} broke on run {self.runs}")
        return Count(self.runs)


def test_a_raising_collector_fails_alone() -> None:
    ok, bad = Counter("ok"), Counter("bad", fail={1})
    reg = Registry(ok, bad)
    col = reg.collect(Snapshot())
    assert col.outcomes["bad"].success is False and "broke on run 1" in col.outcomes["bad"].error
    assert col.result(bad.key) is None
    assert col.outcomes["ok"].success is True and col.result(ok.key) == Count(1)
    # The next run of the same collector is a run like any other.
    col = reg.collect(Snapshot())
    assert col.outcomes["bad"].success is True and col.result(bad.key) == Count(2)


def test_partial_errors_mean_success_0_with_a_result() -> None:
    class Partial:
        key: Key[Count] = Key("partial")

        def collect(self, snap: Snapshot) -> Count:
            return Count(1, errors=2)

    col = Registry(Partial()).collect(Snapshot())
    assert col.outcomes["partial"].success is False and col.result(Partial.key) == Count(1, errors=2)


def test_a_collector_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        Registry(Counter("x"), Counter("x"))


async def test_background_collectors_run_on_their_own_interval_and_survive_a_raise() -> None:
    fg, bg = Counter("fg"), Counter("bg", fail={2})
    reg = Registry(fg)
    reg.register(bg, interval=0.01)
    assert reg.collect(Snapshot()).outcomes.keys() == {"fg"}  # none before its first run
    task = asyncio.create_task(reg.run_background(Snapshot))
    try:
        for _ in range(500):
            if bg.runs >= 4:
                break
            await asyncio.sleep(0.01)
        assert bg.runs >= 4 and not task.done()
        col = reg.collect(Snapshot())
        assert col.outcomes["bg"].success is True and col.result(bg.key) is not None
        # A one-shot reader runs every collector now.
        runs = bg.runs
        col = reg.collect(Snapshot(), everything=True)
        assert bg.runs > runs and col.outcomes["bg"].success
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Boom:
    key: Key[Count] = Key("boom")

    def collect(self, snap: Snapshot) -> Count:
        raise ValueError("boom")


class BrokenFamilies:
    def collect(self) -> list[Metric]:
        raise KeyError("log pipeline internals moved")


class GoodFamilies:
    def collect(self) -> list[Metric]:
        return [GaugeMetricFamily("dockwatch_test_gauge", "A gauge.", value=3)]


def samples(body: bytes) -> dict[tuple[str, str], float]:
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, s.labels.get("collector", ""))] = s.value
    return out


@pytest.mark.parametrize("interval", [0.0, 0.01])
async def test_scraper_serves_with_a_raising_collector_in_both_modes(interval: float) -> None:
    c = container(1, "web")
    inv = Inventory()
    inv._snap = Snapshot(containers={c.id: c}, node="n", generation=1)
    reg = Registry(NetCollector(HostFS(procfs=Path("/nonexistent")), host_netns=False), Boom())
    scraper = Scraper(inv, reg, interval=interval)
    scraper.registry.register(BrokenFamilies(), name="logs")
    scraper.registry.register(GoodFamilies(), name="extra")
    loop = asyncio.create_task(scraper.run())
    try:
        for _ in range(3):
            m = samples(await scraper.scrape())
            assert m[("dockwatch_scrape_collector_success", "boom")] == 0
            assert m[("dockwatch_scrape_collector_success", "logs")] == 0
            assert m[("dockwatch_scrape_collector_success", "netns")] == 1
            assert m[("dockwatch_scrape_collector_success", "extra")] == 1
            assert m[("dockwatch_test_gauge", "")] == 3  # the other exposition collector's families
            assert m[("dockwatch_containers_tracked", "")] == 1
            await asyncio.sleep(0.02)
        assert not loop.done()  # interval mode: the loop goes on
        assert scraper.last is not None and scraper.last.result(NETNS) is not None
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_interval_loop_ends_when_cancelled_as_the_inventory_changes() -> None:
    """Shutdown cancels the loop; if the inventory changes in the same instant, asyncio.wait_for
    (Python 3.11) returned the event's result and swallowed the cancellation: SIGTERM then hung."""
    inv = Inventory()
    reg = Registry(NetCollector(HostFS(procfs=Path("/nonexistent")), host_netns=False))
    scraper = Scraper(inv, reg, interval=30.0)
    task = asyncio.create_task(scraper.run_interval())
    for _ in range(500):  # until the first collection is in and the loop waits for a change
        if scraper.last is not None:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    inv.changed.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()
