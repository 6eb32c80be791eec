"""The log pipeline: one tail per (container, sink), started and finished by the inventory.

    Inventory ──added/updated/removed──► LogPipeline ──► FileTail | ApiTail  (per container x sink)
                                              │                 └─► SinkRunner (per sink) ─► Sink
                                              ├─► unreadable containers (metric + one log line each)
                                              └─► EventShipper (per sink with `events`): docker events

Source per container: `json-file` → Docker's files; a TTY or the `none` driver → unreadable;
anything else → the Engine API (local, journald, or a driver with the dual-logging cache; if the
engine answers that it cannot read them, the container is listed as unreadable).

Owed lines: a tail writes its start position as a checkpoint at once, so a container the agent has
seen is owed until its checkpoint reaches the end. At start (`resume_stopped`) every stopped
container is listed and each one still owed is read to its end: one with a checkpoint, one created
after the sink's first start (it ran while the agent was down), one that existed before it (as
`logs.start-at` says). Shutdown (`stop`): tails stop reading, in-flight batches get `timeout`
seconds to finish, their checkpoints are written, then the sinks are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from agent.docker.client import DockerClient, Event
from agent.docker.models import Container, EngineError, NotFound
from agent.hostfs import HostFS
from agent.logs.api import ApiTail
from agent.logs.checkpoint import CheckpointStore, FilePos
from agent.logs.delivery import SinkRunner, Tail, TailOptions
from agent.logs.early import EarlyHold
from agent.logs.events import EventShipper
from agent.logs.jsonfile import CorruptLine, parse_time
from agent.logs.sink import LOG_DROP_REASONS, DropReason, PipelineSnapshot, SinkSnapshot
from agent.logs.sinkspec import opted_out
from agent.logs.tail import FileTail
from agent.logs.watch import DirWatcher

log = logging.getLogger(__name__)

FILE_DRIVERS = ("json-file",)
PERMISSION = "permission"
CATCH_UP_PARALLEL = 8  # stopped containers read at once at start: bounded engine requests and files
LIVE_STATES = ("running", "paused", "restarting")  # the inventory's (inspected only if stopped)


class LogPipeline:
    def __init__(
        self,
        runners: Sequence[SinkRunner],
        hostfs: HostFS,
        state_dir: Path,
        client: DockerClient | None,  # None: no engine to ask; only json-file logs are read
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
        # New containers' log files, held from `create` until their tails take them (agent/logs/early.py).
        self.early: dict[str, EarlyHold] = {}
        # Started again while a tail of it was finishing: followed afresh once that tail ends.
        self._restarted: dict[str, Container] = {}
        self._stopping = False
        self._aux: set[asyncio.Task[None]] = set()
        # The json-file sink writes Docker's chunks as Docker did: its tails never rejoin them.
        self._raw_opts = dataclasses.replace(opts, join_partial=False)
        now = time.time_ns()
        self.first_start = {r.name: self._first_start(r.name, now) for r in self.runners}

    def _first_start(self, sink: str, now: int) -> int:
        try:
            return self.store.first_start(sink, now)
        except OSError as exc:
            log.error("sink %s: cannot record its first start (%s); this one counts as the first", sink, exc)
            return now

    # --- inventory listener (called on the event loop) ------------------------------------------
    def on_container(self, kind: str, c: Container) -> None:
        if self._stopping:
            return
        if kind == "removed":
            self._settle_early(c.id)
            self.unreadable.pop(c.id, None)
            self._restarted.pop(c.id, None)
            for (cid, _), tail in list(self.tails.items()):
                if cid == c.id:
                    tail.finish()
            return
        self._start(c)
        self._settle_early(c.id)

    def on_event(self, ev: Event) -> None:
        """Every event goes to the sinks that ship events. And a container that exited before the
        inventory saw it running (a fast `docker run`) still wrote logs: on its `die`, read them from
        the start if no tail has."""
        if self._stopping:
            return
        for shipper in self.events:
            shipper.offer(ev)
        if ev.type == "container" and ev.action == "create":
            self._hold_early(ev.actor_id)
        elif ev.type == "container" and ev.action == "destroy":
            self._settle_early(ev.actor_id)
        client = self.client
        if ev.type != "container" or ev.action != "die" or client is None:
            return
        if any(cid == ev.actor_id for cid, _ in self.tails):
            return
        job = self._catch_up(client, ev.actor_id)
        task = asyncio.create_task(job, name=f"logs-catch-up-{ev.actor_id[:12]}")
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)

    async def _catch_up(self, client: DockerClient, cid: str) -> None:
        try:
            c = await client.inspect(cid)
        except EngineError:
            self._settle_early(cid)
            return  # gone already (`--rm`): nothing left to read
        self._start_finishing(c)
        self._settle_early(cid)

    def _hold_early(self, cid: str) -> None:
        """On `create`: hold the json-file logs it will write until its tails exist (they are made
        after `start` and an inspect, which a busy dockerd can answer after a fast writer's first file
        was rotated away). Blocking but short: an inotify watch and a stat."""
        if not self.runners or cid in self.early or any(k == cid for k, _ in self.tails):
            return
        path = self.hostfs.container_dir(cid) / f"{cid}-json.log"
        try:
            self.early[cid] = EarlyHold(path, self.watcher)
        except OSError as exc:  # the directory is gone already, or not ours to read: tails report it
            log.debug("container %s: no early hold of its logs: %s", cid[:12], exc)

    def _settle_early(self, cid: str) -> None:
        """The tails that take over the early hold exist now (or none will): the pipeline lets go."""
        hold = self.early.pop(cid, None)
        if hold is not None:
            hold.unpin()

    def _start_finishing(
        self, c: Container, runners: Sequence[SinkRunner] | None = None
    ) -> list[asyncio.Task[None]]:
        """Tails that read a stopped container's logs to the end, then end."""
        if self._stopping or opted_out(c) or self._unreadable_reason(c):
            return []
        started = []
        for r in self.runners if runners is None else runners:
            key = (c.id, r.name)
            if key in self.tails or not r.spec.wants(c):
                continue
            tail = self._make_tail(c, r)
            tail.finishing = True
            self.tails[key] = tail
            name = f"logs-{r.name}-{c.short_id}"
            self.tasks[key] = task = asyncio.create_task(self._run_tail(key, tail), name=name)
            started.append(task)
        return started

    async def resume_stopped(self) -> None:
        """At start: read every stopped container still owed lines to its end, a few at a time;
        delete the checkpoints of containers that are gone. Running ones are the inventory's."""
        client = self.client
        if client is None:
            return
        states = await self._container_states(client)
        for r in self.runners:
            for cid in await asyncio.to_thread(self.store.containers, r.name):
                if cid in states or (cid, r.name) in self.tails or self._stopping:
                    continue
                try:
                    await client.inspect(cid)
                except NotFound:
                    await asyncio.to_thread(self.store.delete, r.name, cid)
                except EngineError:
                    continue
        slots = asyncio.Semaphore(CATCH_UP_PARALLEL)
        for cid, state in states.items():
            if self._stopping:
                return
            if state in LIVE_STATES or all((cid, r.name) in self.tails for r in self.runners):
                continue
            try:
                c = await client.inspect(cid)
            except NotFound:
                continue
            except EngineError as exc:
                log.warning("cannot inspect %s to finish its logs: %s", cid[:12], exc)
                continue
            if c.pid > 0:
                continue
            wanted = [r for r in self.runners if (cid, r.name) not in self.tails and r.spec.wants(c)]
            owed = [r for r in wanted if await asyncio.to_thread(self._owes, c, r)]
            if not owed:
                continue
            await slots.acquire()
            tasks = self._start_finishing(c, owed)
            if not tasks:
                slots.release()
                continue
            done = asyncio.gather(*tasks, return_exceptions=True)
            done.add_done_callback(lambda _: slots.release())

    async def _container_states(self, client: DockerClient) -> dict[str, str]:
        """Every container's state; retried (capped backoff) until the engine answers."""
        delay = 0.5
        while True:
            try:
                return await client.container_states()
            except EngineError as exc:
                if self._stopping:
                    return {}
                log.warning("cannot list containers to finish their logs: %s; retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _owes(self, c: Container, r: SinkRunner) -> bool:
        """Blocking. False only when nothing can be left for a stopped container: its json-file
        checkpoint is at the end of the live file. Any other gets a tail, which starts from its
        checkpoint or, without one, as `_make_tail` says, and may find nothing."""
        if c.log_driver not in FILE_DRIVERS:
            return True
        try:
            pos = self.store.load(r.name, c.id)
            st = os.stat(self.hostfs.container_dir(c.id) / f"{c.id}-json.log")
        except (OSError, ValueError):
            return True
        return not (isinstance(pos, FilePos) and (pos.inode, pos.offset) == (st.st_ino, st.st_size))

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
                if tail.finishing:
                    # It may be past its last read already (a final read of the API, the end of
                    # a file): let it end, then a fresh tail follows from its checkpoint.
                    self._restarted[c.id] = c
                else:
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

    def preexisting(self, c: Container, r: SinkRunner) -> bool:
        """Did the container exist before the sink's first start? Where reading starts for those
        without a checkpoint is `logs.start-at`; every later one is read from its first line."""
        if not c.created:
            return False
        try:
            return parse_time(c.created) < self.first_start[r.name]
        except CorruptLine:
            return False

    def _make_tail(self, c: Container, r: SinkRunner) -> Tail:
        pre = self.preexisting(c, r)
        opts = self._raw_opts if r.raw_chunks else self.opts
        if c.log_driver in FILE_DRIVERS:
            path = self._log_path(c.id)
            early = self.early.get(c.id)
            if early is not None:
                early.users += 1  # released by the tail once it has taken the files (or ended)
            return FileTail(
                c,
                r,
                self.store,
                opts,
                path,
                preexisting=pre,
                on_denied=self._mark_denied,
                watcher=self.watcher,
                early=early,
            )
        if self.client is None:  # _unreadable_reason keeps them out: without an engine only files are read
            raise RuntimeError(f"container {c.short_id}: no engine to read its {c.log_driver} logs through")
        return ApiTail(c, r, self.store, opts, self.client, self._mark_unreadable, preexisting=pre)

    def _log_path(self, cid: str) -> Path:
        """The live json-file's path, the same object for every tail of the container: a Path
        with its parts is ~0.4 KB, and three sinks made three of them per container."""
        for r in self.runners:
            tail = self.tails.get((cid, r.name))
            if isinstance(tail, FileTail):
                return tail.path
        early = self.early.get(cid)
        return early.path if early is not None else self.hostfs.container_dir(cid) / f"{cid}-json.log"

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
                self.unreadable.pop(tail.cid, None)  # stopped: no longer a gap to report
                await self._forget_if_destroyed(tail)
            restarted = self._restarted.pop(tail.cid, None)
            if restarted is not None and not self._stopping:
                self._start(restarted)

    async def _forget_if_destroyed(self, tail: Tail) -> None:
        """A destroyed container's checkpoint goes with it; a stopped one's stays for its restart."""
        if tail.container.log_driver in FILE_DRIVERS and not self.hostfs.container_dir(tail.cid).exists():
            await asyncio.to_thread(self.store.delete, tail.runner.name, tail.cid)

    # --- lifecycle ------------------------------------------------------------------------------------
    def snapshot(self) -> PipelineSnapshot:
        """Every sink's numbers and the unreadable containers, for the metrics. Runs in the scrape
        thread: it only copies (list/dict copies are atomic under the GIL)."""
        tails = list(self.tails.items())
        per_sink = Counter(s for (_, s), _ in tails)
        backlog: Counter[str] = Counter()
        for (_, s), t in tails:
            backlog[s] += t.backlog_bytes
        sinks = []
        for r in self.runners:
            st = r.stats
            reasons = dict.fromkeys(LOG_DROP_REASONS, 0)
            if r.spec.events:
                reasons[DropReason.EVENTS_OVERFLOW] = 0
            reasons.update(st.dropped)
            sinks.append(
                SinkSnapshot(
                    name=r.name,
                    sent=st.sent,
                    bytes=st.bytes,
                    retries=st.retries,
                    dropped={str(k): v for k, v in reasons.items()},
                    files_missed=st.files_missed,
                    bytes_missed=st.bytes_missed,
                    backlog_bytes=backlog[r.name],
                    lag=st.lag,
                    last_success=st.last_success,
                    containers=per_sink[r.name],
                )
            )
        return PipelineSnapshot(tuple(sinks), dict(Counter(dict(self.unreadable).values())))

    async def stop(self, timeout: float) -> None:
        """Stop reading; let in-flight batches finish (up to `timeout`), commit, close the sinks."""
        self._stopping = True
        for cid in list(self.early):
            self._settle_early(cid)
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
