"""LogPipeline wiring without an engine: which containers get tails, opt-out, unreadable reasons,
a failing tail restarted from its checkpoint, and stop()."""

from __future__ import annotations

import re
from pathlib import Path

from toolbox import until

from agent.docker.models import Container
from agent.hostfs import HostFS
from agent.logs.delivery import SinkRunner, TailOptions
from agent.logs.filters import Match, SinkSpec
from agent.logs.pipeline import LogPipeline
from agent.logs.tail import FileTail
from exporters.sinks.base import Outcome


class Sink:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[bytes] = []

    async def open(self) -> None: ...

    async def send(self, batch):
        self.lines += [r.line for r in batch]
        return Outcome.OK

    async def close(self) -> None: ...


def ctr(cid: str, name: str, driver: str = "json-file", tty: bool = False, **labels: str) -> Container:
    return Container(
        id=cid,
        name=name,
        image="busybox",
        image_id="",
        pid=1,
        network_mode="",
        labels=labels,
        log_driver=driver,
        tty=tty,
    )


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
    p.on_container("added", ctr(off, "web-2", **{"dockwatch.logs": "false"}))
    p.on_container("added", ctr("d" * 64, "web-3", driver="none"))
    p.on_container("added", ctr("e" * 64, "web-4", driver="local", tty=True))
    p.on_container("added", ctr("f" * 64, "web-5", driver="syslog"))  # no engine client here
    assert sorted(p.tails) == [(a, "all"), (a, "web"), (b, "all")]
    assert p.unreadable == {"d" * 64: "driver_none", "e" * 64: "tty", "f" * 64: "driver_syslog"}
    await until(lambda: len(web.lines) == 3 and len(all_.lines) == 6)
    p.on_container("removed", ctr("d" * 64, "web-3", driver="none"))
    assert "d" * 64 not in p.unreadable
    p.on_container("removed", ctr(b, "db"))  # finishes: reads to the end, then the tail ends
    await until(lambda: (b, "all") not in p.tails)
    await p.stop(timeout=5)
    assert p.tails == {} or all(t.stopping for t in p.tails.values())


async def test_a_failing_tail_restarts_from_its_checkpoint(tmp_path: Path, monkeypatch) -> None:
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

    async def flaky(self, f, data):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the first tail")
        await real_consume(self, f, data)

    monkeypatch.setattr(FileTail, "_consume", flaky)
    p.on_container("added", ctr(cid, "x"))
    await until(lambda: len(sink.lines) == 5)
    assert sink.lines == [b"line-%d" % i for i in range(5)]
    await p.stop(timeout=5)
