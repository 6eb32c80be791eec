"""The Engine API source against a fake engine: stdcopy frames, inclusive `since`, partial chunks,
a driver the engine cannot read."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from agent.docker.client import DockerClient
from agent.docker.models import EngineError
from agent.docker.stdcopy import since_param
from agent.logs.api import ApiTail
from agent.logs.checkpoint import ApiPos, CheckpointStore
from agent.logs.delivery import SinkRunner, TailOptions
from agent.logs.record import LogRecord
from agent.logs.sinkspec import SinkSpec
from exporters.sinks.base import Outcome
from tests.support.toolbox import container, until

CID = "e1" * 32
T0 = 1_795_000_000_000_000_000
C = replace(container(1, "api"), id=CID, log_driver="local")


def ts(ns: int) -> bytes:
    sec, frac = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode() + b".%09dZ" % frac


def frame(stream: int, ns: int, msg: bytes) -> bytes:
    payload = ts(ns) + b" " + msg
    return struct.pack(">BxxxI", stream, len(payload)) + payload


class FakeEngine(DockerClient):
    """Serves /containers/{id}/logs from a list of (stream, time_ns, message), honouring `since`:
    the client's own `logs()` builds the request and decodes what this sends."""

    def __init__(
        self,
        entries: list[tuple[int, int, bytes]],
        error: EngineError | None = None,
        follow_drops: int = 0,
    ) -> None:
        super().__init__("unix:///fake-engine.sock")
        self.entries = entries
        self.error = error
        self.requests: list[dict[str, str]] = []
        # dockerd 20.10: a follow stream can end without the container's last entries.
        self.follow_drops = follow_drops
        self.follow_ends = asyncio.Event()
        self.follow_ends.set()

    async def stream(self, path: str, params: Mapping[str, str] | None = None) -> AsyncGenerator[bytes, None]:
        assert params is not None
        self.requests.append(dict(params))
        if self.error is not None:
            raise self.error
        since = params.get("since")
        since_ns = 0
        if since:
            s, _, f = since.partition(".")
            since_ns = int(s) * 10**9 + int(f.ljust(9, "0"))
        entries = [e for e in self.entries if e[1] >= since_ns]
        if params.get("follow") == "1" and self.follow_drops:
            entries = entries[: -self.follow_drops]
        wire = b"".join(frame(s, t, m) for s, t, m in entries)
        for i in range(0, len(wire), 7):  # chunk boundaries anywhere
            yield wire[i : i + 7]
        if params.get("follow") == "1":
            await self.follow_ends.wait()


class Sink:
    name = "s"

    def __init__(self) -> None:
        self.records: list[LogRecord] = []

    async def open(self) -> None:
        pass

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        self.records.extend(batch)
        return Outcome.OK

    async def close(self) -> None:
        pass


def make_tail(tmp: Path, engine: FakeEngine, sink: Sink, unreadable: list[str] | None = None) -> ApiTail:
    return ApiTail(
        C,
        SinkRunner(SinkSpec("s", "x"), sink),
        CheckpointStore(tmp),
        TailOptions(),
        engine,
        lambda c, why: (unreadable if unreadable is not None else []).append(why),
    )


async def run_once(tmp: Path, engine: FakeEngine, unreadable: list[str] | None = None) -> Sink:
    sink = Sink()
    tail = make_tail(tmp, engine, sink, unreadable)
    tail.finishing = True  # the container has stopped: read to the end of the stream, then end
    await asyncio.wait_for(tail.run(), 10)
    return sink


async def test_inclusive_since_drops_boundary_duplicates(tmp_path: Path) -> None:
    entries = [(1, T0, b"a\n"), (2, T0 + 5, b"b\n"), (1, T0 + 5, b"c\n")]
    eng = FakeEngine(entries)
    first = await run_once(tmp_path, eng)
    assert [r.line for r in first.records] == [b"a", b"b", b"c"]
    assert [r.stream for r in first.records] == ["stdout", "stderr", "stdout"]
    assert CheckpointStore(tmp_path).load("s", CID) == ApiPos(T0 + 5, 2)
    # More lines, two of them with the same nanosecond as the last delivered ones.
    eng.entries += [(1, T0 + 5, b"d\n"), (1, T0 + 9, b"e\n")]
    second = await run_once(tmp_path, eng)
    assert eng.requests[-1]["since"] == since_param(T0 + 5)
    assert [r.line for r in second.records] == [b"d", b"e"]


async def test_partial_chunks_are_joined(tmp_path: Path) -> None:
    k = b"k" * 16384
    eng = FakeEngine([(1, T0, k), (2, T0 + 1, b"err\n"), (1, T0, k), (1, T0, b"end\n")])
    sink = await run_once(tmp_path, eng)
    assert [(r.stream, r.line) for r in sink.records] == [("stderr", b"err"), ("stdout", k + k + b"end")]


async def test_unreadable_driver_is_reported(tmp_path: Path) -> None:
    why: list[str] = []
    eng = FakeEngine([], EngineError("configured logging driver does not support reading", 501))
    sink = await run_once(tmp_path, eng, why)
    assert sink.records == [] and why and "does not support reading" in why[0]


@pytest.mark.parametrize("stop_seen", ["before-the-stream-ends", "after-the-stream-ended"])
async def test_a_final_read_without_follow_gets_what_the_follow_stream_missed(
    tmp_path: Path, stop_seen: str
) -> None:
    """The follow stream ends without the last entry (an unterminated line); whether the tail learns
    that the container stopped before or after that end, it reads once more without follow, from
    the last entry it read (inclusive, deduplicated), and only then ends."""
    entries = [(1, T0, b"a\n"), (1, T0 + 1, b"b\n"), (1, T0 + 2, b"no-newline-at-end")]
    eng = FakeEngine(entries, follow_drops=1)
    sink = Sink()
    tail = make_tail(tmp_path, eng, sink)
    if stop_seen == "before-the-stream-ends":
        eng.follow_ends.clear()
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 2)
    tail.finish()  # the inventory saw the container stop
    eng.follow_ends.set()
    await asyncio.wait_for(task, 10)
    assert [r.line for r in sink.records] == [b"a", b"b", b"no-newline-at-end"]
    last = sink.records[-1]
    assert last.partial is not None and not last.partial.last  # as Docker's own drivers mark it
    assert [r.get("follow") for r in eng.requests] == ["1", "0"]
    assert eng.requests[-1]["since"] == since_param(T0 + 1)
    assert CheckpointStore(tmp_path).load("s", CID) == ApiPos(T0 + 2, 1)
    again = await run_once(tmp_path, FakeEngine(entries))  # an agent restart: nothing is owed
    assert again.records == []


@pytest.mark.parametrize("stop_seen", ["before-the-stream-ends", "after-the-stream-ended"])
async def test_an_unterminated_last_line_the_follow_stream_brought_is_shipped_at_the_end(
    tmp_path: Path, stop_seen: str
) -> None:
    """The follow stream does bring the unterminated last entry, then ends: the joiner holds it (its
    continuation could follow) until the final read without follow finds nothing after it; then it
    goes out, once, and the checkpoint covers it."""
    entries = [(1, T0, b"a\n"), (1, T0 + 1, b"b\n"), (1, T0 + 2, b"no-newline-at-end")]
    eng = FakeEngine(entries)
    sink = Sink()
    tail = make_tail(tmp_path, eng, sink)
    if stop_seen == "before-the-stream-ends":
        eng.follow_ends.clear()
    task = asyncio.create_task(tail.run())
    await until(lambda: len(sink.records) == 2 and tail.joiner.pending)
    tail.finish()
    eng.follow_ends.set()
    await asyncio.wait_for(task, 10)
    assert [r.line for r in sink.records] == [b"a", b"b", b"no-newline-at-end"]
    assert [r.get("follow") for r in eng.requests] == ["1", "0"]
    assert eng.requests[-1]["since"] == since_param(T0 + 2)  # from the held entry, deduplicated
    assert CheckpointStore(tmp_path).load("s", CID) == ApiPos(T0 + 2, 1)
    again = await run_once(tmp_path, FakeEngine(entries))
    assert again.records == []


async def test_checkpoint_exists_from_first_sight(tmp_path: Path) -> None:
    """Before anything is delivered the container is recorded as owed, from its start."""
    eng = FakeEngine([(1, T0, b"a\n")])
    eng.follow_ends.clear()

    class Down(Sink):
        async def send(self, batch: Sequence[LogRecord]) -> Outcome:
            return Outcome.RETRY

    tail = make_tail(tmp_path, eng, Down())
    task = asyncio.create_task(tail.run())
    await until(lambda: CheckpointStore(tmp_path).load("s", CID) is not None)
    assert CheckpointStore(tmp_path).load("s", CID) == ApiPos(0, 0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_idle_ends_when_cancelled_as_it_is_woken(tmp_path: Path) -> None:
    """A tail is cancelled on stop; if new lines wake it in the same instant, asyncio.wait_for
    (Python 3.11) returned the event's result and swallowed the cancellation: the tail went on."""
    tail = make_tail(tmp_path, FakeEngine([]), Sink())

    async def loop() -> None:
        while True:
            await tail.idle(30)

    task = asyncio.create_task(loop())
    for _ in range(3):  # let it reach the wait
        await asyncio.sleep(0)
    tail.wake.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()
