"""The early hold (agent/logs/early.py): a new container's log files held from its `create` event,
taken over by its tail once the tail exists, with every rotation in between read or counted, against
the real kernel's inotify and a writer that rotates like dockerd (test_log_tail's DockerWriter)."""

from __future__ import annotations

import asyncio
import gzip
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agent.logs.early import EarlyHold
from agent.logs.logfile import LogFile, walk_back
from agent.logs.sink import DropReason
from agent.logs.tail import FileTail
from agent.logs.watch import DirWatcher
from tests.support.toolbox import until
from tests.unit import test_log_tail as th


def live_path(root: Path) -> Path:
    d = root / "containers" / th.CID
    d.mkdir(parents=True, exist_ok=True)  # Docker makes the directory at `create`, the file at `start`
    return d / f"{th.CID}-json.log"


def held_newest(hold: EarlyHold, w: th.DockerWriter) -> bool:
    ino = w.path.stat().st_ino
    with hold.lock:
        return bool(hold.files) and hold.files[-1].inode == ino


async def run_tail(tail: FileTail) -> asyncio.Task[None]:
    task = asyncio.create_task(tail.run())
    await until(lambda: tail._ready, what="the tail took over")
    return task


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
async def test_files_rotated_away_before_the_tail_existed_are_read_from_the_hold(
    tmp_path: Path, compress: bool
) -> None:
    """max-file=3 and six rotations before the tail exists (its inspect is late): dockerd has only the
    last three files; the tail reads all of them from the hold, then follows more rotations, and
    every line arrives once, none counted missed. A tail without the hold finds only what dockerd
    still has."""
    watcher = DirWatcher()
    hold = EarlyHold(live_path(tmp_path), watcher)
    w = th.DockerWriter(tmp_path, max_file=3, compress=compress)
    n = 0
    try:
        await until(lambda: held_newest(hold, w), what="the first file held")
        for _ in range(6):
            for _ in range(40):
                w.line(f"line-{n}")
                n += 1
            w.rotate()
            await until(lambda: held_newest(hold, w), what="the new file held")
        assert len(list(w.dir.glob("*-json.log*"))) == 3

        late_sink = th.ListSink("late")
        late = th.make_tail(tmp_path, late_sink, watcher=watcher)  # the old way: no hold
        late_task = await run_tail(late)
        await until(lambda: len(late_sink.records) >= 80, what="what dockerd still has")
        await th.stop(late, late_task)
        assert late_sink.lines() == th.numbered(80, n - 80)  # .2 and .1; the live file is empty

        sink = th.ListSink()
        hold.users += 1
        tail = th.make_tail(tmp_path, sink, watcher=watcher, early=hold)
        hold.unpin()
        task = await run_tail(tail)
        assert not hold.closed or hold.users == 0
        for _ in range(4):  # the hand-over did not stop the following
            for _ in range(40):
                w.line(f"line-{n}")
                n += 1
            w.rotate()
            ino = w.path.stat().st_ino

            def tail_holds(i: int = ino) -> bool:
                return tail._newest is not None and tail._newest.inode == i

            await until(tail_holds, what="the tail holds the new file")
        w.line(f"line-{n}")
        n += 1
        await until(lambda: len(sink.records) >= n, what=f"{n} lines")
        await th.stop(tail, task)
        assert sink.lines() == th.numbered(n)
        st = tail.runner.stats
        assert (st.files_missed, st.bytes_missed, st.dropped.get(DropReason.ROTATED, 0)) == (0, 0, 0)
        assert hold.closed and hold.files == []
    finally:
        hold.close()
        w.close()
        await asyncio.to_thread(watcher.close)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
async def test_files_deleted_before_the_hold_could_open_them_are_counted_by_the_tail(
    tmp_path: Path, compress: bool
) -> None:
    """The watcher thread cannot look for a while (the hold's lock is held, as a starved thread would
    be): dockerd rotates 5 times with max-file=2, so 3 files are created and unlinked unseen. The tail
    that takes over reads the rest and counts those 3 with max-size each, exactly once."""
    # Rounds come every rescan while nothing happens: the test waits for two of them.
    watcher = DirWatcher(rescan_interval=0.2)
    hold = EarlyHold(live_path(tmp_path), watcher)
    w = th.DockerWriter(tmp_path, max_file=2, compress=compress)
    try:
        await until(lambda: held_newest(hold, w), what="the first file held")
        for s in th.numbered(20):
            w.line(s)
        with hold.lock:
            for r in range(5):
                w.rotate()
                for s in th.numbered(10, 20 + 10 * r):
                    w.line(s)
            rounds = watcher.rounds
            time.sleep(0.05)  # the events queue in the kernel meanwhile
        await until(lambda: watcher.rounds > rounds + 1, what="the watcher's next rounds")
        await until(lambda: held_newest(hold, w), what="the live file held")
        sink = th.ListSink()
        hold.users += 1
        tail = th.make_tail(tmp_path, sink, watcher=watcher, early=hold)
        tail.container = replace(th.container(), log_opts={"max-size": "20k"})
        hold.unpin()
        task = await run_tail(tail)
        w.line("last")
        await until(lambda: sink.lines()[-1:] == ["last"], what="the last line")
        # Lines 0-19 were in the first file (held), 20-29 .. 40-49 in the three files deleted unseen,
        # 50-59 in `.1` and 60-69 in the live file when the watcher looked again.
        assert sink.lines() == [*th.numbered(20), *th.numbered(20, 50), "last"]
        st = tail.runner.stats
        assert (st.files_missed, st.bytes_missed) == (3, 3 * 20_000)
        await th.stop(tail, task)
        assert (st.files_missed, st.bytes_missed) == (3, 3 * 20_000)  # not again after the hand-over
    finally:
        hold.close()
        w.close()
        await asyncio.to_thread(watcher.close)


def test_the_walk_back_crosses_the_name_a_rotation_in_progress_left_missing(tmp_path: Path) -> None:
    """Mid-rotation (`.1` renamed to `.2`, the live file not yet to `.1`) the chain has a hole at
    `.1`: the walk goes past it and finds `.2`. Before, it stopped there and `.2` was never read nor
    counted (1 run in ~80 of four unwaited rotations)."""
    live = live_path(tmp_path)
    for name, text in [(f"{live}.2", b"older\n"), (str(live), b"live\n")]:
        Path(name).write_bytes(text)
    newest = LogFile.open(f"{live}.2")  # a file held before, since deleted by Docker
    Path(f"{live}.2").unlink()
    Path(f"{live}.2").write_bytes(b"between\n")
    assert walked(LogFile.open(live), live, newest) == ([b"between\n"], False)


def test_the_walk_back_never_queues_the_live_file_it_started_from(tmp_path: Path) -> None:
    """Docker rotated the live file just opened to `.1` (and made a new one): what the walk met before
    it is newer than it and is left to the next look; it goes on to the held file."""
    live = live_path(tmp_path)
    Path(f"{live}.2").write_bytes(b"held\n")
    held = LogFile.open(f"{live}.2")
    Path(f"{live}.1").write_bytes(b"between\n")
    Path(live).write_bytes(b"was live\n")
    cur = LogFile.open(live)  # then Docker rotates: .2 -> .3, .1 -> .2, live -> .1, a new live
    for a, b in [(".2", ".3"), (".1", ".2"), ("", ".1")]:
        Path(f"{live}{a}").rename(f"{live}{b}")
    Path(live).write_bytes(b"new live\n")
    assert walked(cur, live, held) == ([b"between\n"], True)


def test_the_walk_back_queues_a_file_renamed_older_during_the_walk_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker rotates (and compresses) while the walk goes: the `.gz` it just opened as `.1.gz` is
    `.2.gz` at the next step, and the live file it started from comes back as a `.gz`. Each is met
    again, not queued again (25-50 duplicate lines, 1 run in ~100 of a compressed rotation test
    under load)."""
    live = live_path(tmp_path)
    gz(Path(f"{live}.2.gz"), b'{"log":"held"}\n')
    Path(f"{tmp_path}/held").write_bytes(b'{"log":"held"}\n')
    held = LogFile.open(f"{tmp_path}/held")  # the newest file held: its `.gz` is `.2.gz`
    gz(Path(f"{live}.1.gz"), b'{"log":"between"}\n')
    Path(live).write_bytes(b'{"log":"live"}\n')
    cur = LogFile.open(live)
    real_open = LogFile.open.__func__  # type: ignore[attr-defined]
    shifted = False

    def open_and_rotate(cls: type[LogFile], path: str | Path) -> LogFile:
        nonlocal shifted
        f: LogFile = real_open(cls, path)
        if str(path).endswith(".1.gz") and not shifted:  # Docker rotates once, mid-walk
            shifted = True
            for a, b in [(".2.gz", ".3.gz"), (".1.gz", ".2.gz")]:
                Path(f"{live}{a}").rename(f"{live}{b}")
            gz(Path(f"{live}.1.gz"), b'{"log":"live"}\n')  # the live file, rotated and compressed
        return f

    monkeypatch.setattr(LogFile, "open", classmethod(open_and_rotate))
    assert walked(cur, live, held) == ([b'{"log":"between"}\n'], True)


def walked(cur: LogFile, live: Path, newest: LogFile) -> tuple[list[bytes], bool]:
    """walk_back from `cur` (the live file as opened) to `newest`: the files it queued, read, and
    whether it reached `newest`. Every file is closed after."""
    try:
        between, reached = walk_back(cur, live, newest, {})
        got = [f.read(100) for f in between]
        for f in between:
            f.close()
        return got, reached
    finally:
        cur.close()
        newest.close()


def gz(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data))
