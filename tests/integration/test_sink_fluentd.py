"""The fluentd sink against a real Forward-protocol receiver, and against dockerd's own fluentd driver.

The reference: busybox containers log through dockerd's `--log-driver fluentd` into our receiver;
the same lines go through our sink into the same receiver; tags, times and records must match.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import struct
import subprocess
from pathlib import Path

import msgpack
import pytest

from agent.docker.models import Container
from agent.logs.record import LogRecord, Partial
from exporters.sinks.base import Outcome
from exporters.sinks.fluentd import MAX_ANSWER, FluentdSink
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.forward import Event, ForwardReceiver
from tests.support.toolbox import until

WEB = Container(
    id="5e" * 32,
    name="web",
    image="busybox",
    image_id="sha256:" + "0" * 64,
    pid=1,
    network_mode="default",
    labels={"app": "shop"},
    env=("APP_ENV=prod",),
)
DB = Container(
    id="db" * 32, name="db", image="busybox", image_id="sha256:" + "1" * 64, pid=2, network_mode="default"
)
T0 = 1_763_884_800_000_000_000
CHUNK = 16384  # Docker's copier buffer (daemon/logger/copier.go): longer lines arrive as partials


def batch(n: int, start: int = 0) -> list[LogRecord]:
    """n records over two containers, with a partial pair and a line that is not UTF-8."""
    out: list[LogRecord] = []
    for i in range(start, start + n):
        c = WEB if i % 3 else DB
        out.append(
            LogRecord(c, "stderr" if i % 5 == 0 else "stdout", T0 + i * 1_000_001, b"line %d \xff" % i)
        )
    if n >= 2:
        pid = f"{start:064x}"
        out[-2] = LogRecord(WEB, "stdout", T0, b"x" * 100, Partial(pid, 1, False))
        out[-1] = LogRecord(WEB, "stdout", T0, b"end", Partial(pid, 2, True))
    return out


def expected(recs: list[LogRecord], labels: bool = True) -> list[tuple[str, dict[str, str]]]:
    """(tag, record) as the receiver decodes them (raw bytes via surrogate escapes), sorted."""
    out = []
    for r in recs:
        m = {
            "container_id": r.container.id,
            "container_name": "/" + r.container.name,
            "source": r.stream,
            "log": r.line.decode("utf-8", "surrogateescape"),
        }
        if labels and "app" in r.container.labels:
            m["app"] = r.container.labels["app"]
        if r.partial:
            m |= {
                "partial_message": "true",
                "partial_id": r.partial.id,
                "partial_ordinal": str(r.partial.ordinal),
                "partial_last": "true" if r.partial.last else "false",
            }
        out.append((r.container.id[:12], m))
    return sorted(out, key=lambda x: (x[0], x[1]["log"]))


def got(events: list[Event]) -> list[tuple[str, dict[str, str]]]:
    return sorted(((e.tag, e.record) for e in events), key=lambda x: (x[0], x[1]["log"]))


def sink(rx: ForwardReceiver, **opts: str) -> FluentdSink:
    return FluentdSink({"fluentd-address": rx.address, "labels": "app", **opts}, hostname="agent.test")


# --- every mode, with and without ack --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("opts", "mode"),
    [
        ({"fluentd-mode": "Message"}, "Message"),
        ({"fluentd-mode": "Message", "fluentd-request-ack": "true"}, "Message"),
        ({"fluentd-mode": "Forward", "fluentd-request-ack": "true"}, "Forward"),
        ({}, "PackedForward"),
        ({"fluentd-request-ack": "true"}, "PackedForward"),
        ({"fluentd-compress": "gzip"}, "CompressedPackedForward"),
        ({"fluentd-compress": "gzip", "fluentd-request-ack": "true"}, "CompressedPackedForward"),
    ],
)
async def test_every_mode_delivers_dockers_records(opts: dict[str, str], mode: str) -> None:
    recs = batch(40)
    async with ForwardReceiver() as rx:
        s = sink(rx, **opts)
        try:
            assert await s.send(recs) is Outcome.OK
            events = await rx.wait_events(len(recs))
        finally:
            await s.close()
    assert got(events) == expected(recs)
    (conn,) = rx.connections
    assert conn.modes == {mode}
    acked = opts.get("fluentd-request-ack") == "true"
    # one chunk per message: per line in Message mode, per tag (2 containers) when batched
    assert len(conn.chunks) == (len(recs) if mode == "Message" else 2) * acked
    # integer seconds (an EventTime would be left out, and the lengths differ)
    assert sorted(e.time for e in events if isinstance(e.time, int)) == sorted(
        r.time_ns // 10**9 for r in recs
    )


async def test_sub_second_precision_sends_event_time() -> None:
    recs = batch(6)
    async with ForwardReceiver() as rx:
        s = sink(rx, **{"fluentd-sub-second-precision": "true"})
        assert await s.send(recs) is Outcome.OK
        events = await rx.wait_events(len(recs))
        await s.close()
    assert sorted(e.time_ns for e in events) == sorted(r.time_ns for r in recs)


async def test_unix_socket(tmp_path: Path) -> None:
    recs = batch(5)
    async with ForwardReceiver(unix_path=str(tmp_path / "fluentd.sock")) as rx:
        s = sink(rx, **{"fluentd-request-ack": "true"})
        assert s.address.scheme == "unix"
        assert await s.send(recs) is Outcome.OK
        assert got(await rx.wait_events(len(recs))) == expected(recs)
        await s.close()


# --- handshake ----------------------------------------------------------------------------------------------
async def test_shared_key_and_user_handshake() -> None:
    recs = batch(5)
    async with ForwardReceiver(shared_key="s3cret", users={"alice": "pw"}) as rx:
        s = sink(
            rx,
            **{
                "fluentd-shared-key": "s3cret",
                "fluentd-username": "alice",
                "fluentd-password": "pw",
                "fluentd-request-ack": "true",
            },
        )
        assert await s.send(recs) is Outcome.OK
        assert got(await rx.wait_events(len(recs))) == expected(recs)
        await s.close()
    assert rx.connections[0].handshake


@pytest.mark.parametrize(
    "opts",
    [
        {"fluentd-shared-key": "wrong", "fluentd-username": "alice", "fluentd-password": "pw"},
        {"fluentd-shared-key": "s3cret", "fluentd-username": "alice", "fluentd-password": "nope"},
    ],
)
async def test_refused_handshake_is_retry_and_sends_nothing(opts: dict[str, str]) -> None:
    async with ForwardReceiver(shared_key="s3cret", users={"alice": "pw"}) as rx:
        s = sink(rx, **opts)
        assert await s.send(batch(3)) is Outcome.RETRY
        await s.close()
    assert rx.events == [] and not rx.connections[0].handshake


async def test_server_that_does_not_know_the_key_is_refused() -> None:
    """A PONG saying "ok" without the right digest (an impostor) must not get the logs."""
    seen: list[bytes] = []
    pings: list[list[object]] = []

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(msgpack.packb(["HELO", {"nonce": b"n" * 16, "auth": b"", "keepalive": True}]))
        up = msgpack.Unpacker()
        while not pings:
            up.feed(await reader.read(4096))
            pings.extend(up)
        writer.write(msgpack.packb(["PONG", True, "", "impostor", "0" * 128]))
        seen.append(await reader.read(4096))  # whatever comes next: must be nothing (EOF)
        writer.close()

    server = await asyncio.start_server(impostor, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = FluentdSink({"fluentd-address": f"tcp://127.0.0.1:{port}", "fluentd-shared-key": "k"})
    try:
        assert await s.send(batch(3)) is Outcome.RETRY
        assert pings and pings[0][0] == "PING"
        await until(lambda: seen, timeout=30, what="the impostor to read what came next")
    finally:
        await s.close()
        server.close()
    assert seen == [b""]


async def test_an_answer_past_the_bound_is_a_protocol_error_retry() -> None:
    """Waiting for an ack, the sink buffers what the server says up to MAX_ANSWER bytes: a server that
    sends more without one complete object is not speaking Forward (retry, reason named)."""

    async def babbler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(b"\xdb\xff\xff\xff\xff" + b"x" * (MAX_ANSWER + 65536))  # a str32 that never ends
        await writer.drain()
        await reader.read()  # until the sink hangs up
        writer.close()

    server = await asyncio.start_server(babbler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = FluentdSink({"fluentd-address": f"tcp://127.0.0.1:{port}", "fluentd-request-ack": "true"})
    try:
        assert await s.send(batch(1)) is Outcome.RETRY
        assert f"over {MAX_ANSWER} bytes" in s.last_error
    finally:
        await s.close()
        server.close()


async def test_helo_without_keepalive_makes_one_connection_per_send() -> None:
    async with ForwardReceiver(shared_key="k", keepalive=False) as rx:
        s = sink(rx, **{"fluentd-shared-key": "k", "fluentd-request-ack": "true"})
        assert await s.send(batch(1, 0)) is Outcome.OK
        assert await s.send(batch(1, 1)) is Outcome.OK
        await rx.wait_events(2)
        await s.close()
    assert len(rx.connections) == 2 and all(c.handshake for c in rx.connections)


# --- TLS ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
            ),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(crt)),
        ],
        check=True,
        capture_output=True,
    )
    return str(crt), str(key)


def server_tls(cert: tuple[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    return ctx


async def test_tls_with_the_servers_ca(cert: tuple[str, str]) -> None:
    recs = batch(5)
    async with ForwardReceiver(ssl_context=server_tls(cert), shared_key="k") as rx:
        assert rx.address.startswith("tls://")
        s = sink(
            rx, **{"fluentd-tls-ca-cert": cert[0], "fluentd-shared-key": "k", "fluentd-request-ack": "true"}
        )
        assert await s.send(recs) is Outcome.OK
        assert got(await rx.wait_events(len(recs))) == expected(recs)
        await s.close()
    assert rx.connections[0].tls and rx.connections[0].handshake


async def test_tls_refuses_an_unknown_server_unless_told_to_skip_verify(cert: tuple[str, str]) -> None:
    async with ForwardReceiver(ssl_context=server_tls(cert)) as rx:
        strict = sink(rx)
        assert await strict.send(batch(2)) is Outcome.RETRY
        await strict.close()
        lax = sink(rx, **{"fluentd-tls-skip-verify": "true", "fluentd-request-ack": "true"})
        assert await lax.send(batch(2)) is Outcome.OK
        await rx.wait_events(2)
        await lax.close()
    assert len(rx.events) == 2


# --- peer down, timeouts, wrong acks ------------------------------------------------------------------------
async def test_receiver_down_is_retry_then_ok_once_it_is_up_nothing_lost() -> None:
    rx = ForwardReceiver()
    await rx.start()
    await rx.stop()  # a port that was ours: now nothing listens on it
    s = sink(rx, **{"fluentd-async": "true", "fluentd-request-ack": "true"})
    first, second = batch(4, 0), batch(4, 100)
    try:
        assert await s.send(first) is Outcome.RETRY
        await rx.start()
        assert await s.send(first) is Outcome.OK
        await rx.wait_events(len(first))
        await rx.stop()  # the peer goes away under an open connection
        assert await s.send(second) is Outcome.RETRY
        await rx.start()  # same port
        assert await s.send(second) is Outcome.OK
        events = await rx.wait_events(len(first) + len(second))
    finally:
        await s.close()
        await rx.stop()
    assert got(events) == expected(first + second)


async def test_receiver_down_without_ack_is_retry_then_ok() -> None:
    rx = ForwardReceiver()
    await rx.start()
    await rx.stop()
    s = sink(rx, **{"fluentd-async": "true"})
    recs = batch(4)
    try:
        assert await s.send(recs) is Outcome.RETRY
        await rx.start()
        assert await s.send(recs) is Outcome.OK
        assert got(await rx.wait_events(len(recs))) == expected(recs)
    finally:
        await s.close()
        await rx.stop()


async def test_open_connects_unless_async_like_docker() -> None:
    rx = ForwardReceiver()
    await rx.start()
    await rx.stop()
    with pytest.raises(OSError):
        await sink(rx).open()
    await sink(rx, **{"fluentd-async": "true"}).open()  # no connection attempted: no error
    async with ForwardReceiver(port=rx.port) as up:
        s = sink(up)
        await s.open()
        await up.wait_connections(1)
        await s.close()


@pytest.mark.parametrize("behaviour", ["silent", "wrong"])
async def test_missing_or_wrong_ack_is_retry(behaviour: str) -> None:
    async with ForwardReceiver(ack=behaviour != "silent", wrong_ack=behaviour == "wrong") as rx:
        s = sink(rx, **{"fluentd-request-ack": "true", "fluentd-read-timeout": "300ms"})
        assert await s.send(batch(3)) is Outcome.RETRY
        await s.close()
    assert len(rx.events) == 3  # delivered but unconfirmed: the pipeline re-sends (at-least-once)


async def test_peer_that_stops_reading_is_a_write_timeout_retry() -> None:
    stalled = asyncio.Event()

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stalled.wait()  # the socket buffers fill up, then the sender's drain blocks
        writer.close()

    server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recs = [LogRecord(WEB, "stdout", T0, b"%08d" % i + b"z" * 1000) for i in range(30_000)]  # ~30 MB
    s = FluentdSink({"fluentd-address": f"tcp://127.0.0.1:{port}", "fluentd-write-timeout": "500ms"})
    try:
        assert await asyncio.wait_for(s.send(recs), 30) is Outcome.RETRY
    finally:
        stalled.set()
        await s.close()
        server.close()


async def test_reconnect_interval_holds_back_redials() -> None:
    rx = ForwardReceiver()
    await rx.start()
    await rx.stop()
    s = sink(rx, **{"fluentd-async": "true", "fluentd-async-reconnect-interval": "10s"})
    assert await s.send(batch(2)) is Outcome.RETRY
    await rx.start()
    try:
        assert await s.send(batch(2)) is Outcome.RETRY  # within 10 s of the failed dial: not even tried
        assert rx.connections == []
    finally:
        await s.close()
        await rx.stop()


async def test_large_batch_is_split_and_every_part_acked() -> None:
    recs = [LogRecord(WEB, "stdout", T0 + i, b"%06d " % i + b"y" * 500) for i in range(3000)]
    async with ForwardReceiver() as rx:
        s = sink(rx, **{"fluentd-request-ack": "true", "fluentd-max-message-size": "256k"})
        assert await s.send(recs) is Outcome.OK
        events = await rx.wait_events(len(recs))
        await s.close()
    assert [e.record["log"] for e in events] == [r.line.decode() for r in recs]
    assert len(rx.connections[0].chunks) >= 6


async def test_concurrent_sends_with_ack_each_get_their_own_ack() -> None:
    """The race dockerd's driver has (see the reference test) must not happen here: no duplicates."""
    batches = [batch(5, 100 * i) for i in range(8)]
    async with ForwardReceiver() as rx:
        s = sink(rx, **{"fluentd-request-ack": "true", "fluentd-mode": "Message"})
        outcomes = await asyncio.gather(*(s.send(b) for b in batches))
        events = await rx.wait_events(40)
        await s.close()
    assert outcomes == [Outcome.OK] * 8 and len(rx.connections) == 1
    assert got(events) == expected([r for b in batches for r in b])


async def test_receiver_reads_fluentds_own_encodings() -> None:
    """Fluentd's out_forward packs entries as str and may send ext8 EventTime and nil heartbeats."""
    ext8 = b"\xc7\x08\x00" + struct.pack(">II", 1_763_884_800, 5)
    entries = b"\x92" + ext8 + msgpack.packb({"log": "a"}) + b"\x92\x01" + msgpack.packb({"log": "b"})
    wire = b"\x93\xa1t" + b"\xdb" + struct.pack(">I", len(entries)) + entries + msgpack.packb({"size": 2})
    async with ForwardReceiver() as rx:
        _, w = await asyncio.open_connection("127.0.0.1", rx.port)
        w.write(b"\xc0" + wire)  # a heartbeat, then PackedForward with str32 entries
        await w.drain()
        events = await rx.wait_events(2)
        w.close()
    assert [(e.time_ns, e.record["log"]) for e in events] == [(T0 + 5, "a"), (10**9, "b")]
    assert rx.connections[0].entries_types == {"str"} and rx.connections[0].modes == {"PackedForward"}


# --- the reference: dockerd's own fluentd driver ------------------------------------------------------------
STDOUT = [b"hello", b"caf\xc3\xa9 \xff raw", b"  spaced  ", b"", b"abcdefghij" * 4000, b"after"]
STDERR = [b"to stderr"]
SCRIPT = (
    "echo hello; {stderr} printf 'caf\\303\\251 \\377 raw\\n'; echo '  spaced  '; echo;"
    " printf 'abcdefghij%.0s' $(seq 4000); echo; echo after"
)


def docker_split(line: bytes) -> list[tuple[bytes, int, bool] | tuple[bytes, None, None]]:
    """What dockerd's copier makes of a line: 16 KiB chunks while the buffer fills without a newline."""
    if len(line) < CHUNK:
        return [(line, None, None)]
    parts: list[tuple[bytes, int, bool] | tuple[bytes, None, None]] = []
    while len(line) >= CHUNK:
        parts.append((line[:CHUNK], len(parts) + 1, False))
        line = line[CHUNK:]
    parts.append((line, len(parts) + 1, True))
    return parts


# Docker log-opts given to dockerd's driver and, unchanged, to our sink.
REFERENCE_CASES: dict[str, dict[str, str]] = {
    "tag-labels-env-subsecond": {
        "tag": "docker.{{.Name}}",
        "labels": "app,tier",
        "env": "APP_ENV,tier",
        "fluentd-sub-second-precision": "true",
    },
    # stdout only: dockerd's driver reads acks outside its write lock, so with stdout and stderr
    # logging at once the two copiers take each other's acks, reconnect and send lines twice
    # (fluent-logger-golang fluent.go write(): syncWriteMessage, then syncReadAck).
    "defaults-regex-ack": {"labels-regex": "^app$", "env-regex": "^APP_", "fluentd-request-ack": "true"},
    "unix-socket": {"labels": "app", "tag": "{{.FullID}}"},
}


@pytest.mark.docker
@pytest.mark.parametrize("case", list(REFERENCE_CASES))
async def test_records_match_dockerds_fluentd_driver(engine: Engine, case: str, tmp_path: Path) -> None:
    log_opts = REFERENCE_CASES[case]
    stderr = STDERR if "fluentd-request-ack" not in log_opts else []
    unix = str(tmp_path / "fluentd.sock") if case == "unix-socket" else None
    async with ForwardReceiver(unix_path=unix) as rx:
        cid = await asyncio.to_thread(
            engine.run,
            "--log-driver", "fluentd",
            "--log-opt", f"fluentd-address={rx.address}",
            *(arg for k, v in log_opts.items() for arg in ("--log-opt", f"{k}={v}")),
            "--label", "app=shop", "--label", "tier=front",
            "-e", "APP_ENV=prod", "-e", "tier=from-env",
            BUSYBOX_IMAGE, "sh", "-c", SCRIPT.format(stderr="echo 'to stderr' >&2;" if stderr else ""),
        )  # fmt: skip
        n = sum(len(docker_split(x)) for x in STDOUT + stderr)
        theirs = await rx.wait_events(n, timeout=30)
        assert len(theirs) == n, [e.record["log"][:40] for e in theirs]

        # The same lines as our source will hand them over, stamped with dockerd's times.
        container = Container.from_inspect(await asyncio.to_thread(engine.inspect, cid))
        recs: list[LogRecord] = []
        for stream, lines in (("stdout", STDOUT), ("stderr", stderr)):
            times = iter(e.time_ns for e in theirs if e.record["source"] == stream)
            for line in lines:
                pid = os.urandom(32).hex()
                for chunk, ordinal, last in docker_split(line):
                    partial = (
                        Partial(pid, ordinal, last) if ordinal is not None and last is not None else None
                    )
                    recs.append(LogRecord(container, stream, next(times), chunk, partial))
        s = FluentdSink({"fluentd-address": rx.address, **log_opts}, hostname="ignored")
        try:
            assert await s.send(recs) is Outcome.OK
            ours = (await rx.wait_events(2 * n))[n:]
        finally:
            await s.close()

    assert {e.mode for e in theirs} == {"Message"} and {e.mode for e in ours} == {"PackedForward"}
    assert len(ours) == n
    for stream in ("stdout", "stderr"):
        a = [e for e in theirs if e.record["source"] == stream]
        b = [e for e in ours if e.record["source"] == stream]
        assert [(e.tag, e.time) for e in a] == [(e.tag, e.time) for e in b]
        strip = [{k: v for k, v in e.record.items() if k != "partial_id"} for e in a]
        assert strip == [{k: v for k, v in e.record.items() if k != "partial_id"} for e in b]
        for group in (a, b):  # partial ids: 64 hex, one per split line, shared by its chunks
            ids = [e.record["partial_id"] for e in group if "partial_id" in e.record]
            assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)
            assert len(set(ids)) == (1 if stream == "stdout" else 0)

    # what the case was about, seen in dockerd's own records
    sample = theirs[0]
    assert sample.record["container_id"] == cid and sample.record["container_name"] == "/" + container.name
    assert any(e.record["log"] == "caf\u00e9 \udcff raw" for e in theirs)  # invalid UTF-8 kept as raw bytes
    if case == "tag-labels-env-subsecond":
        assert sample.tag == "docker." + container.name
        assert (sample.record["app"], sample.record["tier"], sample.record["APP_ENV"]) == (
            "shop",
            "from-env",
            "prod",
        )
        assert all(not isinstance(e.time, int) for e in theirs)
    elif case == "defaults-regex-ack":
        assert sample.tag == cid[:12] and sample.record["app"] == "shop" and "tier" not in sample.record
        assert all(isinstance(e.time, int) for e in theirs) and rx.connections[0].chunks
    else:
        assert rx.address.startswith("unix://") and sample.tag == cid and "tier" not in sample.record
