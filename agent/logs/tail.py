"""The json-file source: follow Docker's own `<id>-json.log` files for one (container, sink).

Rotation (moby `loggerutils/logfile.go`): Docker renames the live file to `.1` (shifting older ones,
unlinking the last, optionally gzipping `.1` to `.1.gz` and deleting `.1`) and creates a new live
file. With max-size=1m and max-file=3 a file written at full speed lives about 0.2 s, so files are
opened by the DirWatcher's thread (agent/logs/watch.py) the moment inotify says one was created,
whatever the event loop is busy with. Every file opened stays open until it is read to its end AND
Docker has deleted it: a deleted file is still read through its descriptor, and a held inode cannot
be reused, so inodes identify files exactly. A new live file's predecessors that were never seen
(`.1`, `.2.gz`, ... when the watcher fell behind) are found by walking the chain back to the newest
held file (by inode, or fingerprint for a `.gz`).

    watcher thread: notice ─► scan: stat live; new inode? open it, walk back, queue [.k .. .1, live]
                              account: live files Docker created - files we opened = missed
    event loop:     inbox ─► files[0] ─pread─► LineSplitter ─► parse_block ─► Joiner ─► batch ─► SinkRunner
                    EOF on a file that is not the newest → it is complete: next file

Bounds (per tail): MAX_HELD_FILES files and MAX_HELD_BYTES bytes queued behind the reader; beyond
either the oldest queued file is counted (its lines exactly) and let go. See agent/logs/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from itertools import accumulate, repeat
from operator import add, itemgetter, methodcaller, mul
from pathlib import Path
from typing import Any

from agent.docker.models import Container
from agent.logs.checkpoint import CheckpointStore, FilePos, Position
from agent.logs.delivery import SinkRunner, Tail, TailOptions
from agent.logs.early import EarlyHold
from agent.logs.jsonfile import (
    FRACTION_SCALE,
    ROW_EPOCH,
    CorruptLine,
    LineSplitter,
    docker_size,
    parse_block,
    parse_fields,
    row_time,
    unescape,
)
from agent.logs.logfile import (
    CHUNK,
    MAX_HELD_BYTES,
    MAX_HELD_FILES,
    LogFile,
    MissCount,
    count_lines,
    rotation_chain,
    take_unlinked,
    walk_back,
)
from agent.logs.partial import Joiner
from agent.logs.record import LogRecord
from agent.logs.sink import DropReason
from agent.logs.watch import DirWatcher, Notice, Subscription

log = logging.getLogger(__name__)

RawPos = tuple[LogFile, int, int]  # (file, offset after the line, its time_ns)
STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}


def _iso(time_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time_ns / 1e9)) + f".{time_ns % 10**9:09d}Z"


class FileTail(Tail):
    kind = "json-file"
    __slots__ = (
        "_after_round",
        "_count",
        "_denied",
        "_early",
        "_ended",
        "_exact",
        "_held",
        "_inbox",
        "_let_go",
        "_lock",
        "_loop",
        "_newest",
        "_ready",
        "_sent",
        "_slot",
        "_splitting",
        "_sub",
        "_waiting",
        "_watcher",
        "corrupt",
        "files",
        "joiner",
        "on_denied",
        "path",
        "preexisting",
        "skip_until_ns",
        "splitter",
    )

    def __init__(
        self,
        container: Container,
        runner: SinkRunner,
        store: CheckpointStore,
        opts: TailOptions,
        path: Path,
        preexisting: bool = False,
        on_denied: Callable[[Container, OSError | None], None] | None = None,
        watcher: DirWatcher | None = None,
        early: EarlyHold | None = None,
    ) -> None:
        super().__init__(container, runner, store, opts)
        self.path = path
        self.on_denied = on_denied
        self._denied = False
        self.preexisting = preexisting
        # Event-loop side: the files to read, oldest first; the last one is the newest.
        self.files: list[LogFile] = []
        # Positions inside the tail are (file, offset, time_ns) tuples: cheap per line; a FilePos
        # is made only when a checkpoint is written.
        self.joiner: Joiner[RawPos] = Joiner(join=opts.join_partial, flush_after=opts.flush_after)
        self.splitter = LineSplitter()
        self._splitting: LogFile | None = None  # the file the splitter is positioned in
        self.skip_until_ns = 0  # resume by time when the checkpointed file is gone
        self.corrupt = 0
        self._watcher = watcher
        self._early = early  # the files held since the container's `create` (agent/logs/early.py)
        self._after_round = 0  # watcher rounds up to this one were counted by the early hold
        self._sub: Subscription | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting = False  # the reader waits for more data: an IN_MODIFY wakes it
        self._slot = False  # holds one of the runner's fill slots (delivery.FILL_SLOTS)
        self._sent = False  # a batch went since the slot was taken: give it to the next tail
        # Shared with the watcher thread, under _lock.
        self._lock = threading.Lock()
        self._inbox: list[LogFile] = []  # opened by the watcher, not yet in self.files
        self._held: dict[int, LogFile] = {}  # every plain file we hold, by inode, until Docker unlinks it
        self._newest: LogFile | None = None
        self._ready = False
        self._ended = False
        self._exact = False  # inotify sees every creation in the directory: misses can be counted
        self._count = MissCount()
        self._let_go: list[LogFile] = []  # over the bound: counted and released outside the lock

    @property
    def max_size(self) -> int:
        """The container's json-file max-size in bytes (0: unset): a rotated file holds at least this."""
        return docker_size(self.container.log_opts.get("max-size", ""))

    # --- opening (a worker thread, or the watcher thread; always under _lock) ----------------------
    def _open_initial(self, pos: Position | None) -> None:
        """Blocking: open every file Docker has, positioned from the checkpoint (or the start option)."""
        opened = self._open_all(rotation_chain(self.path))
        with self._lock:
            for f in opened:
                self._hold(f)
            self._newest = opened[-1] if opened else None
            start = 0
            if isinstance(pos, FilePos):
                found = None
                for i, f in enumerate(opened):
                    same_fp = bool(pos.fingerprint) and f.fp == pos.fingerprint
                    by_inode = not f.gz and f.inode == pos.inode and (not pos.fingerprint or same_fp)
                    same = by_inode or same_fp
                    if same and (f.gz or pos.offset <= f.size()):
                        f.offset = pos.offset
                        found = i
                        break
                if found is None:
                    self._gap_at_start(pos)
                    self.skip_until_ns = pos.time_ns
                else:
                    start = found
            elif self.preexisting and self.opts.start_at_end and opened:
                live = opened[-1]
                live.offset = _line_start_before(live, live.size())
                start = len(opened) - 1
            elif pos is None and not self.preexisting and self._chain_full(opened):
                # From its first line, but not held since `create` (agent/logs/early.py): the agent
                # was not watching then. Docker may have deleted files already; how many is unknowable.
                log.warning(
                    "container %s (%s) sink %s: Docker has %d log files (max-file) already; lines rotated "
                    "away before the agent saw the container are lost, uncounted",
                    self.container.name,
                    self.cid[:12],
                    self.runner.name,
                    len(opened),
                )
            for f in opened[:start]:  # read already (or not wanted): held only until Docker unlinks them
                self._release(f)
            self.files = opened[start:]
            self._ready = True

    def _chain_full(self, opened: list[LogFile]) -> bool:
        try:
            max_file = int(self.container.log_opts.get("max-file", "1") or "1")
        except ValueError:
            return False
        return max_file > 1 and len(opened) >= max_file

    def _gap_at_start(self, pos: FilePos) -> None:
        """The checkpointed file was rotated away while the agent was not running: count it."""
        # Docker rotates a file only once it holds max-size bytes, so at least max-size - offset of it
        # were never read. Whole files rotated away after it leave no trace: not counted.
        lower = max(0, self.max_size - pos.offset)
        st = self.runner.stats
        st.files_missed += 1
        st.bytes_missed += lower
        log.warning(
            "container %s (%s) sink %s: the log file of the checkpoint was rotated away while the agent "
            "was not running; lines after %s up to the oldest file Docker still has are lost "
            "(at least %d bytes of 1 file; files rotated away after it cannot be counted)",
            self.container.name,
            self.cid[:12],
            self.runner.name,
            _iso(pos.time_ns),
            lower,
        )

    def _open_all(self, chain: list[Path]) -> list[LogFile]:
        out: list[LogFile] = []
        seen: set[int] = set()
        for p in chain:
            try:
                f = LogFile.open(p)
            except OSError:
                continue  # rotated away between listing and opening
            if f.inode in seen:
                f.close()
                continue
            seen.add(f.inode)
            out.append(f)
        return out

    def _hold(self, f: LogFile) -> None:
        if f.gz:
            f.gone = True  # a .gz is never watched for its unlink: closed once read
        else:
            self._held[f.inode] = f

    def _release(self, f: LogFile) -> None:
        """Read to its end (or given up): close it unless Docker still has it (held for its inode)."""
        f.finished = True
        if f.gone and f is not self._newest:
            f.close()

    def _on_notice(self, notice: Notice) -> None:
        """The watcher thread (or a worker thread at start): look at the directory now."""
        with self._lock:
            if not self._ready or self._ended or 0 < notice.round <= self._after_round:
                return
            if notice.lost and self._exact:
                self._exact = False
                log.warning(
                    "container %s sink %s: inotify events were lost; files Docker rotates away unseen "
                    "can no longer be counted for it",
                    self.cid[:12],
                    self.runner.name,
                )
            if notice.exact:
                self._count.created += notice.created
            added = False
            if notice.created or notice.changed or not notice.exact:
                # Again while it finds newer files: Docker may have rotated during the look, and
                # this round's events may already be read (bounded: a writer could outpace it).
                for _ in range(4):
                    if not self._scan():
                        break
                    added = True
            if notice.deleted or not notice.exact:
                self._close_unlinked()
            self._account_missed()
            let_go, self._let_go = self._let_go, []
        for victim in let_go:
            self._count_let_go(victim)
        if added or (self._waiting and (notice.modified or (not notice.exact and self._unread()))):
            # A look without events (a rescan, or after the kernel's queue overflowed and took the
            # writes' events with it) finds data a waiting reader was not told of.
            self._wake_threadsafe()
        elif not notice.exact and not self._waiting:
            self._update_backlog()  # every rescan: the reader may be stuck behind a sink that is down

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self.wake.set)

    def _scan(self) -> bool:
        """Queue a new live file and every unseen file rotated before it (under _lock)."""
        try:
            st = os.stat(self.path)
        except PermissionError as exc:
            self._denied_threadsafe(exc)
            return False
        except OSError:
            return False
        newest = self._newest
        if newest is not None and st.st_ino == newest.inode:
            self._denied_threadsafe(None)
            return False
        try:
            live = LogFile.open(self.path)
        except OSError as exc:
            if isinstance(exc, PermissionError):
                self._denied_threadsafe(exc)
            return False
        self._denied_threadsafe(None)
        if newest is not None and live.inode == newest.inode:
            live.close()
            return False
        between, reached = walk_back(live, self.path, newest, self._held)
        if not reached and not self._exact:
            # Our newest file left Docker's chain before we saw its successors: whole files may
            # have gone unseen. Without inotify's unlink events that cannot be counted.
            log.warning(
                "container %s (%s) sink %s: Docker rotated past max-file between two looks (polling); "
                "lines may be lost",
                self.container.name,
                self.cid[:12],
                self.runner.name,
            )
        for f in between:
            self._hold(f)
            self._inbox.append(f)
        self._hold(live)
        self._inbox.append(live)
        self._newest = live
        self._count.opened += len(between) + 1
        if between:
            log.debug("container %s: %d rotated files queued", self.cid[:12], len(between))
        self._let_go_over_bound()
        return True

    def _let_go_over_bound(self) -> None:
        """Over MAX_HELD_FILES / MAX_HELD_BYTES queued behind the reader (a sink down for long, or slower
        than the writer), take the oldest queued file out of the queue (under _lock; the reader may be
        stuck in a delivery meanwhile, so this runs here, not in it). _count_let_go counts it."""
        while True:
            behind = [*self.files, *self._inbox][:-1]  # the newest is never behind
            if len(behind) < 2:  # behind[0] is being read
                return
            try:
                held = sum(f.size() for f in behind) - (0 if behind[0].gz else behind[0].offset)
            except OSError:
                held = 0
            if len(behind) <= MAX_HELD_FILES and held <= MAX_HELD_BYTES:
                return
            victim = behind[1]
            (self.files if victim in self.files else self._inbox).remove(victim)
            self._let_go.append(victim)

    def _count_let_go(self, victim: LogFile) -> None:
        """Count a file let go over the bound: its lines exactly (read outside the lock: it can be big)."""
        try:
            lines, size = count_lines(victim)
        except OSError:
            lines, size = 0, 0
        with self._lock:
            self._release(victim)
        st = self.runner.stats
        st.drop(DropReason.ROTATED, lines)
        st.files_missed += 1
        st.bytes_missed += size
        log.warning(
            "container %s (%s) sink %s: more than %d files or %d MiB behind the sink; a rotated file of "
            "%d lines let go unread",
            self.container.name,
            self.cid[:12],
            self.runner.name,
            MAX_HELD_FILES,
            MAX_HELD_BYTES >> 20,
            lines,
        )

    def _close_unlinked(self) -> None:
        """Close the files Docker unlinked that were read to their end (under _lock)."""
        for f in take_unlinked(self._held):
            if f.finished and f is not self._newest:
                f.close()

    def _account_missed(self) -> None:
        """Count files created that no look opened (under _lock): MissCount."""
        if self._exact and (missed := self._count.settle(self.path, self._newest)):
            self._count_missed(missed)

    def _count_missed(self, missed: int) -> None:
        """Files Docker deleted that were never opened: each was a whole rotated file, so at least
        max-size bytes; their lines are not knowable."""
        st = self.runner.stats
        st.files_missed += missed
        st.bytes_missed += missed * self.max_size
        log.warning(
            "container %s (%s) sink %s: Docker rotated %d log file(s) away before the agent could open "
            "them (at least %d bytes); their lines are lost",
            self.container.name,
            self.cid[:12],
            self.runner.name,
            missed,
            missed * self.max_size,
        )

    def _denied_threadsafe(self, exc: PermissionError | None) -> None:
        """Tell the pipeline when the file becomes unreadable or readable again (transitions only)."""
        if (exc is not None) == self._denied:
            return
        self._denied = exc is not None
        if self.on_denied is None:
            return
        loop = self._loop
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or here is loop:
            self.on_denied(self.container, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.on_denied, self.container, exc)

    def poll_rotation(self) -> None:
        """Look at the directory now, as a watcher notice would (blocking: a stat, a few opens)."""
        self._on_notice(Notice(exact=False))

    # --- the event loop side ---------------------------------------------------------------------------
    async def run(self) -> None:
        pos = await self.load()
        self._loop = asyncio.get_running_loop()
        own = self._watcher is None
        watcher = self._watcher = self._watcher or DirWatcher()
        early, self._early = self._early, None
        try:
            if early is not None and pos is None and not early.closed:
                # Subscribed before taking the hold's files: no watcher round falls between the two,
                # and the events queued before are ours too (the hold's counts go on in ours).
                self._sub = watcher.subscribe(
                    str(self.path.parent), self.path.name, self._on_notice, queued=True
                )
                await asyncio.to_thread(self._adopt, early)
            else:
                await asyncio.to_thread(self._open_and_watch, pos, watcher)
            if early is not None:
                early.release()
                early = None
            if pos is not None:
                self.committed = pos
            else:  # owed from here on, even if the agent dies before the first delivery
                with self._lock:
                    first = self.files[0] if self.files else None
                if first is not None:
                    await self.owe((first, first.offset, 0))
            # The look after the watch began: what rotated since the files were listed.
            await asyncio.to_thread(self.poll_rotation)
            await self._read_loop()
        finally:
            if early is not None:
                early.release()
            self._give_slot()
            if self._sub is not None:
                watcher.unsubscribe(self._sub)
            with self._lock:
                self._ended = True
                for f in [*self.files, *self._inbox, *self._held.values(), *self._let_go]:
                    f.close()
                if self._newest is not None:
                    self._newest.close()
                self.files, self._inbox, self._held, self._let_go = [], [], {}, []
            if own:
                await asyncio.to_thread(watcher.close)

    def _open_and_watch(self, pos: Position | None, watcher: DirWatcher) -> None:
        """Blocking: the first look, then the watch at once. A file Docker creates between the two
        is opened by the look after without its creation being seen, so the gap hides a miss from
        the count: it is kept to the rest of this call (a checkpoint write used to fall in it)."""
        try:
            self._open_initial(pos)
        except OSError as exc:
            log.warning("container %s: cannot open %s: %s", self.cid[:12], self.path, exc)
            with self._lock:
                self._ready = True
        self._sub = watcher.subscribe(str(self.path.parent), self.path.name, self._on_notice)
        with self._lock:
            self._exact = self._sub.wd >= 0

    def _adopt(self, early: EarlyHold) -> None:
        """Blocking (a few dups): start from the files the early hold has had since `create`, and
        go on counting from its counts."""
        sub = self._sub
        assert sub is not None
        with self._lock:
            h = early.hand_over()  # under our lock: our callback waits, so no round is lost between
            for f in h.files:
                if f.gz or f.gone:
                    f.gone = True
                else:
                    self._held[f.inode] = f
            self.files = list(h.files)
            self._newest = h.files[-1] if h.files else None
            self._after_round = h.round
            self._count = h.count
            self._exact = sub.wd >= 0 and h.exact
            self._ready = True
        st = self.runner.stats
        if h.count.missed:
            self._count_missed(h.count.missed)
        if h.let_go_files:
            st.drop(DropReason.ROTATED, h.let_go_lines)
            st.files_missed += h.let_go_files
            st.bytes_missed += h.let_go_bytes
            log.warning(
                "container %s (%s) sink %s: more than %d files held before its logs could be read; "
                "%d rotated file(s) of %d lines let go unread",
                self.container.name,
                self.cid[:12],
                self.runner.name,
                MAX_HELD_FILES,
                h.let_go_files,
                h.let_go_lines,
            )

    def _take_inbox(self) -> None:
        """Files the watcher opened → the reading queue."""
        with self._lock:
            self.files.extend(self._inbox)
            self._inbox = []
        self._update_backlog()

    def _update_backlog(self) -> None:
        """Bytes not yet delivered; also from the watcher thread, so while a sink is down it moves."""
        files = [*self.files, *self._inbox]  # copies: the reader may pop meanwhile
        try:
            total = sum(f.size() for f in files)
        except OSError:
            return
        if files:
            total -= files[0].offset if not files[0].gz else 0
        self.backlog_bytes = max(0, total) + self.batch_bytes

    async def _take_slot(self) -> None:
        if not self._slot:
            await self.runner.fill_slots.acquire()
            self._slot, self._sent = True, False

    def _give_slot(self) -> None:
        if self._slot:
            self._slot = False
            self.runner.fill_slots.release()

    async def flush(self) -> None:
        sent = bool(self.batch)
        await super().flush()
        self._sent = self._sent or sent

    async def _wait(self) -> None:
        self._give_slot()  # nothing to read: let another tail of this sink fill a batch
        self._waiting = True
        try:
            # The watcher wakes only a waiting reader: a write it noticed before `_waiting` was set
            # woke nobody, so look once more now that it is.
            if not self._inbox and not self._unread():
                await self.idle(self._idle_timeout())
        finally:
            self._waiting = False

    def _idle_timeout(self) -> float:
        """With inotify, every write and rotation wakes the reader (the watcher's notices): the
        timeout is only a fallback. Polled at poll_interval otherwise, and while a partial line
        waits for its rest (flush_after) or the container is finishing. 1,500 idle tails cost 26 %
        of a core polled every 0.25 s (bench/RESULTS.md, "Idle tails")."""
        if self._exact and not self.finishing and not self.joiner.pending:
            return max(self.opts.poll_interval, self.opts.idle_interval)
        return self.opts.poll_interval

    def _unread(self) -> bool:
        """The newest file has bytes past the read offset (a gzipped file has no live end)."""
        try:  # also from the watcher thread, while the reader may pop
            f = self.files[-1]
        except IndexError:
            return False
        if f.gz:
            return False
        try:
            return f.size() > f.offset
        except OSError:
            return False

    async def _read_chunk(self, f: LogFile) -> bool:
        """Read and consume the next chunk of `f`: any? A method of its own so that the chunk is
        freed on return: held in the loop, each tail waiting for a fill slot kept its last chunk
        (37 of the 51 MiB peak shipping 50 containers to 3 sinks, bench/memory_parts.py)."""
        data = await asyncio.to_thread(f.read, CHUNK) if f.gz else f.read(CHUNK)
        if not data:
            return False
        consuming = self._consume(f, data)
        del data  # _consume lets go of the chunk once it is split into lines
        await consuming
        return True

    async def _read_loop(self) -> None:
        quiet_since = 0.0
        while not self.stopping:
            if self._inbox:
                self._take_inbox()
            if not self.files:
                if self.finishing:
                    return
                await self._wait()
                continue
            f = self.files[0]
            if f is not self._splitting:
                self.splitter = LineSplitter(f.offset)
                self._splitting = f
            await self._take_slot()
            if await self._read_chunk(f):
                quiet_since = 0.0
                if self._sent:
                    # A batch went: send the rest of this chunk's lines too, so that a tail waiting
                    # for a slot holds no records, and queue behind the other tails of this sink
                    # (asyncio.Semaphore is FIFO): a chatty container cannot keep the slot.
                    if self.batch:
                        await self.flush()
                    self._give_slot()
                continue
            if len(self.files) > 1:
                # Docker writes to a file no more once a newer one exists: this one is complete.
                if self.splitter.pending:
                    self.corrupt += 1
                    self.runner.stats.drop(DropReason.CORRUPT)
                with self._lock:
                    self._release(f)
                    self.files.pop(0)
                continue
            # Caught up with the live file.
            for o in self.joiner.flush(end=self._pos_here(f)):
                self.add(o.stream, o.time_ns, o.line, o.partial, o.pos)
            if self.batch or (
                self.batch_pos is not None and self.to_position(self.batch_pos) != self.committed
            ):
                await self.flush()
                continue
            self._update_backlog()
            if self.finishing:
                # Docker has flushed the copier before `die`; one more look for a late rotation.
                if not quiet_since:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 2 * self.opts.poll_interval:
                    await asyncio.to_thread(self.poll_rotation)
                    if not self._inbox and len(self.files) == 1 and not self.joiner.pending:
                        return
            await self._wait()
        if self.batch:
            await self.flush()

    def _pos_here(self, f: LogFile) -> RawPos:
        return (f, self.splitter.offset, 0)

    def to_position(self, raw: Any) -> Position:
        f, offset, time_ns = raw
        return FilePos(f.inode, f.refresh_fp(), offset, time_ns)

    async def _consume(self, f: LogFile, data: bytes) -> None:
        sp = self.splitter
        before = sp.oversized
        block, start = sp.feed_block(data)
        del data  # the block has its whole lines
        if sp.oversized != before:
            self.runner.stats.drop(DropReason.CORRUPT, sp.oversized - before)
        if not block:
            return
        if not f.fp:
            f.refresh_fp()
        rows = parse_block(block)
        if rows is None:
            await self._consume_lines(f, block, start)
        elif (
            not self.skip_until_ns
            and not self.joiner.pending
            and block.count(b"\\") == len(rows) == block.count(b'\\n","stream"')
        ):
            # The only backslash of each line is its final `\n` escape: every line is complete and
            # its body needs no unescaping (the common case): records are made without a Python loop.
            block_end = start + len(block)
            cols = self._plain_columns(rows, start)
            if cols is None:
                await self._consume_rows(f, rows, start, block_end)
                return
            # Only the records are shipped: the rows (each line, its head and fraction apart) and
            # the block are let go before the batch is sent, not held by this frame while the
            # tail waits for its sink (~2 MiB of the burst's peak, bench/RESULTS.md).
            del rows, block
            await self._consume_plain(f, *cols, block_end)
        else:
            await self._consume_rows(f, rows, start, start + len(block))

    def _plain_columns(
        self, rows: list[Any], start: int
    ) -> tuple[list[LogRecord], list[int], list[int], list[int] | None] | None:
        """Whole lines in dockerd's layout, no escapes, nothing being joined: columns through C
        maps. (records, running byte sizes, times, each row's end offset where the block will fill
        a batch), or None when the seconds cache was cleared meanwhile."""
        heads = list(map(_HEAD, rows))
        for h in set(heads).difference(ROW_EPOCH):
            row_time(h, b"")  # fills ROW_EPOCH
        try:
            secs = list(map(ROW_EPOCH.__getitem__, heads))
        except KeyError:  # the cache was cleared while filling (4096 distinct seconds in one block)
            return None
        # Fraction digits right-padded to 9 are nanoseconds ("74470478" → 744704780).
        frac_ns = map(int, map(_PAD9, map(_FRAC, rows)))
        times = list(map(add, map(mul, secs, repeat(1_000_000_000)), frac_ns))
        bodies = list(map(_BODY, rows))
        streams = map(STREAMS.__getitem__, map(_STREAM, rows))
        recs = list(map(LogRecord, repeat(self.container), streams, times, bodies))
        sizes = list(accumulate(map(len, bodies)))
        fills = len(self.batch) + len(recs) >= self.opts.batch_records or (
            self.batch_bytes + (sizes[-1] if sizes else 0) >= self.opts.batch_bytes
        )
        return recs, sizes, times, _ends(rows, start) if fills else None

    async def _consume_plain(
        self,
        f: LogFile,
        recs: list[LogRecord],
        sizes: list[int],
        times: list[int],
        ends: list[int] | None,
        block_end: int,
    ) -> None:
        """_plain_columns' records into batches, sending each batch that fills."""
        max_records, max_bytes = self.opts.batch_records, self.opts.batch_bytes
        i, n = 0, len(recs)
        while i < n:
            before = sizes[i - 1] if i else 0
            # The last record of this piece: the batch is full in records, or crosses max_bytes with it.
            j = min(n, i + max(1, max_records - len(self.batch))) - 1
            j = min(j, bisect_left(sizes, before + max_bytes - self.batch_bytes, i))
            self.batch.extend(recs[i : j + 1])
            self.batch_bytes += sizes[j] - before
            if len(self.batch) < max_records and self.batch_bytes < max_bytes:
                self.batch_pos = (f, block_end, times[-1])  # j is the last row
                return
            assert ends is not None  # _plain_columns gives them for a block that fills a batch
            self.batch_pos = (f, ends[j], times[j])
            await self.flush()
            if self.stopping:
                return
            i = j + 1

    async def _consume_rows(self, f: LogFile, rows: list[Any], start: int, block_end: int) -> None:
        """The hot path: a block of lines all in dockerd's layout (jsonfile.parse_block)."""
        container, joiner, epoch, scale = self.container, self.joiner, ROW_EPOCH, FRACTION_SCALE
        max_records, max_bytes = self.opts.batch_records, self.opts.batch_bytes
        batch, nbytes = self.batch, self.batch_bytes
        pending = joiner.pending
        skip = self.skip_until_ns
        ends: list[int] | None = None  # end offset of each row, computed when first needed
        # The last row went straight into the batch (or was skipped): batch_pos is set after the loop,
        # or before the joiner is fed, to the end of that row, stamped last_ns.
        direct = False
        ns = last_ns = 0
        for i, (raw, body, nl, stream, head, frac) in enumerate(rows):
            secs = epoch.get(head)
            if secs is None:
                ns = row_time(head, frac)
            else:
                ns = secs * 1_000_000_000 + (int(frac) * scale[len(frac)] if frac else 0)
            if b"\\" in body:
                try:
                    body = unescape(body)
                except CorruptLine:
                    self.corrupt += 1
                    self.runner.stats.drop(DropReason.CORRUPT)
                    direct = not pending
                    continue
            if skip:
                if ns <= skip:
                    direct = not pending
                    continue
                skip = self.skip_until_ns = 0
            if nl and not pending:
                batch.append(LogRecord(container, STREAMS[stream], ns, body))
                nbytes += len(body)
                direct, last_ns = True, ns
                if len(batch) < max_records and nbytes < max_bytes:
                    continue
                ends = ends or _ends(rows, start)
                self.batch_bytes, self.batch_pos = nbytes, (f, ends[i], ns)
            else:
                ends = ends or _ends(rows, start)
                end = ends[i]
                begin = end - len(raw)
                if direct:
                    self.batch_pos = (f, begin, last_ns)
                self.batch_bytes = nbytes
                before_pos, after_pos = (f, begin, ns), (f, end, ns)
                seed = f"{self.cid}:{f.fp}:{begin}"
                for o in joiner.feed(STREAMS[stream], ns, body, bool(nl), before_pos, after_pos, seed):
                    self.add(o.stream, o.time_ns, o.line, o.partial, o.pos)
                pending, nbytes, direct = joiner.pending, self.batch_bytes, False
                if len(batch) < max_records and nbytes < max_bytes:
                    continue
            await self.flush()
            batch, nbytes, direct = self.batch, self.batch_bytes, False
            if self.stopping:
                return
        self.batch_bytes = nbytes
        if direct:
            self.batch_pos = (f, block_end, last_ns)

    async def _consume_lines(self, f: LogFile, block: bytes, start: int) -> None:
        """Line by line (a block with a line not in dockerd's layout): corrupt lines are counted."""
        stats = self.runner.stats
        cid, container, joiner = self.cid, self.container, self.joiner
        max_records, max_bytes = self.opts.batch_records, self.opts.batch_bytes
        end = start
        for raw in block.split(b"\n")[:-1]:
            end += len(raw) + 1
            try:
                stream, time_ns, line, complete = parse_fields(raw)
            except CorruptLine:
                self.corrupt += 1
                stats.drop(DropReason.CORRUPT)
                log.debug("container %s: corrupt json-file line before offset %d skipped", cid[:12], end)
                self.advance((f, end, 0), joiner.pending)
                continue
            if self.skip_until_ns:
                if time_ns <= self.skip_until_ns:
                    self.advance((f, end, time_ns), joiner.pending)
                    continue
                self.skip_until_ns = 0
            if complete and not joiner.pending:
                self.batch.append(LogRecord(container, stream, time_ns, line))
                self.batch_bytes += len(line)
                self.batch_pos = (f, end, time_ns)
            else:
                begin = end - len(raw) - 1
                seed = f"{cid}:{f.fp}:{begin}"
                before_pos, after_pos = (f, begin, time_ns), (f, end, time_ns)
                for o in joiner.feed(stream, time_ns, line, complete, before_pos, after_pos, seed):
                    self.add(o.stream, o.time_ns, o.line, o.partial, o.pos)
            if len(self.batch) >= max_records or self.batch_bytes >= max_bytes:
                await self.flush()
                if self.stopping:
                    return


def _ends(rows: list[Any], start: int) -> list[int]:
    """The file offset after each row (row[0] is the whole line with its newline)."""
    return list(accumulate(map(len, map(_LINE, rows)), initial=start))[1:]


_LINE, _BODY, _STREAM, _HEAD, _FRAC = (itemgetter(k) for k in (0, 1, 3, 4, 5))
_PAD9 = methodcaller("ljust", 9, b"0")


def _line_start_before(f: LogFile, size: int) -> int:
    """The offset just after the last newline before `size` (so we never start mid-line)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(f.fd, pos - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0
