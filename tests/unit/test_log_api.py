"""The Engine API source against a fake engine: stdcopy frames, inclusive `since`, partial chunks,
a driver the engine cannot read."""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

from agent.docker.models import Container, EngineError
from agent.logs.api import ApiTail
from agent.logs.checkpoint import ApiPos, CheckpointStore
from agent.logs.delivery import SinkRunner, TailOptions
from agent.logs.filters import SinkSpec
from agent.logs.stdcopy import since_param
from exporters.sinks.base import Outcome

CID = "e1" * 32
T0 = 1_795_000_000_000_000_000
C = Container(id=CID, name="api", image="i", image_id="", pid=1, network_mode="", log_driver="local")


def ts(ns: int) -> bytes:
    sec, frac = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode() + b".%09dZ" % frac


def frame(stream: int, ns: int, msg: bytes) -> bytes:
    payload = ts(ns) + b" " + msg
    return struct.pack(">BxxxI", stream, len(payload)) + payload


class FakeEngine:
    """Serves /containers/{id}/logs from a list of (stream, time_ns, message), honouring `since`."""

    def __init__(self, entries: list[tuple[int, int, bytes]], error: EngineError | None = None) -> None:
        self.entries = entries
        self.error = error
        self.requests: list[dict[str, str]] = []

    async def stream(self, path: str, params: dict[str, str]):
        self.requests.append(dict(params))
        if self.error is not None:
            raise self.error
        since = params.get("since")
        since_ns = 0
        if since:
            s, _, f = since.partition(".")
            since_ns = int(s) * 10**9 + int(f.ljust(9, "0"))
        wire = b"".join(frame(s, t, m) for s, t, m in self.entries if t >= since_ns)
        for i in range(0, len(wire), 7):  # chunk boundaries anywhere
            yield wire[i : i + 7]


class Sink:
    name = "s"

    def __init__(self) -> None:
        self.records = []

    async def open(self) -> None:
        pass

    async def send(self, batch):
        self.records.extend(batch)
        return Outcome.OK

    async def close(self) -> None:
        pass


async def run_once(tmp: Path, engine: FakeEngine, unreadable: list | None = None) -> Sink:
    sink = Sink()
    tail = ApiTail(
        C,
        SinkRunner(SinkSpec("s", "x"), sink),
        CheckpointStore(tmp),
        TailOptions(),
        engine,  # type: ignore[arg-type]
        lambda c, why: (unreadable if unreadable is not None else []).append(why),
    )
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
