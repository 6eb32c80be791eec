"""One of Docker's json-file log files, held open by descriptor: a file Docker rotates or deletes
stays readable through it, and a held inode is never reused, so inodes identify files exactly.
Shared by the tails (agent/logs/tail.py) and the early hold (agent/logs/early.py)."""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from agent.logs.jsonfile import FINGERPRINT_MAX, fingerprint

log = logging.getLogger(__name__)

# One read. A reading tail holds about five times this (the chunk, its whole-lines block, the parsed
# rows and the records), FILL_SLOTS tails per sink read at once. 64 KiB against 256: the same CPU per
# line (bench/RESULTS.md, "Memory"), a third of the peak shipping 50 containers to 3 sinks.
CHUNK = 64 * 1024
# Held behind the reader per tail (files Docker may already have deleted: disk space it cannot free
# while we hold them). A sink down for long, or a writer faster than the sink, reaches these.
MAX_HELD_FILES = 64
MAX_HELD_BYTES = 512 << 20
MAX_WALK = 64


@dataclass(eq=False)
class LogFile:
    """One open log file (plain, or a gzipped rotation read by decompressing)."""

    fd: int
    inode: int
    gz: bool
    offset: int = 0  # next byte (uncompressed) to read
    fp: str = ""
    # Closed once both: read to its end (finished) and unlinked by Docker (gone; or never watched).
    finished: bool = False
    gone: bool = False
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
        """Idempotent: the descriptor number may belong to another file once closed."""
        if self.fd < 0:
            return
        if self._gzf is not None:
            with contextlib.suppress(Exception):
                self._gzf.close()
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


def rotation_chain(live: Path) -> list[Path]:
    """Docker's files for one container, oldest first: `.N[.gz]` ... `.1[.gz]`, then the live file."""
    # Not a regex of the name: one per container filled re's cache (512 patterns, ~0.7 MiB kept)
    # and was compiled again for every tail past the 512th.
    prefix = live.name + "."
    found: dict[int, Path] = {}
    try:
        names = os.listdir(live.parent)
    except OSError:
        names = []
    for name in names:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        gz = rest.endswith(".gz")
        digits = rest[:-3] if gz else rest
        if digits.isascii() and digits.isdigit():
            n = int(digits)
            # A `.1` and its `.1.gz` both exist while Docker compresses: the plain one is whole.
            if n not in found or not gz:
                found[n] = live.parent / name
    return [found[n] for n in sorted(found, reverse=True)] + [live]


def count_lines(f: LogFile) -> tuple[int, int]:
    """Lines and bytes from the file's read offset to its end (blocking)."""
    lines = size = 0
    while data := f.read(CHUNK):
        lines += data.count(b"\n")
        size += len(data)
    return lines, size


def take_unlinked(held: dict[int, LogFile]) -> list[LogFile]:
    """The held files Docker has unlinked since the last look: out of `held`, marked gone."""
    out = []
    for ino, f in list(held.items()):
        try:
            nlink = os.fstat(f.fd).st_nlink
        except OSError:
            continue
        if nlink == 0:
            del held[ino]
            f.gone = True
            out.append(f)
    return out


@dataclass
class MissCount:
    """Files Docker rotated away before any look opened them, for a tail or the early hold (which
    hands its count over). Not by unlinks: with compress=true Docker unlinks `.1` once `.1.gz` holds
    its lines. Every file Docker makes is first the live file, created under its name: the files
    created since the watch began (inotify), less the files the looks opened since (not the first
    look, made before the watch), were gone before a look found them."""

    created: int = 0
    opened: int = 0
    missed: int = 0  # counted so far

    def settle(self, path: Path, newest: LogFile | None) -> int:
        """The files newly counted missed. Only once a look has caught up with the live file at
        `path` (it is `newest`): then every file created before this round's events was opened or
        is gone. A look may open a file whose creation event comes a round later, so the count
        never runs ahead of the files truly missed."""
        new = self.created - self.opened - self.missed
        if new <= 0 or newest is None:
            return 0
        try:
            if os.stat(path).st_ino != newest.inode:
                return 0
        except OSError:
            return 0
        self.missed += new
        return new


def walk_back(
    live: LogFile, path: Path, newest: LogFile | None, held: dict[int, LogFile]
) -> tuple[list[LogFile], bool]:
    """The rotated files between the live file just opened (`live`, at `path`) and `newest`, the newest
    file already held: opened, oldest first. `reached`: the walk found `newest` (or a held file), so
    nothing between was missed by this look; False when the chain no longer leads back to it (whole
    files may have gone)."""
    between: list[LogFile] = []  # newest first while walking
    if newest is None:
        return between, True
    newest_fp = newest.refresh_fp()
    base = str(path)
    holes = 0
    for j in range(1, MAX_WALK):
        try:
            f = LogFile.open(f"{base}.{j}")  # plain first: while Docker gzips it, it is whole
        except FileNotFoundError:
            try:
                f = LogFile.open(f"{base}.{j}.gz")
            except FileNotFoundError:
                # Mid-rotation Docker's renames leave one name missing at a time (`.1` between
                # `.1`→`.2` and live→`.1`): stopping there would skip every file beyond it.
                holes += 1
                if holes == 2:
                    break
                continue
            except OSError:
                break
        except OSError:
            break
        holes = 0
        if f.inode == live.inode or (f.gz and f.fp and f.fp == live.refresh_fp()):
            # Docker rotated `live` since we opened it (and maybe compressed it: its `.gz` has its
            # fingerprint): what we walked so far is newer than it, and queued before it would be
            # read out of order (or, met again, twice). The next look walks back to `live` and
            # finds them.
            f.close()
            for g in between:
                g.close()
            between = []
            continue
        if f.inode == newest.inode or f.inode in held or (f.gz and f.fp and f.fp == newest_fp):
            f.close()
            between.reverse()
            return between, True
        if any(g.inode == f.inode or (f.gz and f.fp and f.fp == g.refresh_fp()) for g in between):
            # Docker renamed it one step older during this walk (or compressed it): met again.
            f.close()
            continue
        between.append(f)
    between.reverse()
    return between, False
