"""Hold a new container's json-file logs from its `create` event until its tails take them over.

A tail is made once the inventory has inspected the container, after its `start`. A container that
writes at full speed with `max-size=1m` and `max-file=3` has its first file deleted by Docker about
0.6 s after it starts, and an inspect answered by a dockerd that is busy copying those very logs
can take longer than that: the first lines were lost, and not counted (seen in CI: 13,326 of
200,000). The container's directory, and so its log file's path, is known from the event alone,
so the pipeline subscribes an EarlyHold to the directory at `create`, before Docker creates the
file: from then on the watcher thread opens every file the moment Docker creates it, and counts
every file Docker created that no look opened, exactly as a tail would. A tail then starts from the hold's
files and counts (FileTail._adopt): nothing written since `create` is lost uncounted.

The hand-over is exact: every subscriber of a directory gets the same watcher round's events, the
hold first (it subscribed first); the hold records the last round it counted, the tail ignores
rounds up to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from agent.logs.logfile import MAX_HELD_FILES, LogFile, MissCount, count_lines, take_unlinked, walk_back
from agent.logs.watch import DirWatcher, Notice

log = logging.getLogger(__name__)


@dataclass
class Handover:
    """What a tail takes from the hold: its own descriptors of the held files, oldest first, and the
    count so far (the tail goes on counting from it)."""

    files: list[LogFile]
    round: int
    exact: bool
    count: MissCount
    let_go_files: int
    let_go_lines: int
    let_go_bytes: int


class EarlyHold:
    def __init__(self, path: Path, watcher: DirWatcher) -> None:
        """Blocking but short: an inotify watch, a stat (the file does not exist yet at `create`)."""
        self.path = path
        self.lock = threading.Lock()
        self.files: list[LogFile] = []  # oldest first
        self._held: dict[int, LogFile] = {}  # plain files Docker has not unlinked yet, by inode
        self._newest: LogFile | None = None
        self.round = 0  # the last watcher round counted here
        self.exact = False
        self.count = MissCount()
        self.let_go_files = self.let_go_lines = self.let_go_bytes = 0
        self.users = 0  # tails that will take over (the pipeline's own reference is `pinned`)
        self.pinned = True
        self.closed = False
        self._watcher = watcher
        with self.lock:
            # Files that exist already (the event came late), looked at before the watch: their
            # creations are not counted, so neither are they (files rotated away before it are unknown).
            self._scan()
            self.count.opened = 0
        self._sub = watcher.subscribe(str(path.parent), path.name, self._on_notice)
        with self.lock:
            self.exact = self._sub.wd >= 0
            self._scan()  # what Docker created between the first look and the watch

    # --- the watcher thread ---------------------------------------------------------------------
    def _on_notice(self, n: Notice) -> None:
        with self.lock:
            if self.closed:
                return
            if n.lost:
                self.exact = False
            if n.exact:
                self.count.created += n.created
            if n.created or n.changed or not n.exact:
                for _ in range(4):  # again while it finds newer files, as FileTail._on_notice
                    if not self._scan():
                        break
            if n.deleted or not n.exact:
                take_unlinked(self._held)  # marked gone: the tail closes them once read
            if self.exact:
                self.count.settle(self.path, self._newest)  # the tail that takes over reports them
            self.round = max(self.round, n.round)

    def _scan(self) -> bool:
        """Hold a new live file and every unseen file rotated before it (under lock): found one?"""
        newest = self._newest
        try:
            if newest is not None and os.stat(self.path).st_ino == newest.inode:
                return False
            live = LogFile.open(self.path)
        except OSError:
            return False  # not created yet (or not readable: the tail reports that)
        if newest is not None and live.inode == newest.inode:
            live.close()
            return False
        between, _ = walk_back(live, self.path, newest, self._held)
        for f in [*between, live]:
            self.files.append(f)
            if f.gz:
                f.gone = True  # never watched for its unlink
            else:
                self._held[f.inode] = f
        self._newest = live
        self.count.opened += len(between) + 1
        while len(self.files) > MAX_HELD_FILES:  # no tail came for long: the tail's own bound
            victim = self.files.pop(0)
            self._held.pop(victim.inode, None)
            try:
                lines, size = count_lines(victim)
            except OSError:
                lines, size = 0, 0
            victim.close()
            self.let_go_files += 1
            self.let_go_lines += lines
            self.let_go_bytes += size
        return True

    # --- the tails (a worker thread, under the tail's own lock) ----------------------------------
    def hand_over(self) -> Handover:
        with self.lock:
            copies = [
                LogFile(os.dup(f.fd), f.inode, f.gz, fp=f.fp, gone=f.gone) for f in self.files if f.fd >= 0
            ]
            return Handover(
                copies,
                self.round,
                self.exact,
                replace(self.count),
                self.let_go_files,
                self.let_go_lines,
                self.let_go_bytes,
            )

    # --- the pipeline (the event loop) -----------------------------------------------------------
    def release(self) -> None:
        """A tail took over (or ended without): close once no tail and not the pipeline needs it."""
        self.users -= 1
        self._close_if_unused()

    def unpin(self) -> None:
        self.pinned = False
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if self.users <= 0 and not self.pinned:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self._watcher.unsubscribe(self._sub)
        with self.lock:
            self.closed = True
            for f in self.files:
                with contextlib.suppress(Exception):
                    f.close()
            self.files, self._held, self._newest = [], {}, None
