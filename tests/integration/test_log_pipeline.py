"""The log pipeline end to end: real dockerd, the real agent (`python -m agent run`), real sinks.

Containers log numbered lines (`line-0`, `line-1`, ...) at a bounded rate; every test checks that
each number arrives, and how often. The json-file sink (read back with our own parser) and the
fluentd sink into the Forward receiver (tests/support/peers/forward.py) are the far ends. The agent only
follows containers named `dwlog<session>-*`, so other tests' containers on the shared engine (and
other sessions running these same tests) do not interfere.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.logs.jsonfile import CorruptLine, parse_line
from tests.support.agentproc import Agent, one, scrape_until
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.forward import Event, ForwardReceiver
from tests.support.toolbox import sinks_config, until, wait_for

pytestmark = pytest.mark.docker

BATCH_RECORDS = 1000  # agent/logs/delivery.py: the most a crash can make us send twice
PREFIX = f"dwlog{uuid.uuid4().hex[:6]}-"  # this session's containers


def logger_script(n: int, per_tick: int = 50, tick: str = "0.05", start: int = 0) -> str:
    """busybox sh: print line-<start>..line-<start+n-1>, `per_tick` lines every `tick` seconds."""
    end = start + n
    return (
        f"i={start}; while [ $i -lt {end} ]; do j=0; "
        f"while [ $j -lt {per_tick} ] && [ $i -lt {end} ]; do echo line-$i; i=$((i+1)); j=$((j+1)); done; "
        f"sleep {tick}; done"
    )


def json_sink(out: Path, name: str = "files", **extra: object) -> dict[str, Any]:
    opts = {"path": str(out)}
    return {"name": name, "driver": "json-file", "options": opts, "include": {"name": f"^{PREFIX}"}, **extra}


def start_agent(engine: Engine, tmp: Path, cfg: Path, *extra: str) -> Agent:
    return Agent(engine, f"--config={cfg}", f"--path.state={tmp / 'state'}", *extra).start()


def read_sink_lines(out: Path, cid: str) -> list[str]:
    """Every line the json-file sink wrote for a container, in order (rotated files first); like
    Docker's own file, a line over 16 KiB is there as chunks, rejoined here."""
    d = out / cid
    files = sorted(d.glob(f"{cid}-json.log.*"), key=lambda p: -int(p.name.rsplit(".", 1)[-1]))
    files.append(d / f"{cid}-json.log")
    lines: list[str] = []
    chunks: list[bytes] = []
    for f in files:
        if not f.exists():
            continue
        for raw in f.read_bytes().splitlines():
            try:
                entry = parse_line(raw)
            except CorruptLine:
                lines.append("<corrupt>")
                continue
            chunks.append(entry.data)
            if entry.complete:
                lines.append(b"".join(chunks).decode("utf-8", "replace"))
                chunks = []
    return lines


def numbered_counts(lines: list[str]) -> collections.Counter[int]:
    return collections.Counter(int(s.removeprefix("line-")) for s in lines if s.startswith("line-"))


def assert_each_once(lines: list[str], n: int) -> None:
    counts = numbered_counts(lines)
    missing = [i for i in range(n) if counts[i] == 0]
    dups = {i: c for i, c in counts.items() if c > 1}
    assert not missing, f"{len(missing)} lines missing, first {missing[:10]}"
    assert not dups, f"{len(dups)} lines repeated, e.g. {list(dups.items())[:10]}"
    assert [int(s[5:]) for s in lines if s.startswith("line-")] == list(range(n)), "out of order"


def run_logger(engine: Engine, script: str, *opts: str) -> str:
    return engine.run(*opts, BUSYBOX_IMAGE, "sh", "-c", script, name=f"{PREFIX}{uuid.uuid4().hex[:8]}")


def wait_done(agent: Agent, sink: str = "files") -> None:
    """Instead of a grace period for duplicates to show up before counting: wait until the agent is
    done with the test's containers. A tail ends only once its container died (or a `die` started
    one) and it has read Docker's log to the end; with no tail left, nothing more reaches the sink."""
    scrape_until(
        agent,
        lambda m: one(m, "dockwatch_log_sink_containers", sink=sink) == 0,
        timeout=60,
        what=f"every {sink} tail to end",
    )


def wait_lines(out: Path, cid: str, n: int, timeout: float) -> list[str]:
    box: list[list[str]] = []

    def enough() -> bool:
        lines = read_sink_lines(out, cid)
        box.append(lines)
        return len(numbered_counts(lines)) >= n

    wait_for(enough, timeout=timeout, interval=0.2, what=f"{n} distinct lines at the sink")
    return box[-1]


# --- json-file source → json-file sink ----------------------------------------------------------------
def test_every_line_exactly_once(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    agent = start_agent(engine, tmp_path, sinks_config(tmp_path, [json_sink(out)]))
    try:
        n = 3000
        cid = run_logger(engine, logger_script(n, per_tick=100, tick="0.02"))
        lines = wait_lines(out, cid, n, timeout=60)
        engine.docker("wait", cid)
        wait_done(agent)
        assert_each_once(read_sink_lines(out, cid), n)
        m = agent.scrape()
        assert one(m, "dockwatch_log_sink_records_sent_total", sink="files") >= n
        assert one(m, "dockwatch_log_sink_records_dropped_total", sink="files", reason="corrupt") == 0
        assert len(lines) >= n
    finally:
        assert agent.stop() == 0


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_container_that_exits_at_once(engine: Engine, tmp_path: Path, driver: str) -> None:
    """A container that is gone before the inventory could see it running: read from its `die`."""
    out = tmp_path / "out"
    agent = start_agent(engine, tmp_path, sinks_config(tmp_path, [json_sink(out)]))
    try:
        n = 200
        script = f"seq 0 {n - 1} | while read i; do echo line-$i; done"
        cid = run_logger(engine, script, "--log-driver", driver)
        engine.docker("wait", cid)
        wait_lines(out, cid, n, timeout=30)
        wait_done(agent)
        assert_each_once(read_sink_lines(out, cid), n)
    finally:
        assert agent.stop() == 0


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compress"])
def test_rotation_loses_and_repeats_nothing(engine: Engine, tmp_path: Path, compress: bool) -> None:
    out = tmp_path / "out"
    agent = start_agent(engine, tmp_path, sinks_config(tmp_path, [json_sink(out)]))
    try:
        n = 6000
        opts = ["--log-opt", "max-size=20k", "--log-opt", "max-file=4"]
        if compress:
            opts += ["--log-opt", "compress=true"]
        cid = run_logger(engine, logger_script(n, per_tick=40, tick="0.02"), *opts)
        wait_lines(out, cid, n, timeout=90)
        engine.docker("wait", cid)
        docker_dir = engine.root / "data" / "containers" / cid
        rotated = list(docker_dir.glob("*-json.log.*"))
        assert rotated, "dockerd did not rotate: the test would prove nothing"
        if compress:
            assert any(p.name.endswith(".gz") for p in rotated)
        wait_done(agent)
        # ~6000 lines x ~70 bytes over 20 kB files: dockerd rotated about 20 times under the reader
        assert_each_once(read_sink_lines(out, cid), n)
        m = agent.scrape()
        assert one(m, "dockwatch_log_sink_records_dropped_total", sink="files", reason="rotated") == 0
        # Every line arrived, so no file was rotated away unread: with compress=true dockerd unlinks
        # each `.1` once its `.1.gz` is written, which is not a loss (once counted as one).
        assert one(m, "dockwatch_log_sink_rotated_files_missed_total", sink="files") == 0
    finally:
        assert agent.stop() == 0


def test_long_line_invalid_utf8_and_binary(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    agent = start_agent(engine, tmp_path, sinks_config(tmp_path, [json_sink(out)]))
    try:
        script = (
            "echo line-0; head -c 102400 /dev/zero | tr '\\0' x; echo; echo line-1; "
            "printf 'bad \\377\\376 utf8\\n'; printf 'bin \\001\\002\\033\\000 end\\n'; echo line-2"
        )
        cid = run_logger(engine, script)
        lines = wait_lines(out, cid, 3, timeout=30)
        assert lines == [
            "line-0",
            "x" * 102400,  # Docker split it into 7 chunks of 16 KiB; the sink got one line
            "line-1",
            "bad \ufffd\ufffd utf8",  # dockerd had already replaced the invalid bytes
            "bin \x01\x02\x1b\x00 end",
            "line-2",
        ]
    finally:
        assert agent.stop() == 0


def test_corrupt_lines_in_a_copy_of_dockers_file(engine: Engine, tmp_path: Path) -> None:
    """Garbage between real lines, in a copy of dockerd's file under a fake docker root (dockerd's
    own file is left alone): no crash, each bad line counted, every neighbour delivered."""
    cid = run_logger(engine, logger_script(10) + "; sleep 60")
    real = engine.root / "data" / "containers" / cid / f"{cid}-json.log"
    wait_for(lambda: real.read_bytes().count(b"\n") >= 10, timeout=20, what="dockerd to write 10 lines")
    lines = real.read_bytes().splitlines(keepends=True)
    garbage = [
        b"garbage, not json\n",
        b'{"log":"\xff\xfe invalid utf-8\\n","stream":"stdout","time":"2026-11-23T08:19:30.1Z"}\n',
        b"\x00\x01\x02\x89PNG\r\x1a binary\n",
        b'{"log":"line-x\\n","stream":"stdout","time":"2026-13-01T08:19:30Z"}\n',
        b'{"log":"truncated\\n","stream":"std\n',
    ]
    fake = tmp_path / "root" / "containers" / cid
    fake.mkdir(parents=True)
    (fake / real.name).write_bytes(b"".join(lines[:5] + garbage + lines[5:]))
    out = tmp_path / "out"
    cfg = sinks_config(tmp_path, [json_sink(out)])
    agent = start_agent(engine, tmp_path, cfg, f"--path.docker-root={tmp_path / 'root'}")
    try:
        got = wait_lines(out, cid, 10, timeout=30)
        assert got == [f"line-{i}" for i in range(10)]
        m = scrape_until(
            agent,
            lambda m: one(m, "dockwatch_log_sink_records_dropped_total", sink="files", reason="corrupt") == 5,
            timeout=10,
            what="5 corrupt lines counted",
        )
        assert one(m, "dockwatch_log_sink_records_sent_total", sink="files") == 10
    finally:
        assert agent.stop() == 0


def test_killed_agent_resumes_from_checkpoint(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = sinks_config(tmp_path, [json_sink(out)])
    agent = start_agent(engine, tmp_path, cfg)
    n = 5000
    cid = run_logger(engine, logger_script(n, per_tick=50, tick="0.02"))
    wait_for(lambda: len(read_sink_lines(out, cid)) >= 500, timeout=30, what="first lines")
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()
    got_before = len(read_sink_lines(out, cid))
    assert got_before < n, "the container finished before the kill: log more slowly"
    agent2 = start_agent(engine, tmp_path, cfg)
    try:
        wait_lines(out, cid, n, timeout=90)
        engine.docker("wait", cid)
        wait_done(agent2)
        lines = read_sink_lines(out, cid)
        counts = numbered_counts(lines)
        assert [i for i in range(n) if counts[i] == 0] == []
        dups = sum(c - 1 for c in counts.values())
        assert dups <= BATCH_RECORDS, f"{dups} duplicates after SIGKILL: more than one batch"
    finally:
        assert agent2.stop() == 0


def test_sigterm_drains_and_restart_repeats_nothing(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = sinks_config(tmp_path, [json_sink(out)])
    agent = start_agent(engine, tmp_path, cfg)
    n = 4000
    cid = run_logger(engine, logger_script(n, per_tick=50, tick="0.02"))
    wait_for(lambda: len(read_sink_lines(out, cid)) >= 300, timeout=30, what="first lines")
    assert agent.stop() == 0  # SIGTERM: checkpoints are written after the last OK
    agent2 = start_agent(engine, tmp_path, cfg)
    try:
        wait_lines(out, cid, n, timeout=90)
        engine.docker("wait", cid)
        wait_done(agent2)
        assert_each_once(read_sink_lines(out, cid), n)
    finally:
        assert agent2.stop() == 0


# --- Engine API source (local driver) -------------------------------------------------------------
def test_local_driver_via_api_exactly_once_across_restart(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = sinks_config(tmp_path, [json_sink(out)])
    agent = start_agent(engine, tmp_path, cfg)
    n = 3000
    cid = run_logger(engine, logger_script(n, per_tick=50, tick="0.02"), "--log-driver", "local")
    wait_for(lambda: len(read_sink_lines(out, cid)) >= 300, timeout=30, what="first lines")
    assert agent.stop() == 0
    agent2 = start_agent(engine, tmp_path, cfg)
    try:
        wait_lines(out, cid, n, timeout=90)
        engine.docker("wait", cid)
        wait_done(agent2)
        # `since` is inclusive: the boundary entries came twice from the engine and were dropped
        assert_each_once(read_sink_lines(out, cid), n)
    finally:
        assert agent2.stop() == 0


def test_syslog_driver_read_through_dual_logging_cache(engine: Engine, tmp_path: Path) -> None:
    """A syslog-driver container (its syslog goes to an unused loopback UDP port) keeps Docker's local
    cache by default; the agent reads that through the Engine API."""
    out = tmp_path / "out"
    agent = start_agent(engine, tmp_path, sinks_config(tmp_path, [json_sink(out)]))
    try:
        n = 1000
        syslog = ["--log-driver", "syslog", "--log-opt", "syslog-address=udp://127.0.0.1:9"]
        cid = run_logger(engine, logger_script(n, per_tick=100, tick="0.02"), *syslog)
        wait_lines(out, cid, n, timeout=60)
        engine.docker("wait", cid)
        wait_done(agent)
        assert_each_once(read_sink_lines(out, cid), n)
    finally:
        assert agent.stop() == 0


def test_unreadable_containers_are_listed(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    agent = start_agent(engine, tmp_path, sinks_config(tmp_path, [json_sink(out)]))
    try:
        run_logger(engine, "sleep 60", "--log-driver", "none")
        run_logger(engine, "sleep 60", "--log-driver", "local", "-t")
        no_cache = ["--log-opt", "syslog-address=udp://127.0.0.1:9", "--log-opt", "cache-disabled=true"]
        run_logger(engine, "sleep 60", "--log-driver", "syslog", *no_cache)
        # Only containers some sink wants are counted (the sink follows this session's only): exactly ours.
        m = scrape_until(
            agent,
            lambda m: (
                one(m, "dockwatch_log_containers_unreadable", reason="driver_none") == 1
                and one(m, "dockwatch_log_containers_unreadable", reason="tty") == 1
                and one(m, "dockwatch_log_containers_unreadable", reason="driver_syslog") == 1
            ),
            timeout=20,
            what="unreadable containers in the metric",
        )
        assert m
        assert "logs cannot be read (driver_none)" in Path(agent.log.name).read_text()
    finally:
        assert agent.stop() == 0


def test_filters_and_opt_out(engine: Engine, tmp_path: Path) -> None:
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    cfg = sinks_config(
        tmp_path,
        [
            json_sink(out_a, "web-only", include={"name": f"^{PREFIX}web-"}),
            json_sink(out_b, "no-debug", exclude={"label": "^tier=debug$"}),
        ],
    )
    agent = start_agent(engine, tmp_path, cfg)
    try:
        script = logger_script(20) + "; sleep 30"
        web = engine.run(BUSYBOX_IMAGE, "sh", "-c", script, name=f"{PREFIX}web-{uuid.uuid4().hex[:6]}")
        dbg_name, off_name = f"{PREFIX}db-{uuid.uuid4().hex[:6]}", f"{PREFIX}web-{uuid.uuid4().hex[:6]}"
        dbg = engine.run("--label", "tier=debug", BUSYBOX_IMAGE, "sh", "-c", script, name=dbg_name)
        off = engine.run("--label", "dockwatch.logs=false", BUSYBOX_IMAGE, "sh", "-c", script, name=off_name)
        wait_lines(out_a, web, 20, timeout=30)
        wait_lines(out_b, web, 20, timeout=30)
        # A later container proves the agent has looked at the earlier ones by then.
        last = engine.run(BUSYBOX_IMAGE, "sh", "-c", script, name=f"{PREFIX}web-{uuid.uuid4().hex[:6]}")
        wait_lines(out_a, last, 20, timeout=30)
        wait_lines(out_b, last, 20, timeout=30)
        assert not (out_a / dbg).exists()  # not included by name
        assert not (out_b / dbg).exists()  # excluded by label
        assert not (out_a / off).exists() and not (out_b / off).exists()  # opted out everywhere
    finally:
        assert agent.stop() == 0


# --- fluentd sink with the receiver stopped while containers log ----------------------------------------
async def test_receiver_down_loses_nothing(engine: Engine, tmp_path: Path) -> None:
    """Three containers log while the fluentd receiver is down: every line arrives once it is back;
    the json-file sink next to it keeps delivering during the outage."""
    out = tmp_path / "out"
    async with ForwardReceiver() as rx:
        sink = {
            "name": "central",
            "driver": "fluentd",
            "options": {
                "fluentd-address": rx.address,
                "fluentd-async": "true",
                "fluentd-request-ack": "true",
                "fluentd-write-timeout": "2s",
                "fluentd-read-timeout": "2s",
            },
            "include": {"name": f"^{PREFIX}"},
        }
        cfg = sinks_config(tmp_path, [sink, json_sink(out)])
        agent = await asyncio.to_thread(start_agent, engine, tmp_path, cfg)
        try:
            n = 2000  # per container, 25 lines / 0.05 s: about 5 s of logging at full speed
            script = logger_script(n, per_tick=25, tick="0.05")
            cids = [await asyncio.to_thread(run_logger, engine, script) for _ in range(3)]

            def mine(cid: str) -> list[str]:
                return [str(e.record.get("log")) for e in rx.events if e.record.get("container_id") == cid]

            await until(lambda: min(len(mine(c)) for c in cids) >= 100, 30, 0.05, "lines before the outage")
            await rx.stop()
            down_at = [len(mine(c)) for c in cids]
            files_at = [len(read_sink_lines(out, c)) for c in cids]

            # The outage lasts until it has had its effects (not a fixed 10 s): the sink retried with
            # growing backoff, a backlog built up, and the other sink, which did not wait for this
            # one, delivered lines logged meanwhile.
            def outage_felt() -> bool:
                m = agent.scrape()
                return (
                    one(m, "dockwatch_log_sink_retries_total", sink="central") >= 4
                    and one(m, "dockwatch_log_sink_backlog_bytes", sink="central") > 0
                    and all(len(read_sink_lines(out, c)) > k for c, k in zip(cids, files_at, strict=True))
                )

            await asyncio.to_thread(wait_for, outage_felt, 60, 0.2, "retries, a backlog, the other sink on")
            await rx.start()

            def all_arrived() -> bool:
                return all(
                    len(numbered_counts(mine(c))) >= n and len(numbered_counts(read_sink_lines(out, c))) >= n
                    for c in cids
                )

            try:
                await until(all_arrived, timeout=90, interval=0.1, what=f"{n} lines of each at both sinks")
            except TimeoutError:
                raise AssertionError(f"{[len(numbered_counts(mine(c))) for c in cids]} of {n}") from None
            assert max(down_at) < n, "the containers finished before the outage: log more slowly"
            for c in cids:
                assert_each_once(read_sink_lines(out, c), n)
                counts = numbered_counts(mine(c))
                assert [i for i in range(n) if counts[i] == 0] == []
                # An ack lost as the receiver went down may make one batch come twice; no more.
                assert sum(v - 1 for v in counts.values()) <= BATCH_RECORDS
            m = await asyncio.to_thread(agent.scrape)
            assert one(m, "dockwatch_log_sink_last_success_timestamp_seconds", sink="central") > 0
        finally:
            assert await asyncio.to_thread(agent.stop) == 0


async def test_flags_one_sink_partial_metadata_passed_through(engine: Engine, tmp_path: Path) -> None:
    """`--log-sink fluentd --log-opt ...` from the command line; with --no-logs.join-partial the
    16 KiB chunks reach the receiver with Docker's partial_* keys, as dockerd's fluentd driver sends."""
    async with ForwardReceiver() as rx:
        agent = Agent(
            engine,
            f"--path.state={tmp_path / 'state'}",
            "--log-sink=fluentd",
            f"--log-opt=fluentd-address={rx.address}",
            "--log-opt=fluentd-async=true",
            "--log-opt=tag=docker.{{.Name}}",
            "--no-logs.join-partial",
            "--logs.start-at=end",  # other tests' containers on the engine: only what they write from now
        )
        await asyncio.to_thread(agent.start)
        try:
            script = "head -c 40000 /dev/zero | tr '\\0' p; echo; echo line-0"
            cid = await asyncio.to_thread(run_logger, engine, script)
            name = (await asyncio.to_thread(engine.inspect, cid))["Name"].lstrip("/")

            def mine() -> list[Event]:
                return [e for e in rx.events if e.record.get("container_id") == cid]

            await until(lambda: len(mine()) >= 4, timeout=30, interval=0.05, what="4 records")
            evs = mine()
            assert {e.tag for e in evs} == {f"docker.{name}"}
            chunks = [e.record for e in evs[:3]]
            assert [len(r["log"]) for r in chunks] == [16384, 16384, 40000 - 2 * 16384]
            assert [r["partial_ordinal"] for r in chunks] == ["1", "2", "3"]
            assert [r["partial_last"] for r in chunks] == ["false", "false", "true"]
            assert {r["partial_message"] for r in chunks} == {"true"}
            assert len({r["partial_id"] for r in chunks}) == 1
            assert evs[3].record["log"] in ("line-0", b"line-0") and "partial_message" not in evs[3].record
        finally:
            assert await asyncio.to_thread(agent.stop) == 0


async def test_sigterm_with_sink_down_exits_within_drain_timeout(engine: Engine, tmp_path: Path) -> None:
    """SIGTERM while the only sink is down: the agent gives in-flight batches --logs.drain-timeout,
    exits 0, and has committed nothing undelivered: after a restart every line arrives."""
    async with ForwardReceiver() as rx:
        sink = {
            "name": "central",
            "driver": "fluentd",
            "options": {
                "fluentd-address": rx.address,
                "fluentd-async": "true",
                "fluentd-request-ack": "true",
            },
            "include": {"name": f"^{PREFIX}"},
        }
        cfg = sinks_config(tmp_path, [sink])
        n = 300
        await rx.stop()
        agent = await asyncio.to_thread(start_agent, engine, tmp_path, cfg, "--logs.drain-timeout=2s")
        cid = await asyncio.to_thread(run_logger, engine, logger_script(n) + "; sleep 60")

        def retrying() -> bool:
            return one(agent.scrape(), "dockwatch_log_sink_retries_total", sink="central") > 0

        await asyncio.to_thread(wait_for, retrying, 20, 0.1, "retries while the receiver is down")
        # Exits 0 by itself (agent.stop() SIGKILLs after 20 s: -9), having ended the drain at its
        # timeout; how long that takes is measured in bench/shutdown.py, not asserted here.
        assert await asyncio.to_thread(agent.stop) == 0, agent.logtext()
        assert "within 2s" in agent.logtext()  # the drain ended at its timeout
        assert rx.events == []
        await rx.start()
        agent2 = await asyncio.to_thread(start_agent, engine, tmp_path, cfg)
        try:

            def got() -> list[str]:
                return [str(e.record.get("log")) for e in rx.events if e.record.get("container_id") == cid]

            await until(lambda: len(numbered_counts(got())) >= n, 30, 0.05, f"{n} lines after the restart")
            assert_each_once(got(), n)
        finally:
            assert await asyncio.to_thread(agent2.stop) == 0
