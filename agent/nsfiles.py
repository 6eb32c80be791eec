"""A namespace's /proc/<pid>/net files kept open between collections, read again at offset 0.

For a small /proc file, opening it is much of what the kernel does: the walk through
/proc/<pid>/net, a new struct file and seq_file, a reference on the namespace, a buffer; closing
frees them again. A seq_file read at offset 0 generates the file afresh (the kernel's
seq_read_iter restarts its iterator there), so a descriptor kept open gives the same fresh
numbers at each read: at 500 namespaces, 36 µs instead of 57 µs of CPU per namespace for its five
files (bench/RESULTS.md, "Files kept open").

What it costs, and the limits on it:
- Descriptors: up to seven per namespace, at most half the soft RLIMIT_NOFILE in all (the agent
  raises its soft limit to the hard one at start, as Go programs do). Past that budget a file is
  opened and closed at each read, as without this.
- Kernel memory: an open file keeps its struct file and its seq_file buffer (a page): ~5 KB a
  file, ~26 KB a namespace, counted in the agent's memory cgroup though not in its RSS.
- An open file holds a reference on its namespace, and reads on after the process it was opened
  through has exited. So where a namespace's kept files read the same bytes as last time, and
  at every ALIVE_EVERY-th read where they changed, the collector checks that process in its /proc
  directory (Kept.alive: one more descriptor, a lookup of 1-5 µs), as opening by path would
  (NetCollector._sample); it closes
  a namespace's files at the first collection without it, and all of them when nothing was
  collected for `--collector.keep-files-idle` (2 minutes; NetCollector.release_idle, looked at
  by the agent every quarter of that, at most every 30 s): with nobody scraping, nothing is
  pinned for long.

`--collector.keep-files-open=false` opens and closes every file at every read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
from typing import Any, Protocol

log = logging.getLogger(__name__)

_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class Reader(Protocol):
    """What reads the files (agent/fastproc.py's parsers): by path, or an open descriptor."""

    def read(self, path: str, single: bool = False) -> bytes: ...

    def pread(self, fd: int, single: bool = False) -> bytes: ...


def raise_open_files_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard one (a process may; systemd's default soft limit is 1024
    under a hard one of 524288). (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or (hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft > hard):
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # refused (e.g. an infinite hard limit above fs.nr_open): keep it
        return soft, soft
    return soft, hard


def default_budget() -> int:
    """Half the soft open-files limit (the rest for sockets, log files, and reading without holding)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(0, soft // 2)


class Budget:
    """How many descriptors every namespace's kept files may use together."""

    __slots__ = ("_lock", "limit", "refused", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0  # files read without keeping them, for the budget was spent
        self._lock = threading.Lock()  # a collector's reader threads share it

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                if not self.refused:
                    log.info(
                        "collector: %d /proc files kept open (the budget: half the open-files "
                        "limit); more are opened at each read",
                        self.used,
                    )
                self.refused += 1
                return False
            self.used += 1
            return True

    def give(self, n: int = 1) -> None:
        with self._lock:
            self.used -= n


class Opened:
    """A namespace's files opened and closed at each read (the prefix: "<procfs>/<pid>/net/")."""

    __slots__ = ("prefix", "reader")

    def __init__(self, prefix: str, reader: Reader) -> None:
        self.prefix = prefix
        self.reader = reader

    def read(self, name: str, single: bool = False) -> bytes:
        return self.reader.read(self.prefix + name, single)


class Kept:
    """A namespace's files, each opened at its first read and kept open for the next ones, and
    the directory of the process they were opened through (`prefix` is "<procfs>/<pid>/net/").

    Not thread-safe: one collection reads a namespace at a time (the collector's lock)."""

    __slots__ = ("budget", "fds", "memo", "pid_fd", "prefix", "reader", "unchecked")

    def __init__(self, prefix: str, reader: Reader, budget: Budget) -> None:
        self.prefix = prefix
        self.reader = reader
        self.budget = budget
        self.fds: dict[str, int] = {}
        self.pid_fd: int | None = None  # <procfs>/<pid>, for alive()
        self.memo: Any = None  # what the reader made of these files last time (NetCollector's)
        self.unchecked = 0  # reads since alive() was last asked (NetCollector's)

    def read(self, name: str, single: bool = False) -> bytes:
        """The whole file, generated now; OSError naming the file where it cannot be read."""
        fd = self.fds.get(name)
        if fd is None:
            if not self.fds and self.pid_fd is None:
                self._open_pid_dir()
            if not self.budget.take():
                return self.reader.read(self.prefix + name, single)
            try:
                fd = os.open(self.prefix + name, _FLAGS)
            except OSError:
                self.budget.give()
                raise
            self.fds[name] = fd
        try:
            return self.reader.pread(fd, single)
        except OSError as exc:  # the same subclass, with the file's name
            raise OSError(exc.errno, exc.strerror, self.prefix + name) from None

    def _open_pid_dir(self) -> None:
        if not self.budget.take():
            return  # alive() looks the path up instead
        try:
            self.pid_fd = os.open(self.prefix.removesuffix("net/"), _DIR_FLAGS)
        except OSError:
            self.budget.give()  # gone already: the file's own open says so

    def alive(self) -> bool:
        """Whether the process the files were opened through still exists. A kept file holds
        its namespace, so it reads on after that process exits: the namespace of a container
        that exited while the inventory still lists it (the engine unreachable, say) must be
        found gone, as opening its files by path finds it. A lookup in the process's /proc
        directory fails once it has exited (ESRCH), even if its pid was reused since: ~1.2 µs."""
        if not self.fds:
            return True  # nothing kept: the next read opens by path and finds out
        try:
            if self.pid_fd is not None:
                os.stat("net", dir_fd=self.pid_fd)
            else:
                os.stat(self.prefix)
        except (FileNotFoundError, ProcessLookupError):
            return False
        return True

    def close(self) -> None:
        fds = [*self.fds.values(), *([] if self.pid_fd is None else [self.pid_fd])]
        self.fds, self.pid_fd, self.memo = {}, None, None
        try:
            for fd in fds:
                with contextlib.suppress(OSError):  # one failing must not leak the others
                    os.close(fd)
        finally:
            self.budget.give(len(fds))
