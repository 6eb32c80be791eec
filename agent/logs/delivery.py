"""Delivery to one sink: batches, the one retry/backoff loop, per-sink counters, checkpoint commits.

    FileTail / ApiTail (one per container x sink)            SinkRunner (one per sink)
      read → parse → join → batch ──── deliver(batch) ────►  [lock] open? send → OK    → commit position
                                                                          └─► RETRY → backoff, same batch
                                                                          └─► FAIL  → counted, commit past

A sink that is down holds only its own tails: each waits with its batch (bounded) while Docker's
files keep the rest; other sinks read on. Sinks come from exporters/ (agent/ does not import them)
and follow the contract in agent/logs/sink.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.clock import SYSTEM_CLOCK, Clock, Wake
from agent.docker.models import Container
from agent.logs.checkpoint import ApiPos, CheckpointStore, FilePos, Position
from agent.logs.record import LogRecord
from agent.logs.sink import DropReason, Outcome, Sink
from agent.logs.sinkspec import SinkSpec
from agent.outage import Outage

log = logging.getLogger(__name__)

BATCH_RECORDS = 1000
BATCH_BYTES = 1 << 20
# json-file tails of one sink that may read and hold a batch at once (one sending, one filling): the
# others wait before reading, their lines still in Docker's files. Without it every tail of a busy
# sink held a full batch while it queued for the sink, so memory grew with the containers writing
# (50 writers x 3 sinks: 150 batches); now it is bounded per sink by FILL_SLOTS x (batch + one read
# chunk), whatever the burst (bench/memory.py). Nothing is dropped: the reads only wait.
FILL_SLOTS = 2
BACKOFF_BASE = 0.2
BACKOFF_CAP = 5.0


@dataclass(slots=True)
class SinkStats:
    """Read by the metrics collector in a scrape thread: plain numbers only."""

    sent: int = 0
    bytes: int = 0
    retries: int = 0
    dropped: dict[DropReason, int] = field(default_factory=dict)
    # json-file files Docker deleted before they were read to the end, and their unread bytes (exact,
    # or a lower bound where only that is knowable: agent/logs/README.md "Rotation").
    files_missed: int = 0
    bytes_missed: int = 0
    last_success: float = 0.0
    lag: float = 0.0

    def drop(self, reason: DropReason, n: int = 1) -> None:
        if n > 0:
            self.dropped[reason] = self.dropped.get(reason, 0) + n


class SinkRunner:
    """One sink: sends one batch at a time, owns the backoff, keeps the counters.

    A sink that keeps failing is reported through an Outage: its first failure, then a summary
    every few minutes, then one line when it delivers again; each attempt is logged at debug.
    """

    def __init__(
        self,
        spec: SinkSpec,
        sink: Sink,
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        clock: Clock = SYSTEM_CLOCK,
        shares_with: SinkRunner | None = None,
    ) -> None:
        """`shares_with`: the runner of the same sink name (its events instance counts and reports
        there: one set of counters and one outage report per name, a dead sink said once)."""
        self.spec = spec
        self.sink = sink
        self.name = spec.name
        # A sink that writes Docker's 16 KiB chunks as they are (json-file) gets them unjoined.
        self.raw_chunks = bool(getattr(sink, "raw_chunks", False))
        self.stats: SinkStats = SinkStats() if shares_with is None else shares_with.stats
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock = clock
        self._backoff = 0.0
        self._lock = asyncio.Lock()
        # FileTail takes a slot before it reads and gives it back once a batch went (FIFO: the
        # tails of a sink take turns, batch by batch) or when it has nothing to read.
        self.fill_slots: asyncio.Semaphore = (
            asyncio.Semaphore(FILL_SLOTS) if shares_with is None else shares_with.fill_slots
        )
        self._opened = False
        self.outage: Outage = (
            Outage(log, f"sink {self.name}", clock=clock) if shares_with is None else shares_with.outage
        )

    async def deliver(self, batch: Sequence[LogRecord], nbytes: int | None = None) -> bool:
        """Send until the sink takes the batch (True) or rejects it for good (False, counted).
        `nbytes`: the sum of its lines' lengths, when the caller knows it."""
        while True:
            async with self._lock:
                outcome, reason = await self._attempt(batch)
                if outcome is Outcome.OK:
                    self._up(batch, nbytes)
                    return True
                if outcome is Outcome.FAIL:
                    self.stats.drop(DropReason.REJECTED, len(batch))
                    log.error("sink %s rejected a batch of %d records; skipped", self.name, len(batch))
                    return False
                self.stats.retries += 1
                self.outage.failed(
                    reason,
                    f"sink {self.name}: cannot deliver: {reason}; retrying with backoff (up to "
                    f"{self.backoff_cap:g}s), its batches wait and nothing is committed past them",
                )
                log.debug("sink %s: attempt failed: %s; retrying", self.name, reason)
                # Capped, jittered exponential backoff; under the lock, so every tail of this sink
                # waits behind the one probe instead of hammering a peer that is down.
                self._backoff = min(self.backoff_cap, self._backoff * 2 or self.backoff_base)
                await self.clock.sleep(self._backoff * (0.75 + random.random() / 2))

    async def _attempt(self, batch: Sequence[LogRecord]) -> tuple[Outcome, str]:
        """The outcome, and why a retry is needed."""
        try:
            if not self._opened:
                await self.sink.open()
                self._opened = True
            res = await self.sink.send(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a sink's bug or a refused open(): retry, never crash the pipeline
            return Outcome.RETRY, f"{type(exc).__name__}: {exc}"
        if res is Outcome.OK or res is Outcome.FAIL:
            return res, ""
        # RETRY (or, from a buggy sink, anything else). Sinks keep the reason of their last RETRY;
        # they log each attempt at debug only.
        return Outcome.RETRY, str(getattr(self.sink, "last_error", "") or "the sink asked to retry")

    def _up(self, batch: Sequence[LogRecord], nbytes: int | None = None) -> None:
        st = self.stats
        self.outage.recovered("delivering again")
        self._backoff = 0.0
        st.sent += len(batch)
        st.bytes += sum(len(r.line) for r in batch) if nbytes is None else nbytes
        now = self.clock.time()
        st.last_success = now
        if batch:
            st.lag = max(0.0, now - batch[-1].time_ns / 1e9)

    async def close(self) -> None:
        if self._opened:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sink.close(), 10)


@dataclass(frozen=True, slots=True)
class TailOptions:
    join_partial: bool = True
    start_at_end: bool = False  # only for containers that existed before the sink's first start
    batch_records: int = BATCH_RECORDS
    batch_bytes: int = BATCH_BYTES
    poll_interval: float = 0.25  # a json-file reader's look for more without inotify (FileTail)
    idle_interval: float = 10.0  # ... with inotify, whose notices wake it: only a fallback
    flush_after: float = 5.0


class Tail:
    """Common part of a source for one (container, sink): batch, deliver, commit, stop."""

    kind = "tail"
    # Slots: thousands of tails (containers x sinks) live at once. With over 30 attributes a tail's
    # __dict__ no longer shares its keys and cost ~1.6 KB per tail (bench/RESULTS.md). `__dict__`
    # stays, empty unless a test replaces a method on one instance.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_save_failed",
        "backlog_bytes",
        "batch",
        "batch_bytes",
        "batch_pos",
        "committed",
        "container",
        "finishing",
        "opts",
        "runner",
        "stopping",
        "store",
        "wake",
    )

    def __init__(
        self, container: Container, runner: SinkRunner, store: CheckpointStore, opts: TailOptions
    ) -> None:
        self.container = container
        self.runner = runner
        self.store = store
        self.opts = opts
        self.batch: list[LogRecord] = []
        self.batch_bytes = 0
        # Where a commit after this batch may move to; in the source's own cheap form (to_position).
        self.batch_pos: Any = None
        self.committed: Position | None = None
        self.finishing = False  # the container is gone: read what is left, then end
        self.stopping = False  # the agent is shutting down: deliver what is batched, then end
        self.wake = Wake()
        self.backlog_bytes = 0
        self._save_failed = False

    @property
    def cid(self) -> str:
        return self.container.id

    def finish(self) -> None:
        self.finishing = True
        self.wake.set()

    def resume(self, container: Container) -> None:
        self.container = container
        self.finishing = False

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def to_position(self, raw: Any) -> Position:
        """The source's in-memory position → what the checkpoint stores."""
        assert isinstance(raw, FilePos | ApiPos)
        return raw

    def add(self, stream: str, time_ns: int, line: bytes, partial: Any, pos: Any) -> None:
        self.batch.append(LogRecord(self.container, stream, time_ns, line, partial))
        self.batch_bytes += len(line)
        self.batch_pos = pos

    def advance(self, pos: Any, pending: bool = False) -> None:
        """Nothing to ship up to `pos` (skipped or corrupt lines): let the next commit cover them,
        unless a line is still being joined (`pending`), whose start the commit must not pass."""
        if not pending:
            self.batch_pos = pos

    @property
    def full(self) -> bool:
        return len(self.batch) >= self.opts.batch_records or self.batch_bytes >= self.opts.batch_bytes

    async def flush(self) -> None:
        """Deliver the batch (retrying as long as it takes) and commit its position."""
        batch, raw = self.batch, self.batch_pos
        if batch:
            await self.runner.deliver(batch, self.batch_bytes)
            self.batch = []
            self.batch_bytes = 0
        if raw is not None:
            pos = self.to_position(raw)
            if pos != self.committed:
                await self.commit(pos)

    async def commit(self, pos: Position) -> None:
        try:
            await asyncio.to_thread(self.store.save, self.runner.name, self.cid, pos)
        except OSError as exc:
            if not self._save_failed:
                log.error("cannot save log checkpoint for %s: %s (delivery goes on)", self.cid[:12], exc)
            self._save_failed = True
        else:
            self._save_failed = False
        self.committed = pos

    async def owe(self, raw: Any) -> None:
        """No checkpoint yet: record where reading starts (`raw`, as for `add`) at once, so that a
        restart, even after SIGKILL, still finishes this container when nothing was delivered."""
        if self.committed is None:
            await self.commit(self.to_position(raw))

    async def load(self) -> Position | None:
        try:
            return await asyncio.to_thread(self.store.load, self.runner.name, self.cid)
        except (OSError, ValueError) as exc:
            log.warning("cannot read log checkpoint for %s: %s", self.cid[:12], exc)
            return None

    async def idle(self, timeout: float) -> None:
        await self.wake.wait(timeout)
        self.wake.clear()

    async def run(self) -> None:
        raise NotImplementedError
