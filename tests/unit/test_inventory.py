"""The inventory's event handling against a scripted engine (the real one is in tests/integration):
destroy is not queued behind other containers' inspect calls, counters exist at 0 from first sight,
and thousands of events while a worker thread scrapes change nothing it reads."""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.collector import Registry
from agent.docker.client import Event
from agent.docker.models import Container, EngineError, Info, NotFound, Version
from agent.hostfs import HostFS
from agent.inventory import COUNTED_ACTIONS, HEALTH_ACTION, EngineInventory, Inventory
from agent.netstats import NetCollector, TcpStatesCollector
from exporters.prometheus.scrape import Scraper
from tests.support.toolbox import container, until

REPO = Path(__file__).resolve().parents[2]


def ctr(n: int, health: str = "") -> Container:
    return replace(container(n, f"c{n}"), pid=1000 + n, health=health)


def ev(action: str, cid: str, typ: str = "container") -> Event:
    return Event(type=typ, action=action, actor_id=cid)


class ScriptedEngine:
    """The DockerClient calls the inventory makes, answered from a dict; events from a queue.

    `gates[id]` holds that container's inspect until set (an engine slow to answer)."""

    def __init__(self, running: list[Container]) -> None:
        self.host = "unix:///scripted.sock"
        self.api_version = "1.41"
        self.containers = {c.id: c for c in running}
        self.running = [c.id for c in running]
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.gates: dict[str, asyncio.Event] = {}
        self.inspecting: set[str] = set()
        self.failures: dict[str, int] = {}  # id -> inspect calls that fail (engine busy) before one works
        self.subscriptions = 0

    def push(self, *events: Event) -> None:
        for e in events:
            self.queue.put_nowait(e)

    async def negotiate(self) -> Version:
        return Version(version="test", api_version="1.41")

    async def info(self) -> Info:
        return Info(name="n1")

    async def running_container_ids(self) -> list[str]:
        return list(self.running)

    async def networks(self) -> list[Any]:
        return []

    async def inspect(self, cid: str) -> Container:
        gate = self.gates.get(cid)
        if gate is not None:
            self.inspecting.add(cid)
            await gate.wait()
            self.inspecting.discard(cid)
        if self.failures.get(cid, 0) > 0:
            self.failures[cid] -= 1
            raise EngineError(f"GET /containers/{cid}/json: TimeoutError")
        c = self.containers.get(cid)
        if c is None:
            raise NotFound(cid, 404)
        return c

    async def events(self, opened: Callable[[], Awaitable[None]]) -> AsyncIterator[Event]:
        self.subscriptions += 1
        await opened()
        while (e := await self.queue.get()) is not None:
            yield e
        raise EngineError("stream closed")


async def started(engine: ScriptedEngine) -> tuple[Inventory, asyncio.Task[None]]:
    inv = EngineInventory(engine)  # type: ignore[arg-type]
    task = asyncio.create_task(inv.run())
    await until(inv.ready.is_set, what="first listing")
    return inv, task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_destroy_is_not_queued_behind_another_containers_inspect() -> None:
    a, b = ctr(1), ctr(2)
    engine = ScriptedEngine([b])
    inv, task = await started(engine)
    try:
        assert b.id in inv.snapshot.containers
        engine.containers[a.id] = a
        engine.gates[a.id] = asyncio.Event()  # A's inspect hangs: the engine is busy
        engine.push(ev("start", a.id), ev("kill", b.id), ev("die", b.id), ev("destroy", b.id))
        await until(lambda: a.id in engine.inspecting, what="A's inspect under way")
        # B's die and destroy are read while A's inspect is still waiting for the engine.
        await until(
            lambda: b.id not in inv.snapshot.containers and b.id not in inv.container_events,
            what="B removed, its event series gone",
        )
        assert a.id in engine.inspecting and a.id not in inv.snapshot.containers
        engine.gates[a.id].set()
        await until(lambda: a.id in inv.snapshot.containers, what="A added once inspected")
    finally:
        await stop(task)


async def test_a_die_drops_the_answer_of_an_inspect_in_flight() -> None:
    """start, then die before the engine answered the inspect: the container is not brought back."""
    a = ctr(1)
    engine = ScriptedEngine([])
    inv, task = await started(engine)
    try:
        engine.containers[a.id] = a
        engine.gates[a.id] = asyncio.Event()
        engine.push(ev("start", a.id), ev("die", a.id))
        await until(lambda: inv.container_events.get(a.id, {}).get("die") == 1, what="die counted")
        engine.gates[a.id].set()
        await until(lambda: not engine.inspecting, what="the inspect answered")
        for _ in range(3):  # let the answer's task finish
            await asyncio.sleep(0)
        assert a.id not in inv.snapshot.containers
        # A later start of the same container (a restart policy) is followed again.
        engine.gates.pop(a.id)
        engine.push(ev("start", a.id))
        await until(lambda: a.id in inv.snapshot.containers, what="restarted container back")
    finally:
        await stop(task)


async def test_counters_exist_at_zero_from_first_sight() -> None:
    listed, healthy = ctr(1), ctr(2, health="starting")
    engine = ScriptedEngine([listed, healthy])
    inv, task = await started(engine)
    try:
        zero = dict.fromkeys(COUNTED_ACTIONS, 0)
        # Seen in the first listing, before any event of theirs.
        assert inv.container_events[listed.id] == zero
        assert inv.container_events[healthy.id] == {**zero, HEALTH_ACTION: 0}
        # Seen through its start event: start is 1 at once, the others 0.
        new = ctr(3)
        engine.containers[new.id] = new
        engine.push(ev("start", new.id))
        await until(lambda: new.id in inv.snapshot.containers, what="new container seen")
        assert inv.container_events[new.id] == {**zero, "start": 1}
        engine.push(ev("die", listed.id))
        await until(lambda: listed.id not in inv.snapshot.containers, what="die handled")
        assert inv.container_events[listed.id] == {**zero, "die": 1}
        assert inv.known(listed.id) == listed  # still labelled after the die (restart loops)
    finally:
        await stop(task)


async def test_a_failing_inspect_is_retried_then_the_inventory_relists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing is left out silently: an inspect that fails is retried; if it keeps failing, the
    inventory re-lists (as it did at once before inspects ran in their own tasks)."""
    monkeypatch.setattr("agent.inventory._RETRY_DELAYS", (0.01, 0.01))
    a, b = ctr(1), ctr(2)
    engine = ScriptedEngine([])
    inv, task = await started(engine)
    try:
        engine.containers.update({a.id: a, b.id: b})
        engine.running.append(a.id)
        engine.failures[a.id] = 2  # fails twice, then answers: the retries are enough
        engine.push(ev("start", a.id))
        await until(lambda: a.id in inv.snapshot.containers, what="A added after two retries")
        assert engine.subscriptions == 1
        engine.failures[b.id] = 3  # fails every attempt: re-list, which sees it running
        engine.running.append(b.id)
        engine.push(ev("start", b.id))
        await until(lambda: engine.subscriptions == 2, what="a new subscription and listing")
        await until(lambda: b.id in inv.snapshot.containers, what="B listed")
        assert inv.reconnects == 1 and a.id in inv.snapshot.containers
    finally:
        await stop(task)


async def test_counters_of_running_containers_outlive_the_bound() -> None:
    """Thousands of other ids with events (created, never started) push out old entries, never a
    running container's: its zero counters must not vanish and come back at 1."""
    running = ctr(1)
    engine = ScriptedEngine([running])
    inv, task = await started(engine)
    try:
        engine.push(*(ev("create", ctr(50_000 + i).id) for i in range(3000)))
        await until(engine.queue.empty, what="creates consumed")
        await until(lambda: inv.events_total.get(("container", "create")) == 3000, what="counted")
        assert inv.container_events[running.id] == dict.fromkeys(COUNTED_ACTIONS, 0)
        assert len(inv.container_events) <= 2048
        assert ctr(50_000 + 2999).id in inv.container_events  # the newest kept, the oldest dropped
        assert ctr(50_000).id not in inv.container_events
    finally:
        await stop(task)


def test_zeroed_actions_cover_every_action_the_dashboards_and_alerts_count() -> None:
    """Each action that a dashboard (grafana/*.py) or an alert rule takes increase() of exists at 0."""
    build = "".join(p.read_text() for p in sorted((REPO / "grafana").glob("*.py")))
    used = set(re.findall(r"action\('(\w+)'\)", build))
    for alternatives in re.findall(r"action=~\"([\w|]+)\"", build):
        used.update(alternatives.split("|"))
    for rules in (REPO / "grafana" / "alerts").glob("*.rules.yml"):
        used.update(re.findall(r'action="(\w+)"', rules.read_text()))
    assert {"die", "oom", "kill", "start", "restart", "health_status"} <= used  # the parse found them
    assert used <= {*COUNTED_ACTIONS, HEALTH_ACTION}


def make_scraper(inv: Inventory, interval: float) -> Scraper:
    """A scraper over a procfs with no processes: collection is cheap, so the race window is wide."""
    fs = HostFS(procfs=Path("/nonexistent"))
    reg = Registry(NetCollector(fs, host_netns=False))
    reg.register(TcpStatesCollector(fs, host_netns=False), interval=0.001)
    return Scraper(inv, reg, interval=interval)


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    """Switch threads every 0.1 ms instead of 5 ms: a race that a busy host hits now and then
    (the scrape thread reading while the loop writes) is hit many times within seconds."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.usefixtures("fast_thread_switching")
async def test_thousands_of_events_while_scraping_in_both_modes() -> None:
    """The scrape thread iterated an OrderedDict the event loop mutated; interval mode then died."""
    running = [ctr(i) for i in range(1, 21)]
    engine = ScriptedEngine(running)
    inv, task = await started(engine)
    # Created, never started: counted per container all the same. Many counters make the scrape
    # thread's pass over them long, as on a busy host.
    engine.push(*(ev("create", ctr(100_000 + i).id) for i in range(10_000)))
    await until(engine.queue.empty, what="creates consumed")
    at_scrape, interval = make_scraper(inv, 0.0), make_scraper(inv, 0.001)
    background = asyncio.create_task(interval.run())
    failures: list[BaseException] = []
    bodies = 0
    done = threading.Event()

    def scrape_loop() -> None:
        nonlocal bodies
        while not done.is_set():
            try:
                at_scrape._scrape_blocking()
                bodies += 1
            except BaseException as exc:
                failures.append(exc)

    thread = threading.Thread(target=scrape_loop)
    thread.start()
    kills: dict[str, int] = {}
    try:
        for i in range(6000):
            c = running[(i * 7) % len(running)]
            kills[c.id] = kills.get(c.id, 0) + 1
            # Containers coming and going too: new ids inserted, old ones forgotten.
            gone = ctr(10_000 + i)
            engine.push(ev("kill", c.id), ev("create", gone.id), ev("destroy", gone.id))
        # The loop works through them while the threads scrape.
        await until(engine.queue.empty, timeout=60, what="events consumed")
        await until(lambda: inv.events_total.get(("container", "kill")) == 6000, what="all events counted")
    finally:
        done.set()
        thread.join()
    try:
        assert not failures, f"{len(failures)} scrapes failed: {failures[:3]}"
        assert bodies > 0
        assert not background.done(), background
        body = (await at_scrape.collect()).body().decode()
        got = {
            s.labels["name"]: s.value
            for fam in text_string_to_metric_families(body)
            for s in fam.samples
            if s.name == "dockwatch_container_events_total" and s.labels["action"] == "kill"
        }
        assert got == {c.name: kills.get(c.id, 0) for c in running}
    finally:
        background.cancel()
        await asyncio.gather(background, return_exceptions=True)
        await stop(task)
