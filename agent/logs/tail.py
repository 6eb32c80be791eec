"""The json-file source: follow Docker's own `<id>-json.log` files for one (container, sink).

Rotation (moby `loggerutils/logfile.go`): Docker renames the live file to `.1` (shifting older ones,
optionally gzipping `.1` to `.1.gz` and deleting `.1`) and creates a new live file. We keep an open
descriptor on every file we still have to read, so a renamed, gzipped or deleted file is still read
to its end by its descriptor; the newest one stays open, so its inode cannot be reused and a new live
file is always recognised. When we notice a new live file, the files between it and ours (`.1`,
`.2.gz`, ... rotated while we looked away) are found by inode or first-line fingerprint and queued.

    watcher (every poll_interval): stat live → new inode? queue [.k.. .1, live]; backlog
    reader:  files[0] ─pread→ LineSplitter → parse_line → Joiner → Tail.batch ─► SinkRunner
             EOF on a file that is not the newest → it is complete: close it, next file
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from agent.docker.models import Container
from agent.logs.checkpoint import CheckpointStore, FilePos, Position
from agent.logs.delivery import SinkRunner, Tail, TailOptions
from agent.logs.jsonfile import FINGERPRINT_MAX, CorruptLine, LineSplitter, fingerprint, parse_fields
from agent.logs.partial import Joiner
from agent.logs.record import LogRecord

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
MAX_HELD = 32  # rotated files kept open for a slow sink; beyond that the oldest is counted lost
MAX_WALK = 64
RawPos = tuple["LogFile", int, int]  # (file, offset after the line, its time_ns)


@dataclass(eq=False)
class LogFile:
    """One open log file (plain, or a gzipped rotation read by decompressing)."""

    fd: int
    inode: int
    gz: bool
    offset: int = 0  # next byte (uncompressed) to read
    fp: str = ""
    _gzf: gzip.GzipFile | None = field(default=None, repr=False)
    _raw: BinaryIO | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> LogFile:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        f = cls(fd, os.fstat(fd).st_ino, str(path).endswith(".gz"))
        f.refresh_fp()
        return f

    def head(self) -> bytes:
        if self.gz:
            with open(os.dup(self.fd), "rb") as raw, gzip.GzipFile(fileobj=raw) as g:
                raw.seek(0)  # a dup shares the file offset with every other reader of this fd
                try:
                    return g.read(FINGERPRINT_MAX)
                except (OSError, EOFError):
                    return b""
        return os.pread(self.fd, FINGERPRINT_MAX, 0)

    def refresh_fp(self) -> str:
        if not self.fp:
            try:
                self.fp = fingerprint(self.head())
            except OSError:  # closed or unreadable: identify by inode alone
                return ""
        return self.fp

    def size(self) -> int:
        return 0 if self.gz else os.fstat(self.fd).st_size

    def read(self, n: int) -> bytes:
        """Blocking for gz (call in a thread); a plain pread is a short syscall."""
        if not self.gz:
            data = os.pread(self.fd, n, self.offset)
        else:
            gzf = self._gzf
            if gzf is None:
                raw = self._raw = open(os.dup(self.fd), "rb")  # noqa: SIM115 - closed in close()
                raw.seek(0)
                gzf = self._gzf = gzip.GzipFile(fileobj=raw)
                gzf.seek(self.offset)
            try:
                data = gzf.read(n)
            except (OSError, EOFError) as exc:  # a .gz still being written by Docker, or damaged
                log.warning("gzipped log rotation unreadable past offset %d: %s", self.offset, exc)
                data = b""
        self.offset += len(data)
        return data

    def close(self) -> None:
        if self._gzf is not None:
            with contextlib.suppress(Exception):
                self._gzf.close()
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def rotation_chain(live: Path) -> list[Path]:
    """Docker's files for one container, oldest first: `.N[.gz]` ... `.1[.gz]`, then the live file."""
    pat = re.compile(re.escape(live.name) + r"\.(\d+)(\.gz)?$")
    found: dict[int, Path] = {}
    try:
        names = os.listdir(live.parent)
    except OSError:
        names = []
    for name in names:
        m = pat.match(name)
        if m:
            n = int(m.group(1))
            # A `.1` and its `.1.gz` both exist while Docker compresses: the plain one is whole.
            if n not in found or not m.group(2):
                found[n] = live.parent / name
    return [found[n] for n in sorted(found, reverse=True)] + [live]


def count_lines(f: LogFile) -> int:
    n = 0
    while data := f.read(CHUNK):
        n += data.count(b"\n")
    return n


class FileTail(Tail):
    kind = "json-file"

    def __init__(
        self,
        container: Container,
        runner: SinkRunner,
        store: CheckpointStore,
        opts: TailOptions,
        path: Path,
        preexisting: bool = False,
        on_denied: Callable[[Container, OSError | None], None] | None = None,
    ) -> None:
        super().__init__(container, runner, store, opts)
        self.path = path
        self.on_denied = on_denied
        self._denied = False
        self.preexisting = preexisting
        self.files: list[LogFile] = []
        # Positions inside the tail are (file, offset, time_ns) tuples: cheap per line; a FilePos
        # is made only when a checkpoint is written.
        self.joiner: Joiner[RawPos] = Joiner(join=opts.join_partial, flush_after=opts.flush_after)
        self.splitter = LineSplitter()
        self._splitting: LogFile | None = None  # the file the splitter is positioned in
        self.skip_until_ns = 0  # resume by time when the checkpointed file is gone
        self.corrupt = 0

    # --- opening ------------------------------------------------------------------------------------
    def _open_initial(self, pos: Position | None) -> None:
        """Blocking: open the files to read, positioned from the checkpoint (or the start option)."""
        chain = rotation_chain(self.path)
        if not isinstance(pos, FilePos):
            if self.preexisting and self.opts.start_at_end:
                f = LogFile.open(self.path)
                f.offset = _line_start_before(f, f.size())
                self.files = [f]
            else:
                self.files = self._open_all(chain)
            return
        opened = self._open_all(chain)
        for i, f in enumerate(opened):
            by_inode = not f.gz and f.inode == pos.inode and (not pos.fingerprint or f.fp == pos.fingerprint)
            same = by_inode or (bool(pos.fingerprint) and f.fp == pos.fingerprint)
            if same and (f.gz or pos.offset <= f.size()):
                for old in opened[:i]:
                    old.close()
                f.offset = pos.offset
                self.files = opened[i:]
                return
        # The checkpointed file was rotated away while we were not running: whatever Docker still
        # has, from the line after the last delivered time.
        log.warning(
            "container %s sink %s: checkpointed log file is gone (rotated away); resuming by time",
            self.cid[:12],
            self.runner.name,
        )
        self.skip_until_ns = pos.time_ns
        self.files = opened

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

    def _report_denied(self, exc: PermissionError | None) -> None:
        """Tell the pipeline when the file becomes unreadable or readable again (transitions only)."""
        if (exc is not None) == self._denied:
            return
        self._denied = exc is not None
        if self.on_denied is not None:
            self.on_denied(self.container, exc)

    def poll_rotation(self) -> None:
        """Blocking but cheap (one stat): queue a new live file and anything rotated in between."""
        try:
            st = os.stat(self.path)
        except PermissionError as exc:
            self._report_denied(exc)
            return
        except OSError:
            return
        newest = self.files[-1] if self.files else None
        if newest is not None and st.st_ino == newest.inode:
            self._report_denied(None)
            self._update_backlog()
            return
        held_inodes = {f.inode for f in self.files}
        held_fps = {f.refresh_fp() for f in self.files} - {""}
        between: list[LogFile] = []
        found_held = False
        if newest is not None:
            base = str(self.path)
            for j in range(1, MAX_WALK):
                plain, gz = Path(f"{base}.{j}"), Path(f"{base}.{j}.gz")
                try:
                    if plain.exists():
                        if os.stat(plain).st_ino in held_inodes:
                            found_held = True
                            break
                        f = LogFile.open(plain)
                    elif gz.exists():
                        f = LogFile.open(gz)
                    else:
                        break
                except OSError:
                    break
                if f.inode in held_inodes or (f.fp and f.fp in held_fps):
                    f.close()
                    found_held = True
                    break
                between.append(f)
            if between and not found_held:
                # Our newest file has left Docker's chain (max-file) and every file still there is
                # newer: Docker may have rotated away whole files we never saw. How many lines that
                # was is unknowable; say so.
                log.warning(
                    "container %s sink %s: Docker rotated past max-file faster than the agent followed; "
                    "lines may be lost",
                    self.cid[:12],
                    self.runner.name,
                )
        try:
            live = LogFile.open(self.path)
        except OSError as exc:
            for f in between:
                f.close()
            if isinstance(exc, PermissionError):
                self._report_denied(exc)
            return
        self._report_denied(None)
        if newest is not None and live.inode == newest.inode:
            live.close()
            for f in between:
                f.close()
            return
        self.files.extend(reversed(between))
        self.files.append(live)
        if between:
            log.debug("container %s: %d rotated files queued", self.cid[:12], len(between))
        while len(self.files) > MAX_HELD:
            lost = self.files.pop(1)
            n = count_lines(lost)
            lost.close()
            self.runner.stats.drop("rotated", n)
            log.warning(
                "container %s sink %s: %d lines rotated away unread", self.cid[:12], self.runner.name, n
            )
        self._update_backlog()

    def _update_backlog(self) -> None:
        try:
            total = sum(f.size() for f in self.files)
        except OSError:
            return
        if self.files:
            total -= self.files[0].offset if not self.files[0].gz else 0
        self.backlog_bytes = max(0, total) + self.batch_bytes

    # --- reading ------------------------------------------------------------------------------------
    async def run(self) -> None:
        pos = await self.load()
        try:
            await asyncio.to_thread(self._open_initial, pos)
        except OSError as exc:
            log.warning("container %s: cannot open %s: %s", self.cid[:12], self.path, exc)
        if pos is not None:
            self.committed = pos
        elif self.files:  # owed from here on, even if the agent dies before the first delivery
            await self.owe((self.files[0], self.files[0].offset, 0))
        watcher = asyncio.create_task(self._watch(), name=f"logs-watch-{self.cid[:12]}")
        try:
            await self._read_loop()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            for f in self.files:
                f.close()
            self.files = []

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.opts.poll_interval)
            before = len(self.files)
            # On the loop, not in a thread: it changes self.files, which the reader pops; it is a
            # stat() per tick, and a few opens when Docker rotated.
            self.poll_rotation()
            if len(self.files) != before:
                self.wake.set()

    async def _read_loop(self) -> None:
        quiet_since = 0.0
        while not self.stopping:
            if not self.files:
                if self.finishing:
                    return
                await self.idle(self.opts.poll_interval)
                continue
            f = self.files[0]
            if f is not self._splitting:
                self.splitter = LineSplitter(f.offset)
                self._splitting = f
            data = await asyncio.to_thread(f.read, CHUNK) if f.gz else f.read(CHUNK)
            if data:
                quiet_since = 0.0
                await self._consume(f, data)
                continue
            if len(self.files) > 1:
                # Docker writes to a file no more once a newer one exists: this one is complete.
                if self.splitter.pending:
                    self.corrupt += 1
                    self.runner.stats.drop("corrupt")
                f.close()
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
            if self.finishing:
                # Docker has flushed the copier before `die`; one more look for a late rotation.
                if not quiet_since:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 2 * self.opts.poll_interval:
                    self.poll_rotation()
                    if len(self.files) == 1 and not self.joiner.pending:
                        return
            await self.idle(self.opts.poll_interval)
        if self.batch:
            await self.flush()

    def _pos_here(self, f: LogFile) -> RawPos:
        return (f, self.splitter.offset, 0)

    def to_position(self, raw: Any) -> Position:
        f, offset, time_ns = raw
        return FilePos(f.inode, f.refresh_fp(), offset, time_ns)

    async def _consume(self, f: LogFile, data: bytes) -> None:
        before = self.splitter.oversized
        lines = self.splitter.feed(data)
        stats = self.runner.stats
        if self.splitter.oversized != before:
            stats.drop("corrupt", self.splitter.oversized - before)
        if not f.fp:
            f.refresh_fp()
        cid, container, joiner = self.cid, self.container, self.joiner
        skip = self.skip_until_ns
        max_records, max_bytes = self.opts.batch_records, self.opts.batch_bytes
        batch = self.batch
        for raw, end in lines:
            try:
                stream, time_ns, line, complete = parse_fields(raw)
            except CorruptLine:
                self.corrupt += 1
                stats.drop("corrupt")
                log.debug("container %s: corrupt json-file line before offset %d skipped", cid[:12], end)
                self.advance((f, end, 0), joiner.pending)
                continue
            if skip:
                if time_ns <= skip:
                    self.advance((f, end, time_ns), joiner.pending)
                    continue
                skip = self.skip_until_ns = 0
            if complete and not joiner.pending:
                # The common case, inlined: one record per line, nothing to join.
                batch.append(LogRecord(container, stream, time_ns, line))
                self.batch_bytes += len(line)
                self.batch_pos = (f, end, time_ns)
            else:
                start = end - len(raw) - 1
                seed = f"{cid}:{f.fp}:{start}"
                before_pos, after_pos = (f, start, time_ns), (f, end, time_ns)
                for o in joiner.feed(stream, time_ns, line, complete, before_pos, after_pos, seed):
                    self.add(o.stream, o.time_ns, o.line, o.partial, o.pos)
            if len(batch) >= max_records or self.batch_bytes >= max_bytes:
                await self.flush()
                batch = self.batch
                if self.stopping:
                    return


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
