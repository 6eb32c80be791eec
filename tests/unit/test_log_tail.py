"""The json-file source against a fake Docker root: Docker's rotation (rename chain, gzip), a sink
that is down, a restart from the checkpoint, corrupt lines, a container that goes away.

The writer below does what moby's `loggerutils/logfile.go` does, so these run without dockerd; the
integration tests repeat the important cases against a real one.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.docker.models import Container
from agent.hostfs import HostFS
from agent.logs.checkpoint import CheckpointStore, FilePos
from agent.logs.delivery import SinkRunner, TailOptions
from agent.logs.record import LogRecord
from agent.logs.sink import DropReason
from agent.logs.sinkspec import SinkSpec
from agent.logs.tail import FileTail
from exporters.sinks.base import Outcome
from tests.support import toolbox
from tests.support.toolbox import until

CID = "c0" * 32
FAST = TailOptions(poll_interval=0.02, batch_records=50)


class ListSink:
    """Keeps what it is sent; `down` makes it answer RETRY, `reject` FAIL."""

    def __init__(self, name: str = "t") -> None:
        self.name = name
        self.records: list[LogRecord] = []
        self.batches = 0
        self.down = False
        self.reject = False

    async def open(self) -> None:
        pass

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        if self.down:
            return Outcome.RETRY
        if self.reject:
            return Outcome.FAIL
        self.records.extend(batch)
        self.batches += 1
        return Outcome.OK

    async def close(self) -> None:
        pass

    def lines(self) -> list[str]:
        return [r.line.decode("utf-8", "replace") for r in self.records]


class DockerWriter:
    """Writes json-file lines and rotates like dockerd (rename chain, optional gzip of `.1`)."""

    def __init__(self, root: Path, max_file: int = 5, compress: bool = False) -> None:
        self.dir = root / "containers" / CID
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{CID}-json.log"
        self.max_file = max_file
        self.compress = compress
        self.fh = open(self.path, "ab")  # noqa: SIM115
        self.t = 1_795_000_000 * 10**9

    def line(self, text: str, stream: str = "stdout", nl: bool = True) -> None:
        self.t += 1000
        sec, ns = divmod(self.t, 10**9)
        frac = f".{ns:09d}".rstrip("0") if ns else ""  # Go's RFC3339Nano, as dockerd writes it
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + frac + "Z"
        obj = {"log": text + ("\n" if nl else ""), "stream": stream, "time": ts}
        self.fh.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        self.fh.flush()

    def raw(self, data: bytes) -> None:
        self.fh.write(data)
        self.fh.flush()

    def rotate(self) -> None:
        self.rotate_away()
        base = str(self.path)
        self.fh = open(self.path, "wb")  # noqa: SIM115
        if self.compress:
            src = Path(f"{base}.1")
            with open(src, "rb") as fin, gzip.open(f"{base}.1.gz", "wb") as fout:
                fout.write(fin.read())
            src.unlink()

    def rotate_away(self) -> None:
        """A rotation's first half: the chain shifted and the live file renamed `.1`, no new one yet."""
        self.fh.close()
        base = str(self.path)
        for suffix in ("", ".gz"):
            last = Path(f"{base}.{self.max_file - 1}{suffix}")
            if last.exists():
                last.unlink()
        for i in range(self.max_file - 2, 0, -1):
            for suffix in ("", ".gz"):
                src = Path(f"{base}.{i}{suffix}")
                if src.exists():
                    src.rename(f"{base}.{i + 1}{suffix}")
        os.rename(base, f"{base}.1")

    def close(self) -> None:
        self.fh.close()


def container() -> Container:
    return replace(toolbox.container(1, "app"), id=CID, log_driver="json-file", log_opts={})


def make_tail(root: Path, sink: ListSink, opts: TailOptions = FAST, **kw: Any) -> FileTail:
    runner = SinkRunner(SinkSpec(sink.name, "test"), sink, backoff_base=0.01, backoff_cap=0.05)
    path = HostFS(docker_root=root).container_dir(CID) / f"{CID}-json.log"
    return FileTail(container(), runner, CheckpointStore(root / "state"), opts, path, **kw)


async def stop(tail: FileTail, task: asyncio.Task[None]) -> None:
    tail.stop()
    await asyncio.wait_for(task, 10)


def numbered(n: int, start: int = 0) -> list[str]:
    return [f"line-{i}" for i in range(start, start + n)]


async def test_follows_growth_exactly_once(tmp_path: Path) -> None:
    w = DockerWriter(tmp_path)
    for s in numbered(120):
        w.line(s)
    sink = ListSink()
    tail = make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 120, what="first lines")
    for s in numbered(80, 120):
        w.line(s)
    await until(lambda: len(sink.records) == 200, what="appended lines")
    await stop(tail, task)
    assert sink.lines() == numbered(200)
    assert tail.runner.stats.sent == 200
    pos = CheckpointStore(tmp_path / "state").load("t", CID)
    assert isinstance(pos, FilePos) and pos.offset == w.path.stat().st_size


@pytest.mark.parametrize("compress", [False, True])
async def test_rotation_while_reading_loses_and_repeats_nothing(tmp_path: Path, compress: bool) -> None:
    w = DockerWriter(tmp_path, max_file=4, compress=compress)
    sink = ListSink()
    tail = make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    await until(lambda: tail.files, what="opened")
    n = 0
    for r in range(6):
        for _ in range(40):
            w.line(f"line-{n}")
            n += 1
        # Rotate at various points: the reader behind by 0-30 lines in the old file.
        behind = (r * 7) % 31

        def progressed(k: int = n - behind - 10) -> bool:
            return len(sink.records) >= k

        await until(progressed, what="reader progress")
        w.rotate()
    for _ in range(10):
        w.line(f"line-{n}")
        n += 1
    await until(lambda: len(sink.records) >= n, what=f"{n} lines")
    # A marker behind everything, instead of a grace period for duplicates to trickle in: once it
    # is delivered, the tail has read past every earlier line (rotated files first).
    w.line(f"line-{n}")
    n += 1
    await until(lambda: sink.lines()[-1:] == [f"line-{n - 1}"], what="the marker line")
    await stop(tail, task)
    assert sink.lines() == numbered(n)


async def test_several_rotations_between_polls_and_gzip(tmp_path: Path) -> None:
    """The reader is parked (sink down) while Docker rotates three times and gzips; all arrive."""
    w = DockerWriter(tmp_path, max_file=5, compress=True)
    sink = ListSink()
    tail = make_tail(tmp_path, sink, TailOptions(poll_interval=5.0, batch_records=1000))
    for s in numbered(10):
        w.line(s)
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 10)
    n = 10
    for _ in range(3):
        for _ in range(25):
            w.line(f"line-{n}")
            n += 1
        w.rotate()
    w.line(f"line-{n}")
    n += 1
    tail.poll_rotation()  # one look finds the new live file and the three rotations before it
    tail.wake.set()
    # The claim is "all arrive", not how fast: the 5 s poll is the reader's fallback for a missed
    # notice, and under load (2 cores, the suite beside it) two of them exceeded the default 10 s
    # deadline (1 run in ~20). Six polls' worth.
    await until(lambda: len(sink.records) == n, timeout=30.0, what="all lines")
    await stop(tail, task)
    assert sink.lines() == numbered(n)
    # Docker unlinked each `.1` once its `.1.gz` held the lines: a compression, not a loss.
    assert (tail.runner.stats.files_missed, tail.runner.stats.bytes_missed) == (0, 0)


async def test_sink_down_then_up_loses_nothing(tmp_path: Path) -> None:
    w = DockerWriter(tmp_path, max_file=3)
    sink = ListSink()
    sink.down = True
    tail = make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    for s in numbered(100):
        w.line(s)
    await until(lambda: tail.runner.stats.retries >= 5, what="retries")
    w.rotate()  # rotated while the sink is down: the held descriptor still reads it
    for s in numbered(100, 100):
        w.line(s)
    await until(lambda: tail.backlog_bytes > 0, what="backlog")
    sink.down = False
    await until(lambda: len(sink.records) == 200, what="delivery after recovery")
    await stop(tail, task)
    assert sink.lines() == numbered(200)


async def test_restart_resumes_from_checkpoint_even_after_gzip(tmp_path: Path) -> None:
    w = DockerWriter(tmp_path, max_file=3, compress=True)
    for s in numbered(70):
        w.line(s)
    sink = ListSink()
    tail = make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 70)
    await stop(tail, task)
    # While we were gone: more lines, then the file we were in becomes .1.gz.
    for s in numbered(30, 70):
        w.line(s)
    w.rotate()
    for s in numbered(20, 100):
        w.line(s)
    sink2 = ListSink()
    tail2 = make_tail(tmp_path, sink2)
    task2 = asyncio.create_task(tail2.run())
    await until(lambda: len(sink2.records) == 50, what="resumed lines")
    w.line("line-120")  # a marker behind everything (see above): no grace period for duplicates
    await until(lambda: sink2.lines()[-1:] == ["line-120"], what="the marker line")
    await stop(tail2, task2)
    assert sink2.lines() == numbered(51, 70)


async def test_restart_when_checkpointed_file_is_gone_resumes_by_time(tmp_path: Path) -> None:
    w = DockerWriter(tmp_path, max_file=2)
    for s in numbered(10):
        w.line(s)
    sink = ListSink()
    tail = make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 10)
    await stop(tail, task)
    for s in numbered(5, 10):
        w.line(s)
    w.rotate()  # our file is now .1
    for s in numbered(5, 15):
        w.line(s)
    w.rotate()  # ... and now deleted; .1 holds 15..19
    for s in numbered(5, 20):
        w.line(s)
    sink2 = ListSink()
    tail2 = make_tail(tmp_path, sink2)
    task2 = asyncio.create_task(tail2.run())
    await until(lambda: len(sink2.records) == 10)
    await stop(tail2, task2)
    assert sink2.lines() == numbered(10, 15)


async def test_corrupt_lines_counted_neighbours_delivered(tmp_path: Path) -> None:
    w = DockerWriter(tmp_path)
    w.line("before")
    w.raw(b"garbage that is not json\n")
    w.raw(b'{"log":"\xff\xfe bad utf8\\n","stream":"stdout","time":"2026-11-23T08:19:30.1Z"}\n')
    w.raw(b"\x00\x01\x02\x89PNG binary\n")
    w.raw(b'{"log":"x\\n","stream":"stdout","time":"not a time"}\n')
    w.line("after")
    w.line("ctl \x01 and \ufffd replacement are fine")
    sink = ListSink()
    tail = make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 3)
    await stop(tail, task)
    assert sink.lines() == ["before", "after", "ctl \x01 and \ufffd replacement are fine"]
    assert tail.runner.stats.dropped == {"corrupt": 4}


async def test_long_line_rejoined_and_pass_through(tmp_path: Path) -> None:
    w = DockerWriter(tmp_path)
    big = "z" * 100 * 1024
    for i in range(0, len(big), 16384):
        chunk = big[i : i + 16384]
        w.line(chunk, nl=i + 16384 >= len(big))
    w.line("next")
    sink = ListSink()
    tail = make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 2)
    await stop(tail, task)
    assert sink.records[0].line == big.encode() and sink.records[0].partial is None
    assert sink.lines()[1] == "next"

    sink2 = ListSink("p")
    tail2 = make_tail(tmp_path, sink2, TailOptions(poll_interval=0.02, join_partial=False))
    task2 = asyncio.create_task(tail2.run())
    await until(lambda: len(sink2.records) == 8)
    await stop(tail2, task2)
    parts = [r.partial for r in sink2.records[:7]]
    assert [p.ordinal for p in parts if p] == list(range(1, 8)) and parts[-1] and parts[-1].last
    assert b"".join(r.line for r in sink2.records[:7]) == big.encode()


async def test_finish_drains_then_ends(tmp_path: Path) -> None:
    w = DockerWriter(tmp_path)
    sink = ListSink()
    tail = make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    for s in numbered(30):
        w.line(s)
    tail.finish()  # the container died; its last lines are in the file
    await asyncio.wait_for(task, 10)
    assert sink.lines() == numbered(30)


async def test_rejected_batch_is_counted_and_skipped(tmp_path: Path) -> None:
    w = DockerWriter(tmp_path)
    for s in numbered(5):
        w.line(s)
    sink = ListSink()
    sink.reject = True
    tail = make_tail(tmp_path, sink)
    task = asyncio.create_task(tail.run())
    await until(lambda: tail.runner.stats.dropped.get(DropReason.REJECTED) == 5)
    sink.reject = False
    w.line("later")
    await until(lambda: sink.lines() == ["later"])
    await stop(tail, task)


async def test_start_at_end_for_preexisting_containers(tmp_path: Path) -> None:
    w = DockerWriter(tmp_path)
    for s in numbered(5):
        w.line(s)
    sink = ListSink()
    tail = make_tail(tmp_path, sink, TailOptions(poll_interval=0.02, start_at_end=True), preexisting=True)
    task = asyncio.create_task(tail.run())
    await until(lambda: tail.files, what="opened")
    w.line("new")
    await until(lambda: len(sink.records) == 1)
    await stop(tail, task)
    assert sink.lines() == ["new"]


class HoldingSink(ListSink):
    """Records, at each send, how many tails of the runner hold records (their batch) at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self.tails: list[FileTail] = []
        self.holding: list[int] = []
        self.order: list[str] = []

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        self.holding.append(sum(1 for t in self.tails if t.batch))
        self.order.append(batch[0].container.id)
        await asyncio.sleep(0)  # let the other tails run: they read only with a slot
        return await super().send(batch)


class MeasuringSink(ListSink):
    """Records the Python heap (tracemalloc) at each send: what the tails hold at that moment. Keeps
    no records, only their count, so that the heap is the tails'."""

    def __init__(self) -> None:
        super().__init__()
        self.heap: list[int] = []
        self.count = 0

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        self.heap.append(tracemalloc.get_traced_memory()[0])
        await asyncio.sleep(0)  # let the other tails run: they read only with a slot
        self.count += len(batch)
        return Outcome.OK


async def test_tails_waiting_for_a_turn_hold_no_read_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixty containers with a backlog of several read chunks each: the heap at every send stays
    within what the FILL_SLOTS tails reading hold (~11 chunks), not one chunk per tail waiting for a
    turn (~75). Before, each waiting tail
    kept its last chunk (bench/memory_parts.py: 37 of the 51 MiB peak shipping 50 containers to 3
    sinks were such chunks). Read chunks of 256 KiB here, so that they, not the tails' own objects,
    are what the heap shows."""
    import agent.logs.tail as tail_mod

    CHUNK = 256 * 1024
    monkeypatch.setattr(tail_mod, "CHUNK", CHUNK)
    sink = MeasuringSink()
    runner = SinkRunner(SinkSpec(sink.name, "test"), sink, backoff_base=0.01, backoff_cap=0.05)
    store = CheckpointStore(tmp_path / "state")
    ids = [f"{i:02d}" * 32 for i in range(60)]
    line = b'{"log":"' + b"x" * 1000 + b'\\n","stream":"stdout","time":"2026-11-30T05:00:00.000000001Z"}\n'
    tails = []
    for cid in ids:
        d = tmp_path / "containers" / cid
        d.mkdir(parents=True)
        (d / f"{cid}-json.log").write_bytes(line * 600)  # > 2 read chunks
        c = Container(id=cid, name=cid[:4], image="busybox", image_id="", pid=1, network_mode="default")
        path = HostFS(docker_root=tmp_path).container_dir(cid) / f"{cid}-json.log"
        tails.append(FileTail(c, runner, store, FAST, path))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.create_task(t.run()) for t in tails]
        await until(lambda: sink.count == 60 * 600, what="every line")
        for t, task in zip(tails, tasks, strict=True):
            await stop(t, task)
    finally:
        tracemalloc.stop()
    held = max(sink.heap) - base
    assert held < 20 * CHUNK, f"{held / CHUNK:.1f} chunks held at a send"


async def test_tails_of_a_sink_hold_batches_in_turns_not_all_at_once(tmp_path: Path) -> None:
    """Ten containers with a backlog of several read chunks each: at most FILL_SLOTS tails hold
    records at once (memory bounded per sink, not by how many containers write), they take turns
    chunk by chunk, none is lost."""
    from agent.logs.delivery import FILL_SLOTS

    sink = HoldingSink()
    runner = SinkRunner(SinkSpec(sink.name, "test"), sink, backoff_base=0.01, backoff_cap=0.05)
    store = CheckpointStore(tmp_path / "state")
    ids = [f"{i:02d}" * 32 for i in range(10)]
    for cid in ids:
        d = tmp_path / "containers" / cid
        d.mkdir(parents=True)
        line = (
            b'{"log":"' + b"x" * 1000 + b'\\n","stream":"stdout","time":"2026-11-30T05:00:00.000000001Z"}\n'
        )
        (d / f"{cid}-json.log").write_bytes(line * 600)  # > 2 read chunks (tail.CHUNK)
        c = Container(id=cid, name=cid[:4], image="busybox", image_id="", pid=1, network_mode="default")
        path = HostFS(docker_root=tmp_path).container_dir(cid) / f"{cid}-json.log"
        sink.tails.append(FileTail(c, runner, store, FAST, path))
    tasks = [asyncio.create_task(t.run()) for t in sink.tails]
    await until(lambda: len(sink.records) == 10 * 600, what="every line")
    for t, task in zip(sink.tails, tasks, strict=True):
        await stop(t, task)
    assert len(sink.records) == 6000 and runner.stats.sent == 6000
    assert max(sink.holding) <= FILL_SLOTS < len(ids)
    # Turns: every container had a batch out before the first one was done.
    first_done = min(max(i for i, c in enumerate(sink.order) if c == cid) for cid in ids)
    assert set(sink.order[:first_done]) == set(ids)
