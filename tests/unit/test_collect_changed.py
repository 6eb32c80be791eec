"""Interval mode on an inventory change reads only new namespaces (issue 14: container churn
re-read every namespace, 35 % of a core at 300 containers); the timer still reads them all."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from agent import netstats, nsfiles
from agent.collector import Key, Registry
from agent.docker.models import Container, NetworkAttachment
from agent.inventory import Inventory, Snapshot
from agent.netstats import NetCollector
from exporters.prometheus import names
from exporters.prometheus.render import Renderer
from exporters.prometheus.scrape import Scraper
from tests.support.toolbox import ScriptedFS, captured_procfs, container, until

HOST_INO = 4026531833
WEB, API, DB = container(1, "web"), container(2, "api"), container(3, "db")
T = TypeVar("T")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every /proc file the collector reads, in order."""
    got: list[str] = []

    def counting(real: Callable[[str, bool], T]) -> Callable[[str, bool], T]:
        def read(path: str, single: bool = False) -> T:
            got.append(path)
            return real(path, single)

        return read

    monkeypatch.setattr(netstats, "_read", counting(netstats._read))  # net/route, when mapping networks
    for cls in (nsfiles.Kept, nsfiles.Opened):  # the counters' files, kept open or not
        real = cls.read

        def by_name(
            self: nsfiles.Kept | nsfiles.Opened, name: str, single: bool = False, real: Any = real
        ) -> bytes:
            got.append(self.prefix + name)
            return cast(bytes, real(self, name, single))

        monkeypatch.setattr(cls, "read", by_name)
    return got


def pids(paths: list[str]) -> set[int]:
    return {int(p.split("/")[-3]) for p in paths}


def test_only_new_namespaces_are_read(tmp_path: Path, reads: list[str]) -> None:
    everyone = [WEB, API, DB]
    root = captured_procfs(tmp_path, {1: "host", **{c.pid: "container" for c in everyone}})
    links = {1: HOST_INO, WEB.pid: 11, API.pid: 12, DB.pid: 13}
    col = NetCollector(ScriptedFS(procfs=root, links=links), mib_fields=names.MIB_FIELDS)  # as the agent

    def snap(*cs: Container) -> Snapshot:
        return Snapshot(containers={c.id: c for c in cs})

    full = col.collect(snap(WEB, API))
    assert pids(reads) == {1, WEB.pid, API.pid}
    reads.clear()

    # db starts: only its namespace is read; the others' samples are the last run's.
    grown = col.collect_changed(snap(WEB, API, DB))
    assert pids(reads) == {DB.pid}
    old = {s.inode: s for s in full.samples}
    assert all(s is old[s.inode] for s in grown.samples if s.inode != 13)
    reads.clear()

    # api leaves: nothing read, its namespace gone; db connected to a network: read again.
    db2 = replace(DB, networks=(NetworkAttachment("back", "nid", "10.0.0.3", 24),))
    shrunk = col.collect_changed(snap(WEB, db2))
    assert pids(reads) == {DB.pid}
    assert {s.inode for s in shrunk.samples} == {11, 13, HOST_INO}
    reads.clear()

    # The same files: what a change-only run renders equals a full run's.
    def text(res: netstats.CollectResult, cs: list[object]) -> str:
        return Renderer().render("n", "", res, {}, {}, cs).text()  # type: ignore[arg-type]

    assert text(shrunk, [WEB, db2]) == text(NetCollector(col.fs).collect(snap(WEB, db2)), [WEB, db2])
    # The timer's run reads everything again.
    col.collect(snap(WEB, db2))
    assert pids(reads) == {1, WEB.pid, DB.pid}


@dataclass(frozen=True, slots=True)
class Runs:
    errors: int = 0


class Calls:
    """An Incremental collector that records which entry point each run used."""

    key: Key[Runs] = Key("calls")

    def __init__(self) -> None:
        self.calls: list[str] = []

    def collect(self, snap: Snapshot) -> Runs:
        self.calls.append("full")
        return Runs()

    def collect_changed(self, snap: Snapshot) -> Runs:
        self.calls.append("changed")
        return Runs()


async def test_interval_loop_reads_changes_only_on_a_change() -> None:
    inv = Inventory()
    calls = Calls()
    scraper = Scraper(inv, Registry(calls), interval=3600.0)  # the timer never fires here
    task = asyncio.create_task(scraper.run_interval())
    try:
        await until(lambda: calls.calls == ["full"], what="the first, full collection")
        inv.changed.set()
        await until(lambda: calls.calls == ["full", "changed"], what="a change-only collection")
        # A scrape in interval mode answers from that collection: no run of its own.
        assert b"dockwatch_scrape_collector_success" in await scraper.scrape()
        assert calls.calls == ["full", "changed"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
