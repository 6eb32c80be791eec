"""LogPipeline wiring without an engine: which containers get tails, opt-out, unreadable reasons,
a failing tail restarted from its checkpoint, and stop()."""

from __future__ import annotations

import asyncio
import re
import struct
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from agent.docker.client import DockerClient
from agent.docker.models import Container, NotFound
from agent.hostfs import HostFS
from agent.logs.checkpoint import CheckpointStore, FilePos
from agent.logs.delivery import SinkRunner, TailOptions
from agent.logs.logfile import LogFile
from agent.logs.pipeline import LogPipeline
from agent.logs.record import LogRecord
from agent.logs.sinkspec import Match, SinkSpec
from agent.logs.tail import FileTail
from exporters.sinks.base import Outcome
from tests.support.toolbox import container, until


class Sink:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[bytes] = []

    async def open(self) -> None: ...

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        self.lines += [r.line for r in batch]
        return Outcome.OK

    async def close(self) -> None: ...


def ctr(
    cid: str,
    name: str,
    driver: str = "json-file",
    tty: bool = False,
    pid: int = 1,
    created: str = "",
    **labels: str,
) -> Container:
    return replace(container(1, name, **labels), id=cid, pid=pid, log_driver=driver, tty=tty, created=created)


def docker_file(root: Path, cid: str, lines: int) -> None:
    d = root / "containers" / cid
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{cid}-json.log", "ab") as fh:
        for i in range(lines):
            fh.write(
                b'{"log":"line-%d\\n","stream":"stdout","time":"2026-11-23T08:00:00.%09dZ"}\n' % (i, i + 1)
            )


async def test_tails_filters_opt_out_unreadable_and_stop(tmp_path: Path) -> None:
    web, all_ = Sink("web"), Sink("all")
    runners = [
        SinkRunner(SinkSpec("web", "x", include=Match(name=re.compile("^web"))), web),
        SinkRunner(SinkSpec("all", "x"), all_),
    ]
    p = LogPipeline(
        runners, HostFS(docker_root=tmp_path), tmp_path / "state", None, TailOptions(poll_interval=0.02)
    )
    a, b, off = "a" * 64, "b" * 64, "c" * 64
    for cid in (a, b, off):
        docker_file(tmp_path, cid, 3)
    p.on_container("added", ctr(a, "web-1"))
    p.on_container("added", ctr(b, "db"))
    p.on_container("added", replace(ctr(off, "web-2"), labels={"dockwatch.logs": "false"}))
    p.on_container("added", ctr("d" * 64, "web-3", driver="none"))
    p.on_container("added", ctr("e" * 64, "web-4", driver="local", tty=True))
    p.on_container("added", ctr("f" * 64, "web-5", driver="syslog"))  # no engine client here
    assert sorted(p.tails) == [(a, "all"), (a, "web"), (b, "all")]
    tail_a = p.tails[(a, "all")]
    assert isinstance(tail_a, FileTail)
    assert tail_a.path == tmp_path / "containers" / a / f"{a}-json.log"
    assert getattr(p.tails[(a, "web")], "path", None) is tail_a.path  # one Path per container
    assert p.unreadable == {"d" * 64: "driver_none", "e" * 64: "tty", "f" * 64: "driver_syslog"}
    await until(lambda: len(web.lines) == 3 and len(all_.lines) == 6)
    p.on_container("removed", ctr("d" * 64, "web-3", driver="none"))
    assert "d" * 64 not in p.unreadable
    p.on_container("removed", ctr(b, "db"))  # finishes: reads to the end, then the tail ends
    await until(lambda: (b, "all") not in p.tails)
    await p.stop(timeout=5)
    assert p.tails == {} or all(t.stopping for t in p.tails.values())


async def test_a_failing_tail_restarts_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = Sink("s")
    p = LogPipeline(
        [SinkRunner(SinkSpec("s", "x"), sink)],
        HostFS(docker_root=tmp_path),
        tmp_path / "state",
        None,
        TailOptions(poll_interval=0.02),
    )
    cid = "9" * 64
    docker_file(tmp_path, cid, 5)
    real_consume = FileTail._consume
    calls = {"n": 0}

    async def flaky(self: FileTail, f: LogFile, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the first tail")
        await real_consume(self, f, data)

    monkeypatch.setattr(FileTail, "_consume", flaky)
    p.on_container("added", ctr(cid, "x"))
    await until(lambda: len(sink.lines) == 5)
    assert sink.lines == [b"line-%d" % i for i in range(5)]
    await p.stop(timeout=5)


class Down(Sink):
    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        return Outcome.RETRY


async def test_checkpoint_exists_from_first_sight(tmp_path: Path) -> None:
    """A json-file tail records its start (offset 0 of the oldest file) before anything is delivered."""
    runner = SinkRunner(SinkSpec("s", "x"), Down("s"), backoff_base=0.01, backoff_cap=0.01)
    p = LogPipeline(
        [runner], HostFS(docker_root=tmp_path), tmp_path / "state", None, TailOptions(poll_interval=0.02)
    )
    cid = "7" * 64
    docker_file(tmp_path, cid, 3)
    p.on_container("added", ctr(cid, "x"))
    store = CheckpointStore(tmp_path / "state")
    await until(lambda: store.load("s", cid) is not None)
    pos = store.load("s", cid)
    live = tmp_path / "containers" / cid / f"{cid}-json.log"
    assert isinstance(pos, FilePos) and (pos.inode, pos.offset) == (live.stat().st_ino, 0)
    await until(lambda: runner.stats.retries > 0)
    await p.stop(timeout=0.1)


def iso(ns: int) -> str:
    sec, frac = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def test_preexisting_means_created_before_the_sinks_first_start(tmp_path: Path) -> None:
    runner = SinkRunner(SinkSpec("s", "x"), Sink("s"))
    p = LogPipeline([runner], HostFS(docker_root=tmp_path), tmp_path / "state", None, TailOptions())
    first = p.first_start["s"]
    assert p.preexisting(ctr("a" * 64, "a", created=iso(first - 1)), runner)
    assert not p.preexisting(ctr("a" * 64, "a", created=iso(first)), runner)
    assert not p.preexisting(ctr("a" * 64, "a", created=""), runner)  # unknown: read it all
    again = LogPipeline([runner], HostFS(docker_root=tmp_path), tmp_path / "state", None, TailOptions())
    assert again.first_start == {"s": first}  # a restart is not a first start


class FakeClient:
    """container_states / inspect over a fixed set of containers; counts the inspects."""

    def __init__(self, containers: list[Container]) -> None:
        self.containers = {c.id: c for c in containers}
        self.inspected: list[str] = []

    async def container_states(self) -> dict[str, str]:
        return {cid: "running" if c.pid else "exited" for cid, c in self.containers.items()}

    async def inspect(self, cid: str) -> Container:
        self.inspected.append(cid)
        if cid not in self.containers:
            raise NotFound(cid, 404)
        return self.containers[cid]


async def test_resume_stopped_finishes_what_is_owed(tmp_path: Path) -> None:
    sink = Sink("s")
    runner = SinkRunner(SinkSpec("s", "x"), sink)
    state = tmp_path / "state"
    store = CheckpointStore(state)
    first = store.first_start("s", 2_000_000_000_000_000_000)
    new, done, old, running, gone = (c * 64 for c in "12345")
    for cid in (new, done, old, running):
        docker_file(tmp_path, cid, 3)
    live = tmp_path / "containers" / done / f"{done}-json.log"
    store.save("s", done, FilePos(live.stat().st_ino, "", live.stat().st_size))  # read to its end
    store.save("s", gone, FilePos(1, "", 0))
    client = FakeClient(
        [
            ctr(new, "new", pid=0, created=iso(first + 1)),  # ran while the agent was down
            ctr(done, "done", pid=0, created=iso(first + 1)),
            ctr(old, "old", pid=0, created=iso(first - 1)),  # before the first start; start-at=end
            ctr(running, "running", created=iso(first + 1)),  # the inventory's
        ]
    )
    opts = TailOptions(poll_interval=0.02, start_at_end=True)
    p = LogPipeline([runner], HostFS(docker_root=tmp_path), state, client, opts)  # type: ignore[arg-type]
    started: list[str] = []
    real = p._start_finishing

    def spy(c: Container, runners: Sequence[SinkRunner] | None = None) -> list[asyncio.Task[None]]:
        started.append(c.name)
        return real(c, runners)

    p._start_finishing = spy  # type: ignore[method-assign]
    await p.resume_stopped()
    assert sorted(started) == ["new", "old"]
    assert running not in client.inspected  # running ones are the inventory's: not even inspected
    await until(lambda: not p.tails)
    assert sink.lines == [b"line-%d" % i for i in range(3)]  # the new one's; the old one from its end
    assert store.load("s", gone) is None
    old_live = tmp_path / "containers" / old / f"{old}-json.log"
    pos = store.load("s", old)
    assert isinstance(pos, FilePos) and (pos.inode, pos.offset) == (
        old_live.stat().st_ino,
        old_live.stat().st_size,
    )
    await p.stop(timeout=1)


async def test_a_raw_chunks_sink_gets_dockers_chunks_while_others_get_the_line(tmp_path: Path) -> None:
    class Raw(Sink):
        raw_chunks = True

    raw, joined = Raw("raw"), Sink("joined")
    runners = [SinkRunner(SinkSpec("raw", "x"), raw), SinkRunner(SinkSpec("joined", "x"), joined)]
    p = LogPipeline(
        runners, HostFS(docker_root=tmp_path), tmp_path / "state", None, TailOptions(poll_interval=0.02)
    )
    cid = "8" * 64
    d = tmp_path / "containers" / cid
    d.mkdir(parents=True)
    t = '"stream":"stdout","time":"2026-11-23T08:00:00.1Z"}\n'
    (d / f"{cid}-json.log").write_text(
        "".join('{"log":"' + c + t for c in ("a" * 16384 + '",', "b" * 16384 + '",', 'c\\n",'))
    )
    p.on_container("added", ctr(cid, "x"))
    await until(lambda: len(joined.lines) == 1 and len(raw.lines) == 3)
    assert joined.lines == [b"a" * 16384 + b"b" * 16384 + b"c"]
    assert raw.lines == [b"a" * 16384, b"b" * 16384, b"c"]
    await p.stop(timeout=1)


class RestartingEngine(DockerClient):
    """Engine API logs of one `local` container that stops and starts again: a follow stream ends
    when it stops; a read without follow waits for `gate` (to catch the tail in its final read).
    The client's own `logs()` builds the requests and decodes what `stream` sends."""

    T0 = 1_795_000_000_000_000_000

    def __init__(self) -> None:
        super().__init__("unix:///fake-engine.sock")
        self.lines: list[bytes] = []
        self.running = asyncio.Event()
        self.stopped = asyncio.Event()
        self.gate = asyncio.Event()
        self.final_reads = 0

    def frames(self, since: str | None) -> bytes:
        s, _, f = (since or "0.0").partition(".")
        since_ns = int(s) * 10**9 + int(f.ljust(9, "0"))
        out = b""
        for i, line in enumerate(self.lines):
            ns = self.T0 + i
            if ns >= since_ns:
                sec, frac = divmod(ns, 10**9)
                payload = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode()
                payload += b".%09dZ " % frac + line + b"\n"
                out += struct.pack(">BxxxI", 1, len(payload)) + payload
        return out

    async def stream(self, path: str, params: Mapping[str, str] | None = None) -> AsyncGenerator[bytes, None]:
        assert params is not None
        if params["follow"] == "0":
            self.final_reads += 1
            wire = self.frames(params.get("since"))  # what Docker has when the read begins
            await self.gate.wait()
            yield wire
            return
        sent = 0
        while True:
            wire = self.frames(None)
            if len(wire) > sent:
                yield self.frames(params.get("since")) if not sent else wire[sent:]
                sent = len(wire)
            if self.stopped.is_set():
                return
            await asyncio.sleep(0.01)


async def test_a_container_started_again_during_its_final_read_is_followed(tmp_path: Path) -> None:
    """The container restarts while its tail makes the final read of the stop before: that tail
    ends, and a fresh one follows the new run from the checkpoint; nothing is lost."""
    sink = Sink("s")
    eng = RestartingEngine()
    p = LogPipeline(
        [SinkRunner(SinkSpec("s", "x"), sink)],
        HostFS(docker_root=tmp_path),
        tmp_path / "state",
        eng,
        TailOptions(),
    )
    c = ctr("6" * 64, "again", driver="local")
    eng.lines.append(b"first-run")
    p.on_container("added", c)
    await until(lambda: sink.lines == [b"first-run"])
    eng.stopped.set()
    p.on_container("removed", c)
    await until(lambda: eng.final_reads == 1)  # the tail is in its final read
    eng.stopped.clear()
    eng.lines.append(b"second-run")
    p.on_container("added", c)  # docker start
    eng.gate.set()
    await until(lambda: sink.lines == [b"first-run", b"second-run"])
    eng.lines.append(b"still-followed")
    await until(lambda: sink.lines == [b"first-run", b"second-run", b"still-followed"])
    await p.stop(timeout=1)
