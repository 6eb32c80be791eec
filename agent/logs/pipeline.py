"""The log pipeline: one tail per (container, sink), started and finished by the inventory.

    Inventory ──added/updated/removed──► LogPipeline ──► FileTail | ApiTail  (per container x sink)
                                              │                 └─► SinkRunner (per sink) ─► Sink
                                              ├─► unreadable containers (metric + one log line each)
                                              └─► EventShipper (per sink with `events`): docker events

Source per container: `json-file` → Docker's files; a TTY or the `none` driver → unreadable;
anything else → the Engine API (local, journald, or a driver with the dual-logging cache; if the
engine answers that it cannot read them, the container is listed as unreadable).
Shutdown (`stop`): tails stop reading, in-flight batches get `timeout` seconds to finish, their
checkpoints are written, then the sinks are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from agent.docker.client import DockerClient, Event
from agent.docker.models import Container, EngineError, NotFound
from agent.hostfs import HostFS
from agent.logs.api import ApiTail
from agent.logs.checkpoint import CheckpointStore
from agent.logs.delivery import SinkRunner, Tail, TailOptions
from agent.logs.events import EventShipper
from agent.logs.filters import opted_out
from agent.logs.tail import FileTail
from agent.logs.watch import DirWatcher

log = logging.getLogger(__name__)

FILE_DRIVERS = ("json-file",)
PERMISSION = "permission"


class LogPipeline:
    def __init__(
        self,
        runners: Sequence[SinkRunner],
        hostfs: HostFS,
        state_dir: Path,
        client: DockerClient | None,
        opts: TailOptions,
        events: Sequence[EventShipper] = (),
    ) -> None:
        self.runners = list(runners)
        self.events = list(events)
        self.hostfs = hostfs
        self.store = CheckpointStore(state_dir)
        self.client = client
        self.opts = opts
        self.tails: dict[tuple[str, str], Tail] = {}
        self.tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.unreadable: dict[str, str] = {}  # container id -> reason
        self.watcher = DirWatcher()  # one inotify thread for every FileTail
        self._first_listing = True
        self._stopping = False
        self._aux: set[asyncio.Task[None]] = set()

    # --- inventory listener (called on the event loop) ------------------------------------------
    def on_container(self, kind: str, c: Container) -> None:
        if self._stopping:
            return
        if kind == "removed":
            self.unreadable.pop(c.id, None)
            for (cid, _), tail in list(self.tails.items()):
                if cid == c.id:
                    tail.finish()
            return
        self._start(c)

    def on_event(self, ev: Event) -> None:
        """Every event goes to the sinks that ship events. And a container that exited before the
        inventory saw it running (a fast `docker run`) still wrote logs: on its `die`, read them from
        the start if no tail has."""
        if self._stopping:
            return
        for shipper in self.events:
            shipper.offer(ev)
        if ev.type != "container" or ev.action != "die" or self.client is None:
            return
        if any(cid == ev.actor_id for cid, _ in self.tails):
            return
        task = asyncio.create_task(self._catch_up(ev.actor_id), name=f"logs-catch-up-{ev.actor_id[:12]}")
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)

    async def _catch_up(self, cid: str) -> None:
        assert self.client is not None
        try:
            c = await self.client.inspect(cid)
        except EngineError:
            return  # gone already (`--rm`): nothing left to read
        self._start_finishing(c)

    def _start_finishing(self, c: Container, runners: Sequence[SinkRunner] | None = None) -> None:
        """Tails that read a stopped container's logs to the end, then end."""
        if self._stopping or opted_out(c) or self._unreadable_reason(c):
            return
        for r in self.runners if runners is None else runners:
            key = (c.id, r.name)
            if key in self.tails or not r.spec.wants(c):
                continue
            tail = self._make_tail(c, r)
            tail.finishing = True
            self.tails[key] = tail
            name = f"logs-{r.name}-{c.short_id}"
            self.tasks[key] = asyncio.create_task(self._run_tail(key, tail), name=name)

    def listing_done(self) -> None:
        """The first inventory listing is in: containers seen later are new, read from their start."""
        self._first_listing = False

    async def resume_stopped(self) -> None:
        """Containers that stopped while the agent was down still have lines past their checkpoint:
        read those to the end. A checkpoint whose container is gone is deleted."""
        if self.client is None:
            return
        for r in self.runners:
            for cid in await asyncio.to_thread(self.store.containers, r.name):
                if (cid, r.name) in self.tails or self._stopping:
                    continue
                try:
                    c = await self.client.inspect(cid)
                except NotFound:
                    await asyncio.to_thread(self.store.delete, r.name, cid)
                    continue
                except EngineError as exc:
                    log.warning("cannot inspect %s to finish its logs: %s", cid[:12], exc)
                    continue
                self._start_finishing(c, [r])

    def _start(self, c: Container) -> None:
        if opted_out(c) or not any(r.spec.wants(c) for r in self.runners):
            self.unreadable.pop(c.id, None)  # nobody wants its logs: not a gap worth reporting
            return
        reason = self._unreadable_reason(c)
        if reason:
            if c.id not in self.unreadable:
                log.warning(
                    "container %s (%s): logs cannot be read (%s); not shipped", c.name, c.short_id, reason
                )
            self.unreadable[c.id] = reason
            return
        if self.unreadable.get(c.id) != PERMISSION:  # only the tail that reads again clears that
            self.unreadable.pop(c.id, None)
        for r in self.runners:
            key = (c.id, r.name)
            tail = self.tails.get(key)
            if tail is not None:
                tail.resume(c)
                continue
            if opted_out(c) or not r.spec.wants(c):
                continue
            tail = self._make_tail(c, r)
            self.tails[key] = tail
            task = asyncio.create_task(self._run_tail(key, tail), name=f"logs-{r.name}-{c.short_id}")
            self.tasks[key] = task

    def _unreadable_reason(self, c: Container) -> str:
        if c.log_driver == "none":
            return "driver_none"
        if c.log_driver not in FILE_DRIVERS and c.tty:
            return "tty"  # the API's raw TTY stream has no frame boundaries to find partial lines by
        if c.log_driver not in FILE_DRIVERS and self.client is None:
            return f"driver_{c.log_driver or 'unknown'}"
        return ""

    def _make_tail(self, c: Container, r: SinkRunner) -> Tail:
        pre = self._first_listing
        if c.log_driver in FILE_DRIVERS:
            path = self.hostfs.container_dir(c.id) / f"{c.id}-json.log"
            return FileTail(
                c,
                r,
                self.store,
                self.opts,
                path,
                preexisting=pre,
                on_denied=self._mark_denied,
                watcher=self.watcher,
            )
        assert self.client is not None
        return ApiTail(c, r, self.store, self.opts, self.client, self._mark_unreadable, preexisting=pre)

    def _mark_unreadable(self, c: Container, why: str) -> None:
        reason = f"driver_{c.log_driver or 'unknown'}"
        if c.id not in self.unreadable:
            log.warning(
                "container %s (%s): the engine cannot read its logs (%s); skipped", c.name, c.short_id, why
            )
        self.unreadable[c.id] = reason

    def _mark_denied(self, c: Container, exc: OSError | None) -> None:
        """A FileTail cannot open Docker's file (`exc`), or can again (None). As non-root the agent
        meets 0640 files in 0710 directories; the tail keeps trying, so a fixed permission heals."""
        if exc is None:
            if self.unreadable.get(c.id) == PERMISSION:
                del self.unreadable[c.id]
                log.info("container %s (%s): its log file is readable again", c.name, c.short_id)
            return
        if self._stopping or c.id in self.unreadable:
            return
        log.warning(
            "container %s (%s): cannot read its log file (%s); retrying (does the agent run as root?)",
            c.name,
            c.short_id,
            exc,
        )
        self.unreadable[c.id] = PERMISSION

    async def _run_tail(self, key: tuple[str, str], tail: Tail) -> None:
        delay = 1.0
        try:
            while True:
                try:
                    await tail.run()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("log tail %s/%s failed; restarting from checkpoint", key[1], key[0][:12])
                if tail.stopping or self._stopping:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                fresh = self._make_tail(tail.container, tail.runner)
                fresh.finishing = tail.finishing
                self.tails[key] = tail = fresh
        finally:
            if self.tails.get(key) is tail:
                del self.tails[key]
                self.tasks.pop(key, None)
            if tail.finishing and not self._stopping:
                if self.unreadable.get(tail.cid) == PERMISSION:  # gone: no longer a gap to report
                    del self.unreadable[tail.cid]
                await self._forget_if_destroyed(tail)

    async def _forget_if_destroyed(self, tail: Tail) -> None:
        """A destroyed container's checkpoint goes with it; a stopped one's stays for its restart."""
        if tail.container.log_driver in FILE_DRIVERS and not self.hostfs.container_dir(tail.cid).exists():
            await asyncio.to_thread(self.store.delete, tail.runner.name, tail.cid)

    # --- lifecycle ------------------------------------------------------------------------------------
    def backlog(self, sink: str) -> int:
        return sum(t.backlog_bytes for (_, s), t in list(self.tails.items()) if s == sink)

    async def stop(self, timeout: float) -> None:
        """Stop reading; let in-flight batches finish (up to `timeout`), commit, close the sinks."""
        self._stopping = True
        for t in list(self.tails.values()):
            t.stop()
        tasks = list(self.tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            if late:
                log.warning(
                    "%d log tails did not finish within %.0fs; their last batch is sent again on start",
                    len(late),
                    timeout,
                )
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for shipper in self.events:
            await shipper.stop(timeout)
        for r in self.runners:
            await r.close()
        await asyncio.to_thread(self.watcher.close)
