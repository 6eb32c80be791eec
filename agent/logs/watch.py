"""Watch Docker's per-container log directories: inotify in one thread for every tail, polling as
the fallback.

    DirWatcher thread ── poll([inotify fd, wake pipe]) ─► events per directory ─► Notice
        └─► each subscriber's callback, in this thread: it stats and opens new files at once, so a
            file Docker creates is held before Docker can rotate it away, whatever the event loop does
    fallback (no inotify, or the kernel refused a watch): callback(Notice(exact=False)) every
    `fallback_interval`; every subscriber also gets one of those every `rescan_interval`.

The kernel interface is called through ctypes (inotify_init1, inotify_add_watch, inotify_rm_watch
and reading `struct inotify_event`s, man 7 inotify): three calls and a 16-byte header, read in our
own thread, so a library would add a dependency and an event loop integration we do not use.
`parse_events` is pure and tested from bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import logging
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (of the NUL-padded name that follows)
READ_SIZE = 65536
# Reads per round: 32 x 64 KiB covers the kernel's default queue (max_queued_events 16,384 events
# of ~96 bytes with a container's log file name).
READ_CHUNKS = 32
# A subscribe's drain of the whole queue, bounded all the same (it holds the lock, on the event
# loop's thread): past it, writers outpace the parse, and the events left are treated as lost.
DRAIN_CHUNKS = 4 * READ_CHUNKS

# The watcher thread sleeps at least this long between two rounds: a writer at full speed makes an
# IN_MODIFY per write, and waking for each would cost more than it tells. Docker cannot rotate a
# file away in this time (that takes max-file rotations of at least one entry each).
MIN_ROUND = 0.002
# Every syscall of the watcher thread (stat, open, fstat, pread: a dozen per round) releases the GIL,
# and taking it back from a busy event loop waits up to the interpreter's switch interval, 5 ms by
# default: rounds of 100-300 ms were measured under load (the convoy effect), long enough for Docker
# to rotate a small file away unseen. 0.5 ms bounds a round to a few ms.
SWITCH_INTERVAL = 0.0005


@dataclass(frozen=True, slots=True)
class RawEvent:
    wd: int
    mask: int
    cookie: int
    name: str


def parse_events(buf: bytes) -> list[RawEvent]:
    """A read() of an inotify descriptor → its events (pure)."""
    out: list[RawEvent] = []
    pos, end = 0, len(buf)
    while pos + _HEADER.size <= end:
        wd, mask, cookie, n = _HEADER.unpack_from(buf, pos)
        pos += _HEADER.size
        name = buf[pos : pos + n].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        pos += n
        out.append(RawEvent(wd, mask, cookie, name))
    return out


@dataclass(frozen=True, slots=True)
class Notice:
    """What happened in a directory since the last notice, for one subscriber's file names."""

    exact: bool = False  # from inotify events (False: a poll or a rescan; look at everything)
    created: int = 0  # the live file was created (IN_CREATE)
    modified: bool = False  # the live file was written to
    changed: bool = False  # a rotation-chain name was renamed, deleted, or a .gz finished
    deleted: int = 0  # plain chain names (`<live>`, `<live>.N`) unlinked (IN_DELETE): held files to close
    lost: bool = False  # the kernel's event queue overflowed: events were lost, counts are not exact
    # The watcher's round that made it (0: not from the watcher thread). Every subscriber of a
    # directory gets the same round's events, so a hand-over between two of them (agent/logs/early.py)
    # can say exactly which rounds the first one had already counted.
    round: int = 0


class Inotify:
    """The kernel interface, through libc."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        self.fd: int = fd

    def add_watch(self, path: str, mask: int) -> int:
        wd = int(self._add(self.fd, os.fsencode(path), mask))
        if wd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_add_watch {path}: {os.strerror(e)}")
        return wd

    def rm_watch(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL when the kernel already dropped it (directory deleted): fine

    def read(self, limit: int) -> Iterator[list[RawEvent]]:
        """The queued events, one read(2) at a time. The kernel returns whole events only, so each
        chunk parses alone, and a burst's backlog is never held at once: 50 writers at full speed
        queue ~15,000 IN_MODIFYs between two rounds, and joining them before parsing held 1.5 MiB of
        bytes plus 2.8 MiB of events (bench/RESULTS.md, session 11). At most `limit` reads: what
        writers queue meanwhile waits for the next round."""
        for _ in range(limit):
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                return
            yield parse_events(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


Callback = Callable[[Notice], None]


@dataclass(eq=False)
class Subscription:
    directory: str
    live: str  # the live file's name; the chain is live, live.N, live.N.gz
    callback: Callback
    wd: int = -1  # -1: polled


# Every subscriber is also looked at this often, notices or not: a fallback, and the backlog gauge of
# a reader stuck behind a sink that is down. 1,500 idle tails in-process (as bench/idle_tails.py
# runs them), rescanned every 1 s: 5.1 % of a core; every 10 s: 3.7 %.
RESCAN_INTERVAL = 5.0


class DirWatcher:
    """One thread and one inotify instance for every FileTail (the kernel allows 128 instances per
    user by default, but 8192+ watches)."""

    def __init__(
        self,
        *,
        use_inotify: bool = True,
        fallback_interval: float = 0.05,
        rescan_interval: float = RESCAN_INTERVAL,
    ) -> None:
        self.fallback_interval = fallback_interval
        self.rescan_interval = rescan_interval
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._by_wd: dict[int, list[Subscription]] = {}
        self._ino: Inotify | None = None
        self.inotify_error = ""
        if use_inotify:
            try:
                self._ino = Inotify()
            except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify
                self.inotify_error = str(exc)
                log.warning("inotify unavailable (%s): polling log directories every %.0f ms",
                            exc, fallback_interval * 1000)  # fmt: skip
        else:
            self.inotify_error = "disabled"
        # Folded from events read, for the next round's callbacks (under _lock).
        self._pending: dict[int, tuple[Subscription, Notice]] = {}
        self._overflow = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._closing = False
        self._thread: threading.Thread | None = None
        self.rounds = 0  # for tests: completed rounds of the thread

    @property
    def inotify(self) -> bool:
        return self._ino is not None

    def subscribe(self, directory: str, live: str, callback: Callback, queued: bool = False) -> Subscription:
        """`queued`: also the events the kernel had queued for the directory before (another
        subscriber watches it already). Without, the subscriber's notices are about what happened
        after this call, exactly: a tail counts the files Docker creates from its first look on
        (tail.py), and a creation from before would be counted as a file it never opened."""
        sub = Subscription(directory, live, callback)
        with self._lock:  # the thread reads and folds under it too: nothing read falls in between
            if self._ino is not None:
                try:
                    sub.wd = self._ino.add_watch(directory, MASK | IN_ONLYDIR)
                except OSError as exc:
                    # ENOSPC (max_user_watches), EACCES (an agent not root), ENOENT: poll this one.
                    level = logging.WARNING if exc.errno == errno.ENOSPC else logging.DEBUG
                    log.log(level, "cannot watch %s (%s): polling it", directory, exc)
                if sub.wd >= 0 and not queued and self._by_wd.get(sub.wd):
                    # For the subscribers already there, in the next round; all of the queue, so
                    # that none of it reaches the new one (a creation from before its first look
                    # would be counted as a file it missed).
                    self._read_locked(drain=True)
            self._subs.append(sub)
            if sub.wd >= 0:
                self._by_wd.setdefault(sub.wd, []).append(sub)
            if self._thread is None:
                # Interpreter-wide, but the agent is this one process: see SWITCH_INTERVAL.
                sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
                self._thread = threading.Thread(target=self._run, name="dockwatch-logwatch", daemon=True)
                self._thread.start()
        self._poke()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            with contextlib.suppress(ValueError):
                self._subs.remove(sub)
            if sub.wd >= 0:
                subs = self._by_wd.get(sub.wd, [])
                with contextlib.suppress(ValueError):
                    subs.remove(sub)
                if not subs:
                    self._by_wd.pop(sub.wd, None)
                    if self._ino is not None:
                        self._ino.rm_watch(sub.wd)

    def close(self) -> None:
        self._closing = True
        self._poke()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(5)
        if self._ino is not None:
            self._ino.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # --- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        """The thread: rounds until close(); a round that fails is logged and the next one runs (a
        watcher that stopped would leave every tail on the files it has)."""
        while not self._closing:
            try:
                self._rounds()
            except Exception:
                log.exception("log directory watcher failed; going on")
                time.sleep(0.1)

    def _rounds(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if self._ino is not None:
            poller.register(self._ino.fd, select.POLLIN)
        last_poll = last_rescan = time.monotonic()
        while not self._closing:
            with self._lock:
                polled = any(s.wd < 0 for s in self._subs)
            timeout = self.fallback_interval if polled else self.rescan_interval
            ready = poller.poll(max(1, int(timeout * 1000)))
            if self._closing:
                return
            woke = time.monotonic()
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 4096)
            with self._lock:
                if self._ino is not None:
                    self._read_locked()
                notices, self._pending = self._pending, {}
                overflow, self._overflow = self._overflow, False
            now = time.monotonic()
            with self._lock:
                subs = list(self._subs)
            if overflow:
                log.warning("inotify queue overflowed: rescanning every log directory")
            rescan = overflow or now - last_rescan >= self.rescan_interval
            poll = now - last_poll >= self.fallback_interval
            if rescan:
                last_rescan = now
            if poll:
                last_poll = now
            this = self.rounds + 1
            for sub in subs:
                if overflow:  # first: a subscriber stops counting before this round's events
                    self._call(sub, Notice(exact=False, lost=True, round=this))
                got = notices.get(id(sub))
                if got is not None:
                    self._call(sub, dataclasses.replace(got[1], round=this))
                if not overflow and (rescan or (poll and sub.wd < 0)):
                    self._call(sub, Notice(exact=False, round=this))
            self.rounds += 1
            took = time.monotonic() - woke
            if took > 0.1:  # a round that long can let Docker rotate a file away unseen
                log.debug("log directory watcher: a round took %.0f ms (%d ready)", took * 1000, len(ready))
            time.sleep(MIN_ROUND)

    def _read_locked(self, drain: bool = False) -> None:
        """Read the kernel's queued events and fold them into the subscribers' next notices (under
        _lock: a subscribe takes it too, so each event goes to the subscribers there when it was
        read). A round reads READ_CHUNKS at most; a `drain`, all (up to DRAIN_CHUNKS: what is left
        then is handled as a queue overflow, so no subscriber counts exactly across it)."""
        assert self._ino is not None
        limit = DRAIN_CHUNKS if drain else READ_CHUNKS
        reads = 0
        try:
            for events in self._ino.read(limit):
                reads += 1
                self._fold_locked(events)
        except OSError as exc:
            log.warning("reading inotify events: %s", exc)
        if drain and reads == limit:
            self._overflow = True

    def _fold_locked(self, events: list[RawEvent]) -> None:
        notices = self._pending
        for ev in events:
            if ev.mask & IN_Q_OVERFLOW:
                self._overflow = True
                continue
            if ev.mask & IN_IGNORED:
                # The directory is gone (`docker rm`) and the kernel dropped the watch; it may hand
                # the same number to a new watch: its subscribers are polled now.
                for sub in self._by_wd.pop(ev.wd, ()):
                    sub.wd = -1
                continue
            for sub in self._by_wd.get(ev.wd, ()):
                n = _fold(notices.get(id(sub), (sub, Notice(exact=True)))[1], sub.live, ev)
                if n is not None:
                    notices[id(sub)] = (sub, n)

    def _call(self, sub: Subscription, notice: Notice) -> None:
        try:
            sub.callback(notice)
        except Exception:  # one tail's bug must not stop the others' watching
            log.exception("log directory watcher callback for %s failed", sub.directory)


def _fold(n: Notice, live: str, ev: RawEvent) -> Notice | None:
    """Add one inotify event to a subscriber's notice (None: not about its files)."""
    name = ev.name
    if not name.startswith(live):
        if ev.mask & (IN_DELETE_SELF | IN_IGNORED):
            return Notice(True, n.created, n.modified, True, n.deleted, n.lost)
        return None
    rest = name[len(live) :]
    plain = rest == "" or (rest[:1] == "." and rest[1:].isdigit())
    if not plain and not (rest[:1] == "." and rest.endswith(".gz") and rest[1:-3].isdigit()):
        return None  # another file of the container's (config.v2.json, ...) or a temp name
    created = n.created + (1 if rest == "" and ev.mask & IN_CREATE else 0)
    modified = n.modified or (rest == "" and bool(ev.mask & IN_MODIFY))
    moved = IN_MOVED_FROM | IN_MOVED_TO
    changed = n.changed or bool(ev.mask & (moved | IN_DELETE | IN_CLOSE_WRITE | IN_CREATE))
    deleted = n.deleted + (1 if plain and ev.mask & IN_DELETE else 0)
    return Notice(True, created, modified, changed, deleted, n.lost)
