"""The Engine API source: GET /containers/{id}/logs?follow=1&timestamps=1&since=… for one (container, sink).

For drivers whose logs only the engine can read back: `local`, `journald`, and any driver with the
dual-logging cache. `since` is inclusive and has nanosecond resolution, so the checkpoint is
(time of the last delivered entry, how many entries with exactly that time were delivered) and the
boundary duplicates are dropped on resume (moby `daemon/logger/local/read.go` filters `Before(since)`).

A follow stream is not the end of a container: dockerd 20.10 can close it when the container stops
before the last entries were sent (`docker logs -f` misses them too). The tail ends only after a
read without follow, begun once the container is known to have stopped, from the last entry read
(inclusive, boundary deduped) has reached the end.

    client.logs() in a reader task ──frames of a read──► bounded queue ──► Joiner → batch ─► SinkRunner
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agent.docker.client import DockerClient
from agent.docker.models import Container, EngineError, NotFound
from agent.docker.stdcopy import CorruptFrame, LogFrame
from agent.logs.checkpoint import ApiPos, CheckpointStore, Position
from agent.logs.delivery import SinkRunner, Tail, TailOptions
from agent.logs.partial import Joiner
from agent.logs.sink import DropReason

log = logging.getLogger(__name__)

QUEUE_CHUNKS = 64  # reads (each a list of frames) queued at most: a full queue holds the reader back


class Unreadable(Exception):
    """The engine cannot read this container's logs back (driver without reading support)."""


class ApiTail(Tail):
    __slots__ = ("client", "joiner", "on_unreadable", "preexisting", "read_pos")

    kind = "api"

    def __init__(
        self,
        container: Container,
        runner: SinkRunner,
        store: CheckpointStore,
        opts: TailOptions,
        client: DockerClient,
        on_unreadable: Callable[[Container, str], None],
        preexisting: bool = False,
    ) -> None:
        super().__init__(container, runner, store, opts)
        self.client = client
        self.on_unreadable = on_unreadable
        self.preexisting = preexisting
        # hold_last: through the API the last chunk of a split line may lack its newline.
        self.joiner: Joiner[Position] = Joiner(
            join=opts.join_partial, flush_after=opts.flush_after, hold_last=True
        )
        self.read_pos: ApiPos | None = None

    async def run(self) -> None:
        pos = await self.load()
        if isinstance(pos, ApiPos):
            self.committed = self.read_pos = pos
        else:
            if self.preexisting and self.opts.start_at_end:
                self.read_pos = ApiPos(time.time_ns(), 0)
            # Owed from now on: a restart finishes this container even if nothing was delivered.
            await self.owe(self.read_pos or ApiPos(0, 0))
        backoff = 0.2
        while not self.stopping:
            # A read that begins once the container is known to have stopped is the last one, and
            # it does not follow: dockerd 20.10 can end a follow stream before the last entries.
            final = self.finishing
            try:
                ended = await self._follow(follow=not final)
            except Unreadable as exc:
                self.on_unreadable(self.container, str(exc))
                return
            except EngineError as exc:
                if isinstance(exc, NotFound):
                    ended = True
                else:
                    log.warning("container %s logs: %s; reconnecting", self.cid[:12], exc)
                    ended = False
            if ended and final:
                # Everything Docker kept has been read: a line the container never finished goes
                # out as it is. After a mere reconnect the open line stays pending; the next
                # stream continues it.
                for o in self.joiner.flush(end=self.read_pos, force=True):
                    self.add(o.stream, o.time_ns, o.line, o.partial, o.pos)
            if self.batch:
                await self.flush()
            if self.stopping or (ended and final):
                return
            if ended:
                # A followed stream ends when the container stops: once the inventory says so (or
                # at once, if it already has), read again without follow; a restart resumes.
                if not self.finishing:
                    await self.idle(1.0)
                backoff = 0.2
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _follow(self, follow: bool = True) -> bool:
        """One request from `read_pos` (inclusive); True when the engine ended the stream."""
        since = self.read_pos.time_ns if self.read_pos is not None else 0
        # A read's frames, None at the end of the stream, or what ended it.
        queue: asyncio.Queue[list[LogFrame | CorruptFrame] | BaseException | None] = asyncio.Queue(
            QUEUE_CHUNKS
        )

        async def reader() -> None:
            try:
                async for frames in self.client.logs(self.cid, since_ns=since, follow=follow):
                    await queue.put(frames)
                await queue.put(None)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                await queue.put(exc)

        task = asyncio.create_task(reader(), name=f"logs-api-{self.cid[:12]}")
        skip = self.read_pos
        cur_ts, cur_n = (skip.time_ns, skip.n) if skip else (0, 0)
        seen_at_boundary = 0
        try:
            while True:
                item = await queue.get()
                items = [item]
                while len(items) < QUEUE_CHUNKS and not queue.empty():
                    items.append(queue.get_nowait())
                for item in items:
                    if isinstance(item, BaseException):
                        if isinstance(item, EngineError) and item.status in (400, 501):
                            raise Unreadable(str(item))
                        raise item
                    if item is None:
                        return True
                    for frame in item:
                        if isinstance(frame, CorruptFrame):
                            self.runner.stats.drop(DropReason.CORRUPT)
                            continue
                        stream, ts, msg, complete = frame.stream, frame.time_ns, frame.message, frame.complete
                        if skip is not None:
                            if ts < skip.time_ns:
                                continue
                            if ts == skip.time_ns and seen_at_boundary < skip.n:
                                seen_at_boundary += 1  # delivered before: `since` is inclusive
                                continue
                            skip = None
                        start = ApiPos(cur_ts, cur_n)
                        if ts == cur_ts:
                            cur_n += 1
                        else:
                            cur_ts, cur_n = ts, 1
                        end = self.read_pos = ApiPos(cur_ts, cur_n)
                        # A line's chunks share its first chunk's time: another time ends it.
                        outs = self.joiner.close(stream, ts)
                        outs += self.joiner.feed(
                            stream, ts, msg, complete, start, end, f"{self.cid}:{start.time_ns}:{start.n}"
                        )
                        for o in outs:
                            self.add(o.stream, o.time_ns, o.line, o.partial, o.pos)
                        if self.full:
                            await self.flush()
                if self.stopping:
                    return False
                for o in self.joiner.flush(end=self.read_pos):
                    self.add(o.stream, o.time_ns, o.line, o.partial, o.pos)
                if self.batch and queue.empty():
                    await self.flush()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
