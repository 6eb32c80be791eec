"""What a collector is, and the one registry that runs them (node_exporter's collector.go).

A collector is an isolated unit: it gets an immutable inventory Snapshot and returns its own
result, an immutable value with an `errors` count. The registry runs each one in its own try,
times it, and records an Outcome (success, duration); one failing collector costs only its own
result, never the others', never the agent or /metrics.

    foreground units (interval 0):   Registry.collect(snap) ──► run now, each isolated ─┐
    background units (interval > 0): Registry.run_background() ──► run every interval,  ├─► Collection
                                     outcome swapped whole on the event loop ──────────┘  (immutable)

Registry.collect() is blocking (file I/O): call it in a worker thread. Nothing it reads is
mutated by another thread: the snapshot is immutable and the background outcomes are an
immutable mapping replaced as a whole. Each unit runs at most once at a time, so a collector
may keep a private cache.

Adding a collector: a class with `key` and `collect(snap)`, and one line in agent/collectors.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar, cast, runtime_checkable

from agent.inventory import Snapshot

log = logging.getLogger(__name__)

CLOSE_WAIT = 5.0  # s: at shutdown, how long close() waits for a collector's run in flight


class Result(Protocol):
    """What every collector returns: its samples, and how many parts of them it could not read."""

    @property
    def errors(self) -> int: ...


R = TypeVar("R", bound=Result)
R_co = TypeVar("R_co", bound=Result, covariant=True)


@dataclass(frozen=True, slots=True)
class Key(Generic[R]):
    """A collector's name, typed with its result: `collection.result(NETNS)` is a CollectResult."""

    name: str


class Collector(Protocol[R_co]):
    @property
    def key(self) -> Key[Any]: ...

    def collect(self, snap: Snapshot) -> R_co: ...


@runtime_checkable
class Incremental(Protocol[R_co]):
    """A collector that can refresh only what changed: `collect_changed(snap)` reads the parts
    new since its last run and reuses the rest of that run (interval mode, on an inventory
    change: a container started should not cost a read of every other namespace)."""

    def collect_changed(self, snap: Snapshot) -> R_co: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run of one collector."""

    name: str
    result: Any  # the collector's result; None when it raised
    success: bool  # it returned, with no errors
    duration: float  # wall seconds of the run
    error: str = ""  # why not, when it raised


@dataclass(frozen=True, slots=True)
class Collection:
    """Every collector's latest outcome for one snapshot (background ones: their last run)."""

    snapshot: Snapshot
    outcomes: Mapping[str, Outcome] = field(default_factory=dict)

    def result(self, key: Key[R]) -> R | None:
        o = self.outcomes.get(key.name)
        return cast(R, o.result) if o is not None and o.result is not None else None


@dataclass(slots=True)
class _Unit:
    collector: Collector[Result]
    interval: float  # 0: in every collection; > 0: in the background, this often
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.collector.key.name


def run_one(collector: Collector[Result], snap: Snapshot, changed_only: bool = False) -> Outcome:
    """Run a collector in its own try, with its own clock (node_exporter's execute())."""
    name = collector.key.name
    t0 = time.perf_counter()
    try:
        if changed_only and isinstance(collector, Incremental):
            result = collector.collect_changed(snap)
        else:
            result = collector.collect(snap)
    except Exception as exc:  # the unit fails alone: no result from it, success 0
        log.exception("collector %s failed", name)
        return Outcome(name, None, False, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
    return Outcome(name, result, result.errors == 0, time.perf_counter() - t0)


class Registry:
    """The collectors of this agent, each run isolated; see the module docstring."""

    def __init__(self, *foreground: Collector[Result]) -> None:
        self._units: list[_Unit] = []
        # Background outcomes: only the event loop rebinds this, always to a new immutable mapping.
        self._latest: Mapping[str, Outcome] = MappingProxyType({})
        for c in foreground:
            self.register(c)

    def register(self, collector: Collector[Result], interval: float = 0.0) -> None:
        """Add a collector: run in every collection (interval 0), or in the background every `interval` s."""
        name = collector.key.name
        if any(u.name == name for u in self._units):
            raise ValueError(f"collector {name!r} registered twice")
        self._units.append(_Unit(collector, interval))

    @property
    def names(self) -> list[str]:
        return [u.name for u in self._units]

    def latest(self, key: Key[R]) -> R | None:
        """A background collector's last result (None before its first run, or when it raised)."""
        o = self._latest.get(key.name)
        return cast(R, o.result) if o is not None and o.result is not None else None

    def close(self) -> None:
        """Release what collectors hold between runs (threads, descriptors): those with a `close()`,
        each once its run in flight, if any, is over (a descriptor closed under a reader could be
        reused by another file before the read)."""
        for unit in self._units:
            close = getattr(unit.collector, "close", None)
            if not callable(close):
                continue
            if not unit.lock.acquire(timeout=CLOSE_WAIT):
                log.warning("collector %s still running at shutdown: not closed", unit.name)
                continue
            try:
                close()
            finally:
                unit.lock.release()

    def release_idle(self, idle: float) -> int:
        """Collectors with a `release_idle(idle)` (NetCollector's kept files) let go of what they
        hold when they did not run for `idle` seconds; blocking (waits for a run in flight): call
        it in a worker thread. What they released, in all."""
        released = 0
        for unit in self._units:
            release = getattr(unit.collector, "release_idle", None)
            if callable(release):
                with unit.lock:
                    released += int(release(idle))
        return released

    @property
    def has_background(self) -> bool:
        return any(u.interval > 0 for u in self._units)

    def _run(self, unit: _Unit, snap: Snapshot, changed_only: bool = False) -> Outcome:
        with unit.lock:  # one run of a unit at a time: its private caches need no other lock
            return run_one(unit.collector, snap, changed_only)

    def collect(self, snap: Snapshot, *, everything: bool = False, changed_only: bool = False) -> Collection:
        """Run the foreground collectors now (all of them when `everything`); blocking.

        Background collectors contribute their last outcome (none before their first run),
        unless `everything`, which runs them now too: a one-shot reader such as a terminal view.
        `changed_only`: an Incremental collector reads only what is new since its last run.
        """
        outcomes: dict[str, Outcome] = {}
        latest = self._latest  # one read of the reference: an immutable mapping
        for unit in self._units:
            if unit.interval <= 0 or everything:
                outcomes[unit.name] = self._run(unit, snap, changed_only)
            elif unit.name in latest:
                outcomes[unit.name] = latest[unit.name]
        return Collection(snap, MappingProxyType(outcomes))

    async def run_background(self, snapshot: Callable[[], Snapshot]) -> None:
        """Run every background collector on its own interval, in a worker thread, until cancelled
        (returns at once when there is none)."""
        units = [u for u in self._units if u.interval > 0]
        async with asyncio.TaskGroup() as tg:
            for u in units:
                tg.create_task(self._background(u, snapshot), name=f"collector-{u.name}")

    async def _background(self, unit: _Unit, snapshot: Callable[[], Snapshot]) -> None:
        while True:
            try:
                out = await asyncio.to_thread(self._run, unit, snapshot())
                self._latest = MappingProxyType({**self._latest, unit.name: out})
            except Exception:  # run_one already isolates the collector: this is our own bug
                log.exception("background collector %s: unexpected error", unit.name)
            await asyncio.sleep(unit.interval)
