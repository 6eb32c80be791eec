"""Docker events as log records: one JSON line per event, through a sink that asks for them.

    Inventory /events ──► LogPipeline.on_event ──► EventShipper.offer (per sink with `events`)
                                                     │ bounded queue; full → dropped{reason="events_overflow"}
                                                     ▼
                                                   SinkRunner.deliver (the same retry loop as logs)

Events are not in Docker's files, so nothing can be replayed: what is queued when the agent stops
is sent within the drain timeout, and events that happen while the agent is down are never seen.
Every record carries the one synthetic container `docker-events` (the events are the engine's, not
a container's); its sink renders the sink's `events-tag` as the tag (app.py builds that sink).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from agent.clock import within
from agent.docker.client import Event
from agent.docker.models import Container
from agent.logs.delivery import BATCH_RECORDS, SinkRunner
from agent.logs.record import LogRecord
from agent.logs.sink import DropReason

log = logging.getLogger(__name__)

EVENTS_ID = "docker-events"
EVENTS_CONTAINER = Container(
    id=EVENTS_ID, name=EVENTS_ID, image="", image_id="", pid=0, network_mode="none", log_driver="events"
)
QUEUE_MAX = 10_000  # a few MiB at most; beyond that a sink down that long loses events, counted


def event_line(ev: Event) -> bytes:
    """Pure: the event in the shape of the Engine API's own /events JSON (`docker events --format
    '{{json .}}'`), so consumers parse it as they would Docker's; Action is the unnormalised one."""
    obj = {
        "Type": ev.type,
        "Action": ev.raw_action or ev.action,
        "Actor": {"ID": ev.actor_id, "Attributes": dict(ev.attributes)},
        "time": ev.time_nano // 1_000_000_000,
        "timeNano": ev.time_nano,
    }
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def event_record(ev: Event) -> LogRecord:
    """Pure: one event → one record of the synthetic `docker-events` container."""
    return LogRecord(EVENTS_CONTAINER, "stdout", ev.time_nano or time.time_ns(), event_line(ev))


class EventShipper:
    """One sink's events: a bounded queue drained in batches by one task."""

    def __init__(self, runner: SinkRunner, maxsize: int = QUEUE_MAX, batch: int = BATCH_RECORDS) -> None:
        self.runner = runner
        self.name = runner.name
        self.queue: asyncio.Queue[LogRecord] = asyncio.Queue(maxsize)
        self.batch = batch
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        self._inflight = 0

    def offer(self, ev: Event) -> None:
        """Called on the event loop for every event; never blocks the inventory."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"logs-events-{self.name}")
        try:
            self.queue.put_nowait(event_record(ev))
        except asyncio.QueueFull:
            self.runner.stats.drop(DropReason.EVENTS_OVERFLOW)
            if not self._warned:
                log.warning("sink %s: events queue full (sink down?); dropping docker events", self.name)
                self._warned = True
        else:
            self._warned = False

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._inflight = len(batch)
            await self.runner.deliver(batch)
            self._inflight = 0
            for _ in batch:
                self.queue.task_done()

    async def stop(self, timeout: float) -> None:
        """Send what is queued (up to `timeout`), then close the sink; the rest is counted lost."""
        task = self._task
        if task is not None:
            await within(timeout, self.queue.join())
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        left = self.queue.qsize() + self._inflight
        if left:
            self.runner.stats.drop(DropReason.EVENTS_OVERFLOW, left)
            log.warning("sink %s: %d docker events not sent before exit; lost", self.name, left)
        await self.runner.close()
