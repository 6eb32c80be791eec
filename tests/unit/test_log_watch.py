"""The log directory watcher (inotify through ctypes, polling as the fallback) and what the json-file
source counts when files go unread: pure event parsing from bytes, then a writer that rotates like
dockerd (tests/unit/test_log_tail.py's DockerWriter) against the real kernel."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from agent.logs import tail as tail_mod
from agent.logs import watch as watch_mod
from agent.logs.checkpoint import CheckpointStore, FilePos
from agent.logs.delivery import TailOptions
from agent.logs.record import LogRecord
from agent.logs.sink import DropReason
from agent.logs.watch import (
    IN_CREATE,
    IN_DELETE,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    DirWatcher,
    Inotify,
    Notice,
    RawEvent,
    _fold,
    parse_events,
)
from exporters.sinks.base import Outcome
from tests.support.toolbox import until
from tests.unit import test_log_tail as th

LIVE = f"{th.CID}-json.log"


def raw_event(wd: int, mask: int, name: str, cookie: int = 0) -> bytes:
    data = name.encode()
    n = (len(data) // 16 + 1) * 16 if data else 0  # the kernel NUL-pads names
    return struct.pack("iIII", wd, mask, cookie, n) + data.ljust(n, b"\0")


def test_parse_events_from_bytes() -> None:
    buf = raw_event(1, IN_CREATE, LIVE) + raw_event(1, IN_MOVED_FROM, LIVE, 7) + raw_event(2, 0x4000, "")
    assert parse_events(buf) == [
        RawEvent(1, IN_CREATE, 0, LIVE),
        RawEvent(1, IN_MOVED_FROM, 7, LIVE),
        RawEvent(2, 0x4000, 0, ""),
    ]
    assert parse_events(buf[:5]) == []  # a short read holds no event


def test_a_backlog_is_read_a_chunk_at_a_time_and_a_round_reads_a_bounded_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst's queued events (real inotify) come one read(2) of READ_SIZE at a time, never joined;
    a read takes at most its limit of them and the rest stays queued for the next."""
    monkeypatch.setattr(watch_mod, "READ_SIZE", 4096)
    ino = Inotify()
    try:
        ino.add_watch(str(tmp_path), IN_CREATE)
        names = [f"{i:04d}-{LIVE}" for i in range(600)]  # 96-byte events: ~57 KiB queued
        for name in names:
            (tmp_path / name).touch()
        first = list(ino.read(3))
        assert len(first) == 3  # the bound, not the whole queue
        assert all(0 < len(chunk) <= 4096 // 96 for chunk in first)
        seen = [ev.name for chunk in first for ev in chunk]
        seen += [ev.name for chunk in ino.read(3) for ev in chunk]  # the next round's part
        rest = list(ino.read(100))  # all of what is left, under a larger limit
        assert 3 < len(rest) < 100
        seen += [ev.name for chunk in rest for ev in chunk]
        assert list(ino.read(1)) == []
        assert seen == names  # every event once, in order, across rounds
    finally:
        ino.close()


def _backlog_behind_a_held_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drain_chunks: int
) -> tuple[list[Notice], list[Notice]]:
    """The notices of a subscriber already there and of one that subscribes while ~86 KiB of
    events (300 creations of the live file) wait in the kernel's queue, read 4 KiB at a time."""
    monkeypatch.setattr(watch_mod, "READ_SIZE", 4096)
    monkeypatch.setattr(watch_mod, "READ_CHUNKS", 1)
    monkeypatch.setattr(watch_mod, "DRAIN_CHUNKS", drain_chunks)
    watcher = DirWatcher(rescan_interval=3600)
    first: list[Notice] = []
    second: list[Notice] = []
    entered, gate = threading.Event(), threading.Event()

    def hold(n: Notice) -> None:  # the first subscriber, slow in one round: the queue fills
        first.append(n)
        if not gate.is_set():
            entered.set()
            gate.wait(10)

    live = tmp_path / LIVE
    try:
        watcher.subscribe(str(tmp_path), LIVE, hold)
        live.touch()
        assert entered.wait(10)
        for _ in range(300):
            live.unlink()
            live.touch()
        watcher.subscribe(str(tmp_path), LIVE, second.append)
        gate.set()
        rounds = watcher.rounds
        deadline = time.monotonic() + 30
        while sum(n.created for n in first) < 301 and time.monotonic() < deadline:
            time.sleep(0.01)
        while watcher.rounds < rounds + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        gate.set()
        watcher.close()
    return first, second


def test_a_subscribe_drains_the_queue_so_older_events_reach_only_the_subscribers_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds read a bounded part of the queue; a subscribe reads all of it first, for those
    already subscribed: with a round's bound there, the rest reached the new subscriber, whose
    tail counts a creation from before its first look as a file it missed."""
    first, second = _backlog_behind_a_held_round(tmp_path, monkeypatch, drain_chunks=1000)
    assert sum(n.created for n in first) == 301 and not any(n.lost for n in first)
    assert sum(n.created for n in second) == 0 and not any(n.lost for n in second)


def test_a_drain_past_its_bound_is_a_lost_notice_before_anything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past DRAIN_CHUNKS the rest of the queue is treated as lost: every subscriber's first notice
    after it says so, before the older events read in later rounds reach the new one."""
    first, second = _backlog_behind_a_held_round(tmp_path, monkeypatch, drain_chunks=2)
    assert second and second[0].lost and not second[0].exact
    assert any(n.lost for n in first)
    assert sum(n.created for n in second) > 0  # the older events did reach it, after the notice


def test_fold_counts_creates_and_plain_unlinks_only() -> None:
    n = Notice(exact=True)
    for ev in [
        RawEvent(1, IN_DELETE, 0, f"{LIVE}.2"),  # rotation: unlink the oldest
        RawEvent(1, IN_MOVED_FROM, 0, f"{LIVE}.1"),
        RawEvent(1, IN_MOVED_TO, 0, f"{LIVE}.2"),
        RawEvent(1, IN_CREATE, 0, LIVE),
        RawEvent(1, IN_MODIFY, 0, LIVE),
        RawEvent(1, IN_DELETE, 0, f"{LIVE}.1.gz"),  # not a held file: nothing to close
    ]:
        got = _fold(n, LIVE, ev)
        assert got is not None
        n = got
    assert n == Notice(exact=True, created=1, modified=True, changed=True, deleted=1)
    assert _fold(n, LIVE, RawEvent(1, IN_MODIFY, 0, "config.v2.json")) is None


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("use_inotify", [True, False], ids=["inotify", "polling"])
async def test_rotation_faster_than_the_reader_loses_nothing(
    tmp_path: Path, use_inotify: bool, compress: bool
) -> None:
    """max-file=3 and 40 rotations while the reader is held back by a sink that is down: every file is
    rotated away and unlinked long before it is read, and is read through the descriptor the watcher
    opened. The writer waits only until the watcher holds each new file (the watcher's job: the
    kernel cannot be outrun from inside this process, which shares the GIL with the writer). With
    compress=true Docker also unlinks each `.1` for its `.1.gz`: nothing is counted missed for it."""
    watcher = DirWatcher(use_inotify=use_inotify, fallback_interval=0.01)
    assert watcher.inotify is use_inotify
    w = th.DockerWriter(tmp_path, max_file=3, compress=compress)
    sink = th.ListSink()
    sink.down = True
    tail = th.make_tail(tmp_path, sink, TailOptions(poll_interval=0.05, batch_records=100), watcher=watcher)
    task = asyncio.create_task(tail.run())
    try:
        await until(lambda: tail._ready and tail._sub is not None, what="watching")
        n = 0
        for _ in range(40):
            for _ in range(50):
                w.line(f"line-{n}")
                n += 1
            w.rotate()
            ino = w.path.stat().st_ino

            def held(i: int = ino) -> bool:
                return tail._newest is not None and tail._newest.inode == i

            await until(held, what="held")
        w.line(f"line-{n}")
        n += 1
        assert len(list(w.dir.glob("*-json.log*"))) == 3  # dockerd's files: only the last 3
        sink.down = False
        await until(lambda: len(sink.records) >= n, what=f"{n} lines")
        await asyncio.sleep(0.1)
        await th.stop(tail, task)
        assert sink.lines() == th.numbered(n)
        st = tail.runner.stats
        assert (st.files_missed, st.bytes_missed, st.dropped.get(DropReason.ROTATED, 0)) == (0, 0, 0)
    finally:
        await asyncio.to_thread(watcher.close)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
async def test_files_rotated_away_unopened_are_counted(tmp_path: Path, compress: bool) -> None:
    """The watcher cannot open anything for a while (its tail's lock is held, as a starved thread would
    be): dockerd rotates 5 times with max-file=2, so 4 files are created and unlinked unseen. With
    compress=true what Docker deletes unseen is `.1.gz` files (their `.1` was unlinked for them)."""
    # Rounds come every rescan while nothing happens: the test waits for two of them.
    watcher = DirWatcher(rescan_interval=0.2)
    w = th.DockerWriter(tmp_path, max_file=2, compress=compress)
    sink = th.ListSink()
    tail = th.make_tail(tmp_path, sink, watcher=watcher)
    tail.container = th.container()
    tail.container = replace(th.container(), log_opts={"max-size": "20k"})
    task = asyncio.create_task(tail.run())
    try:
        for s in th.numbered(10):
            w.line(s)
        await until(lambda: len(sink.records) == 10, what="first lines")
        with tail._lock:
            for r in range(5):
                for s in th.numbered(10, 10 + 10 * r):
                    w.line(s)
                w.rotate()
            rounds = watcher.rounds
            time.sleep(0.05)  # the events queue in the kernel meanwhile
        await until(lambda: watcher.rounds > rounds + 1, what="the watcher's next rounds")
        w.line("last")
        await until(lambda: sink.lines()[-1:] == ["last"], what="the last line")
        st = tail.runner.stats
        # Our file was read to its end through its descriptor (lines 10-19 arrived); of the 5 files
        # after it, 3 (lines 20-49) were created and unlinked while the watcher could not look, the
        # last two (.1 and the live file) were still there.
        assert sink.lines() == [*th.numbered(20), *th.numbered(10, 50), "last"]
        assert (st.files_missed, st.bytes_missed) == (3, 3 * 20_000)
        assert st.dropped.get(DropReason.ROTATED, 0) == 0  # their lines are not knowable
    finally:
        await th.stop(tail, task)
        await asyncio.to_thread(watcher.close)


async def test_misses_are_files_created_less_files_opened_once_caught_up(tmp_path: Path) -> None:
    """The count's rules, with the notices given by hand (a polling watcher sends none that count):
    a look may open a file before its creation event is read; a creation read while the new live
    file is not there yet counts nothing until a look opens it; files created that no look opened are
    counted once the look has caught up with the live file."""
    watcher = DirWatcher(use_inotify=False, fallback_interval=3600, rescan_interval=3600)
    w = th.DockerWriter(tmp_path, max_file=2)
    sink = th.ListSink()
    tail = th.make_tail(tmp_path, sink, watcher=watcher)
    tail.container = replace(th.container(), log_opts={"max-size": "1k"})
    task = asyncio.create_task(tail.run())
    try:
        w.line("a")
        await until(lambda: sink.lines() == ["a"], what="the first line")
        with tail._lock:
            tail._exact = True  # as with inotify: the exact notices below stand for its events
        st = tail.runner.stats
        w.rotate()
        tail._on_notice(Notice(exact=False))  # a rescan opens the new file first ...
        tail._on_notice(Notice(exact=True, created=1, changed=True))  # ... then its event is read
        assert st.files_missed == 0
        with tail._lock:
            w.rotate()
            w.rotate_away()  # the next rotation has begun: the file just created is `.1` already
        tail._on_notice(Notice(exact=True, created=1, changed=True))
        assert st.files_missed == 0  # no live file to open: not caught up, not counted
        w.fh = open(w.path, "wb")  # noqa: SIM115 - the rotation's second half
        tail._on_notice(Notice(exact=True, created=1, changed=True))
        assert st.files_missed == 0  # the look found both, the live file and `.1`
        with tail._lock:  # three rotations before any look: of max-file=2, the first file is gone
            for _ in range(3):
                w.line("b")
                w.rotate()
        tail._on_notice(Notice(exact=True, created=3, changed=True))
        assert (st.files_missed, st.bytes_missed) == (1, 1000)
        tail._on_notice(Notice(exact=True, modified=True))
        assert st.files_missed == 1  # counted once
    finally:
        await th.stop(tail, task)
        await asyncio.to_thread(watcher.close)


async def test_a_write_noticed_just_before_the_reader_waits_is_read_at_once(tmp_path: Path) -> None:
    """The watcher wakes only a reader that says it is waiting. A write whose notice came between
    the reader's last read and that moment woke nobody: the reader looks once more after saying so,
    instead of sleeping through its fallback (60 s here; without the look, this test times out).
    No notice reaches the tail in this test (a polling watcher that never polls): the write is the
    lost wake-up itself."""
    watcher = DirWatcher(use_inotify=False, fallback_interval=3600, rescan_interval=3600)
    w = th.DockerWriter(tmp_path)
    sink = th.ListSink()
    opts = TailOptions(poll_interval=0.02, idle_interval=60.0, batch_records=10)
    tail = th.make_tail(tmp_path, sink, opts, watcher=watcher)
    w.line("a")
    task = asyncio.create_task(tail.run())
    try:
        await until(lambda: sink.lines() == ["a"], what="the first line")
        with tail._lock:
            tail._exact = True  # as with inotify: the reader now relies on notices
        give_slot = tail._give_slot
        written: list[bool] = []

        def write_then_give_slot() -> None:  # _wait's first step, before `_waiting` is set
            if not written:
                written.append(True)
                w.line("b")
            give_slot()

        tail._give_slot = write_then_give_slot  # type: ignore[method-assign]
        tail.wake.set()  # one more pass of the loop: it finds nothing, then goes to wait
        await until(lambda: sink.lines() == ["a", "b"], timeout=30.0, what="the line written as it went idle")
        assert tail._idle_timeout() == 60.0
    finally:
        await th.stop(tail, task)
        await asyncio.to_thread(watcher.close)


async def test_the_reader_polls_only_where_no_notice_would_wake_it(tmp_path: Path) -> None:
    """The idle timeout: the fallback with inotify; the short poll without it, while a partial line
    waits for its rest, and while the container is finishing."""
    tail = th.make_tail(tmp_path, th.ListSink(), TailOptions(poll_interval=0.25, idle_interval=10.0))
    assert tail._idle_timeout() == 0.25  # not watching yet
    tail._exact = True
    assert tail._idle_timeout() == 10.0
    tail.joiner._pending["stdout"] = None  # type: ignore[assignment]
    assert tail._idle_timeout() == 0.25
    tail.joiner._pending.clear()
    tail.finishing = True
    assert tail._idle_timeout() == 0.25


async def test_a_creation_queued_before_a_second_subscriber_is_not_counted_by_it(tmp_path: Path) -> None:
    """Another subscriber (another sink's tail, the early hold) already watches the directory, so the
    kernel's events for it are one queue: an IN_CREATE queued before this tail's first look (which
    saw the new file, not counting it) was folded to this tail too, a false miss. Subscribing reads
    the queue for the subscribers already there first. (From a review's probe.)"""
    watcher = DirWatcher(rescan_interval=3600)
    w = th.DockerWriter(tmp_path, max_file=3)
    w.line("a")
    entered, gate = threading.Event(), threading.Event()

    def other(n: Notice) -> None:  # stands for the first sink's tail, slow in this round
        if not gate.is_set():
            entered.set()
            gate.wait(10)

    watcher.subscribe(str(w.dir), LIVE, other)
    sink = th.ListSink()
    tail = th.make_tail(tmp_path, sink, TailOptions(poll_interval=0.02), watcher=watcher)
    tail.container = replace(th.container(), log_opts={"max-size": "1k"})
    task = None
    try:
        w.line("b")  # a round starts; the watcher thread is held in `other`
        await asyncio.to_thread(entered.wait, 10)
        rounds = watcher.rounds
        w.rotate()  # IN_CREATE queued in the kernel, not read yet
        w.line("c")
        task = asyncio.create_task(tail.run())  # its first look sees `.1` and the new live file
        await until(lambda: sink.lines() == ["a", "b", "c"], what="all lines")
        gate.set()
        await until(lambda: watcher.rounds > rounds + 1, what="the next round")
        st = tail.runner.stats
        assert (st.files_missed, st.bytes_missed) == (0, 0), "a false 'rotated away' count"
    finally:
        gate.set()
        if task is not None:
            await th.stop(tail, task)
        await asyncio.to_thread(watcher.close)


async def test_a_rotation_right_after_the_first_look_is_seen_by_the_watch(tmp_path: Path) -> None:
    """The tail's first checkpoint write (`owe`, with fsync) used to come between its first look and
    its watch: a file Docker created then was opened without its creation seen, and the count ran
    one ahead for good, hiding the next real loss. The watch now begins right after the look. Here
    Docker rotates during that write, then three times more (max-file=2) while the watcher cannot
    look: one file is lost, and counted. (From a review's probe.)"""
    watcher = DirWatcher(rescan_interval=0.2)
    w = th.DockerWriter(tmp_path, max_file=2)
    w.line("a")
    sink = th.ListSink()
    tail = th.make_tail(tmp_path, sink, watcher=watcher)
    tail.container = replace(th.container(), log_opts={"max-size": "1k"})
    owe = tail.owe

    async def owe_while_docker_rotates(raw: object) -> None:
        await owe(raw)
        w.line("b")
        w.rotate()

    tail.owe = owe_while_docker_rotates  # type: ignore[method-assign]
    task = asyncio.create_task(tail.run())
    try:
        await until(lambda: sink.lines() == ["a", "b"], what="the first lines")
        w.line("c")
        await until(lambda: sink.lines() == ["a", "b", "c"], what="c")
        with tail._lock:  # the watcher cannot look: 3 rotations with max-file=2, 1 file gone unseen
            for s in ["d", "e", "f"]:
                w.line(s)
                w.rotate()
            rounds = watcher.rounds
        await until(lambda: watcher.rounds > rounds + 1, what="the watcher's next rounds")
        w.line("g")
        await until(lambda: sink.lines()[-1:] == ["g"], what="the last line")
        assert sink.lines() == ["a", "b", "c", "d", "f", "g"]  # "e" was in the file rotated away unseen
        assert tail.runner.stats.files_missed == 1
    finally:
        await th.stop(tail, task)
        await asyncio.to_thread(watcher.close)


async def test_a_look_without_events_wakes_a_waiting_reader_with_data(tmp_path: Path) -> None:
    """The kernel's queue overflowed and took a write's IN_MODIFY with it: the rescan that follows
    wakes the reader, which was in its 60 s fallback wait. (From a review's probe.)"""
    watcher = DirWatcher(use_inotify=False, fallback_interval=3600, rescan_interval=3600)
    w = th.DockerWriter(tmp_path)
    w.line("a")
    sink = th.ListSink()
    tail = th.make_tail(tmp_path, sink, TailOptions(poll_interval=0.02, idle_interval=60.0), watcher=watcher)
    waits: list[float] = []
    idle = tail.idle

    async def recording_idle(timeout: float) -> None:
        waits.append(timeout)
        await idle(timeout)

    tail.idle = recording_idle  # type: ignore[method-assign]
    task = asyncio.create_task(tail.run())
    try:
        await until(lambda: sink.lines() == ["a"], what="a")
        with tail._lock:
            tail._exact = True
        tail.wake.set()  # a pass of the loop: it goes to wait again, now with the 60 s fallback
        await until(lambda: waits[-1:] == [60.0] and tail._waiting, what="the 60 s wait")
        w.line("b")
        await asyncio.to_thread(tail._on_notice, Notice(exact=False, lost=True))
        assert not tail._exact
        await until(lambda: sink.lines() == ["a", "b"], what="b")
    finally:
        await th.stop(tail, task)
        await asyncio.to_thread(watcher.close)


async def test_over_the_held_bound_the_oldest_file_is_counted_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail_mod, "MAX_HELD_FILES", 2)
    w = th.DockerWriter(tmp_path, max_file=2)
    sink = th.ListSink()
    sink.down = True
    tail = th.make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    try:
        n = 0
        for _ in range(5):  # 5 files of 30 lines behind a sink that is down, 2 may be held behind
            for _ in range(30):
                w.line(f"line-{n}")
                n += 1
            rounds = tail._watcher.rounds if tail._watcher else 0
            w.rotate()

            def next_round(r: int = rounds) -> bool:
                return tail._watcher is not None and tail._watcher.rounds > r

            await until(next_round)
        w.line(f"line-{n}")
        n += 1
        await until(lambda: tail.runner.stats.files_missed == 2, what="2 files let go")
        sink.down = False
        await until(lambda: sink.lines()[-1:] == [f"line-{n - 1}"], what="the last line")
        st = tail.runner.stats
        got = [int(s[5:]) for s in sink.lines()]
        assert len(got) + st.dropped[DropReason.ROTATED] == n  # every line delivered or counted, exactly
        assert st.dropped[DropReason.ROTATED] == 60 and st.bytes_missed > 0
    finally:
        await th.stop(tail, task)


async def test_checkpointed_file_gone_at_start_is_counted(tmp_path: Path) -> None:
    w = th.DockerWriter(tmp_path, max_file=2)
    for s in th.numbered(10):
        w.line(s)
    sink = th.ListSink()
    tail = th.make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 10)
    await th.stop(tail, task)
    pos = CheckpointStore(tmp_path / "state").load("t", th.CID)
    assert isinstance(pos, FilePos)
    for r in range(3):  # our file rotated away while nobody watched
        for s in th.numbered(5, 10 + 5 * r):
            w.line(s)
        w.rotate()
    w.line("after")
    tail2 = th.make_tail(tmp_path, th.ListSink())
    tail2.container = replace(tail2.container, log_opts={"max-size": "1k"})
    task2 = asyncio.create_task(tail2.run())
    await until(lambda: tail2.runner.stats.files_missed == 1)
    await th.stop(tail2, task2)
    assert tail2.runner.stats.bytes_missed == 1000 - pos.offset


async def test_batches_keep_their_bounds_and_positions(tmp_path: Path) -> None:
    """The columnar path cuts batches by records and by bytes mid-block; a restart from the
    checkpoint repeats nothing."""
    w = th.DockerWriter(tmp_path)
    for s in th.numbered(100):
        w.line(s)
    sink = th.ListSink()
    opts = TailOptions(poll_interval=0.02, batch_records=7, batch_bytes=40)
    batches: list[int] = []
    send = sink.send

    async def sizes(batch: Sequence[LogRecord]) -> Outcome:  # record each batch's size on its way to the sink
        batches.append(len(batch))
        assert len(batch) <= 7 and sum(len(r.line) for r in batch) - len(batch[-1].line) < 40
        return await send(batch)

    sink.send = sizes  # type: ignore[method-assign]  # spy on the batches
    tail = th.make_tail(tmp_path, sink, opts)
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 100)
    await th.stop(tail, task)
    assert max(batches) <= 7 and min(batches[:-1]) >= 5  # 6-7 byte lines: 40 bytes cut at 6-7 records
    for s in th.numbered(50, 100):
        w.line(s)
    sink2 = th.ListSink()
    tail2 = th.make_tail(tmp_path, sink2, opts)
    task2 = asyncio.create_task(tail2.run())
    await until(lambda: len(sink2.records) == 50)
    await asyncio.sleep(0.1)
    await th.stop(tail2, task2)
    assert sink.lines() + sink2.lines() == th.numbered(150)


async def test_polling_cannot_count_what_it_did_not_see_but_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without inotify, files created and deleted between two looks leave no trace: a warning says
    lines may be lost; nothing is counted (there is nothing to count from)."""
    watcher = DirWatcher(use_inotify=False, fallback_interval=60.0, rescan_interval=60.0)
    w = th.DockerWriter(tmp_path, max_file=2)
    sink = th.ListSink()
    tail = th.make_tail(tmp_path, sink, watcher=watcher)
    task = asyncio.create_task(tail.run())
    try:
        for s in th.numbered(10):
            w.line(s)
        await until(lambda: len(sink.records) == 10)
        for r in range(3):
            for s in th.numbered(10, 10 + 10 * r):
                w.line(s)
            w.rotate()
        w.line("last")
        await asyncio.to_thread(tail.poll_rotation)  # the next look
        tail.wake.set()
        await until(lambda: sink.lines()[-1:] == ["last"])
        assert "rotated past max-file between two looks (polling); lines may be lost" in caplog.text
        assert (tail.runner.stats.files_missed, tail.runner.stats.bytes_missed) == (0, 0)
    finally:
        await th.stop(tail, task)
        await asyncio.to_thread(watcher.close)


async def test_lost_inotify_events_stop_the_counting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = th.DockerWriter(tmp_path)
    w.line("one")
    sink = th.ListSink()
    tail = th.make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    try:
        await until(lambda: len(sink.records) == 1 and tail._exact)
        await asyncio.to_thread(tail._on_notice, Notice(exact=False, lost=True))  # IN_Q_OVERFLOW
        assert not tail._exact
        assert "inotify events were lost" in caplog.text
    finally:
        await th.stop(tail, task)
