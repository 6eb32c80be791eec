"""The syslog sink against a real rsyslogd (UDP, TCP, TCP+TLS, unix stream, unixgram), and against dockerd's
own syslog driver talking to the same rsyslogd.

rsyslog parses every message and writes its fields (pri, timestamp, hostname, syslogtag, app-name,
procid, msgid, msg and the raw message) as JSON: the tests assert them for every line and format, and
that what dockerd's driver sends parses to the same fields as what our sink sends.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.docker.models import Container
from agent.logs.record import LogRecord, Partial
from exporters.sinks.base import Outcome
from exporters.sinks.syslog import SyslogSink
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.rsyslog import Rsyslog, TlsFiles, epoch, free_port, make_certs, running

HOST = "dockwatch-test-host"
CHUNK = 16384
TRANSPORTS = ("udp", "tcp", "tcp+tls", "unix", "unixgram")
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")

# Lines without a newline inside (Docker's driver would send those raw, breaking LF framing).
LINES: list[tuple[str, bytes]] = [
    ("stdout", b"plain ascii line"),
    ("stderr", b"an error line"),
    ("stdout", b'html <b>&amp;</b> "quoted" back\\slash [brackets]: colon'),
    ("stdout", b"tab\there and a carriage\rreturn"),
    ("stdout", "utf-8 café 日本語 🐳".encode()),
    ("stderr", b"invalid \xff\xfe bytes"),
    ("stdout", b""),  # Docker's driver skips empty lines
]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory, certs: TlsFiles) -> Iterator[Rsyslog]:
    with running(tmp_path_factory.mktemp("rsyslog"), certs) as peer:
        yield peer


def address(peer: Rsyslog, transport: str) -> str:
    return {
        "udp": f"udp://127.0.0.1:{peer.udp}",
        "tcp": f"tcp://127.0.0.1:{peer.tcp}",
        "tcp+tls": f"tcp+tls://127.0.0.1:{peer.tls_port}",
        "unix": f"unix://{peer.unix}",
        "unixgram": f"unixgram://{peer.unixgram}",
    }[transport]


def sink_opts(peer: Rsyslog, transport: str, fmt: str, **extra: str) -> dict[str, str]:
    opts = {"syslog-address": address(peer, transport), "syslog-format": fmt, **extra}
    if transport == "tcp+tls":
        opts["syslog-tls-ca-cert"] = str(peer.tls.ca)
    return opts


def container(pid: int = 4242) -> Container:
    return Container(
        id=uuid.uuid4().hex * 2, name="web", image="busybox", image_id="", pid=pid, network_mode="default"
    )


async def send_all(sink: SyslogSink, records: list[LogRecord]) -> None:
    try:
        assert await sink.send(records) is Outcome.OK
    finally:
        await sink.close()


def by_app(app: str) -> Any:
    return lambda m: m["appname"] == app


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_docker_layout_fields(rsyslog: Rsyslog, transport: str, fmt: str) -> None:
    c = container()
    tag = c.id[:12]
    records = [LogRecord(c, s, 1_000_000_000, line) for s, line in LINES]
    now = time.time_ns()  # the sink's clock, fixed: Docker's layouts stamp the send time
    sink = SyslogSink(sink_opts(rsyslog, transport, fmt), hostname=HOST, clock=lambda: now)
    await send_all(sink, records)
    sent = [r for r in records if r.line]
    got = rsyslog.wait_messages(by_app(tag), len(sent))
    assert len(got) == len(sent)  # nothing extra (the empty line is not sent), nothing lost
    pid = str(os.getpid())
    for r, m in zip(sent, got, strict=True):  # one connection or socket: arrival order is send order
        line = r.line.decode("utf-8", "surrogateescape")
        sev = 3 if r.stream == "stderr" else 6
        assert (m["pri"], m["facility"], m["severity"]) == (str(24 + sev), "3", str(sev))
        # rsyslog saw exactly our bytes (it drops the trailing LF; the octet count is framing)
        ours = sink.formatter.message(r, now)
        assert ours is not None and m["rawmsg"] == ours.decode("utf-8", "surrogateescape").removesuffix("\n")
        if fmt == "rfc5424micro":
            assert round(epoch(m["timestamp"]) * 1e6) == now // 1000
        else:
            assert epoch(m["timestamp"]) == now // 1_000_000_000
        assert m["appname"] == tag and m["procid"] == pid
        if fmt.startswith("rfc5424"):
            assert (m["version"], m["hostname"], m["msgid"], m["msg"]) == ("1", HOST, tag, line)
        else:
            assert (m["version"], m["syslogtag"], m["msgid"], m["msg"]) == (
                "0",
                f"{tag}[{pid}]:",
                "-",
                " " + line,
            )
            if fmt == "rfc3164":
                assert m["hostname"] == HOST
            else:
                assert m["hostname"] != HOST  # no hostname on the wire: rsyslog fills in the sender's


@pytest.mark.parametrize(
    ("transport", "fmt"), [(t, f) for t in TRANSPORTS for f in ("rfc3164", "rfc5424micro")]
)
async def test_compat_off_fields(rsyslog: Rsyslog, transport: str, fmt: str) -> None:
    c = container(pid=31337)
    long_tag = f"web-{c.id[:8]}-" + "x" * 60  # unique per test: the rsyslog is shared
    # an hour ago, not now: the container's time must be what arrives (rfc3164 has no year: keep it recent)
    t0 = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000 + 123_456_789
    records = [
        LogRecord(c, "stdout", t0, b"first"),
        LogRecord(c, "stderr", t0 + 1_000_000_000, b"two\nlines in one message"),
        LogRecord(c, "stdout", t0 + 2_000_000_000, b""),
        LogRecord(c, "stdout", t0 + 3_000_000_000, b"a" * 100, Partial("0" * 64, 1, False)),
    ]
    sink = SyslogSink(
        sink_opts(rsyslog, transport, fmt, **{"syslog-compat": "false", "tag": long_tag}), hostname=HOST
    )
    await send_all(sink, records)
    app = long_tag[:48] if fmt == "rfc5424micro" else long_tag
    got = rsyslog.wait_messages(lambda m: m["appname"] == app, len(records))
    assert len(got) == len(records)
    for r, m in zip(records, got, strict=True):
        want = r.line.replace(b"\n", b"\\n").decode()
        assert m["procid"] == "31337"
        if fmt == "rfc5424micro":
            # the container's own time, to the microsecond; APP-NAME 48 and MSGID 32 characters
            assert round(epoch(m["timestamp"]) * 1_000_000) == r.time_ns // 1000
            assert (m["msg"], m["msgid"], m["hostname"]) == (want, long_tag[:32], HOST)
        else:
            assert epoch(m["timestamp"]) == r.time_ns // 1_000_000_000
            assert m["msg"] == " " + want and m["syslogtag"] == f"{long_tag}[31337]:"
    if transport in ("tcp", "tcp+tls", "unix"):
        assert b"\n" not in b"".join(sink.formatter.encode(records, 0))  # octet counting, no LF at all


# --- against dockerd's own syslog driver -----------------------------------------------------------------
def printf_script(lines: list[tuple[str, bytes]]) -> str:
    cmds = []
    for stream, data in lines:
        fmt = "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\{b:03o}" for b in data + b"\n")
        cmds.append(f"printf '{fmt}'" + (" >&2" if stream == "stderr" else ""))
    return "\n".join(cmds)


def records_like_dockerd(c: Container, lines: list[tuple[str, bytes]]) -> list[LogRecord]:
    """What dockerd's copier makes of the printed lines: 16 KiB chunks for long lines."""
    out = []
    for i, (stream, line) in enumerate(lines):
        if len(line) <= CHUNK:
            out.append(LogRecord(c, stream, time.time_ns(), line))
            continue
        chunks = [line[j : j + CHUNK] for j in range(0, len(line), CHUNK)]
        for n, chunk in enumerate(chunks, 1):
            out.append(LogRecord(c, stream, time.time_ns(), chunk, Partial(f"{i:064x}", n, n == len(chunks))))
    return out


def normalized(m: dict[str, Any]) -> tuple[str, ...]:
    """The fields that must match between dockerd and us: all but the timestamp and the pid."""
    raw = re.sub(r"^(<\d+>1 )\S+ (\S+ \S+ )\d+ ", r"\1TIME \2PID ", m["rawmsg"])  # TIMESTAMP, PROCID
    raw = re.sub(r"^(<\d+>)\w{3} [ \d]\d \d\d:\d\d:\d\d (.*?)\[\d+\]: ", r"\1TIME \2[PID]: ", raw)
    return (
        m["pri"],
        m["facility"],
        m["severity"],
        m["hostname"],
        re.sub(r"\[\d+\](:?)$", r"[PID]\1", m["syslogtag"]),
        m["appname"],
        m["msgid"],
        m["msg"],
        m["version"],
        m["input"],
        raw,
    )


DOCKER_CASES = [
    ("udp", ""),
    ("udp", "rfc3164"),
    ("udp", "rfc5424"),
    ("udp", "rfc5424micro"),
    ("tcp", ""),
    ("tcp", "rfc5424"),
    ("tcp+tls", "rfc5424micro"),  # dockerd's only octet-counted case
    ("tcp+tls", "rfc3164"),
    ("unixgram", "rfc5424"),
    ("unix", "rfc3164"),
]


@pytest.mark.docker
@pytest.mark.parametrize(("transport", "fmt"), DOCKER_CASES)
async def test_same_fields_as_dockerd(engine: Engine, rsyslog: Rsyslog, transport: str, fmt: str) -> None:
    lines = [*LINES, ("stdout", b"L" * (CHUNK + 500)), ("stderr", b"last line")]
    opts = sink_opts(rsyslog, transport, fmt, **{"syslog-facility": "local3"})
    start = time.time()
    cid = engine.run(
        "--log-driver",
        "syslog",
        *[a for k, v in opts.items() for a in ("--log-opt", f"{k}={v}")],
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        printf_script(lines),
    )
    c = Container.from_inspect(engine.inspect(cid))
    records = records_like_dockerd(c, lines)
    want = sum(1 for r in records if r.line)  # dockerd skips the empty line
    theirs = rsyslog.wait_messages(by_app(c.short_id), want, timeout=30)
    # Same rsyslog, same tag: ours are told apart by PROCID, which is dockerd's pid in dockerd's messages
    # and ours in ours (a difference by design, as is the timestamp: dockerd stamps the send time).
    docker_pid = theirs[0]["procid"]
    assert docker_pid != str(os.getpid())
    await send_all(SyslogSink(opts, hostname=socket.gethostname()), records)
    ours = rsyslog.wait_messages(lambda m: by_app(c.short_id)(m) and m["procid"] == str(os.getpid()), want)
    assert len(ours) == want and all(m["procid"] == docker_pid for m in theirs)
    # stdout and stderr are copied by separate goroutines: compare as multisets
    assert sorted(map(normalized, theirs)) == sorted(map(normalized, ours))
    # Both stamp the send time in local time (so the times differ, but both lie within the test).
    for m in theirs + ours:
        assert int(start) - 1 <= epoch(m["timestamp"]) <= time.time() + 1
    assert all("TIME" in n[-1] and ("PID" in n[-1]) for n in map(normalized, ours))


# --- dead peers -------------------------------------------------------------------------------------------
def one(line: bytes = b"hello") -> list[LogRecord]:
    return [LogRecord(container(), "stdout", time.time_ns(), line)]


async def test_tcp_dead_peer_is_retry_then_ok(tmp_path: Path) -> None:
    port = free_port()
    sink = SyslogSink({"syslog-address": f"tcp://127.0.0.1:{port}"}, hostname=HOST)
    assert await sink.send(one()) is Outcome.RETRY
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await got.put(await reader.readline())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        assert await sink.send(one(b"after start")) is Outcome.OK
        assert (await asyncio.wait_for(got.get(), 10)).endswith(b": after start\n")
    finally:
        await sink.close()
        server.close()
        await server.wait_closed()


async def test_udp_refused_is_retry_then_ok() -> None:
    port = free_port(socket.SOCK_DGRAM)
    sink = SyslogSink({"syslog-address": f"udp://127.0.0.1:{port}"}, hostname=HOST)
    # Loopback reports the ICMP port-unreachable at once: the refused datagram is a RETRY, not a loss.
    assert await sink.send(one()) is Outcome.RETRY
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", port))
    rx.settimeout(10)
    try:
        assert await sink.send(one(b"now heard")) is Outcome.OK
        assert rx.recv(65536).endswith(b": now heard\n")
    finally:
        rx.close()
        await sink.close()


@pytest.mark.parametrize("kind", ["unix", "unixgram"])
async def test_unix_socket_missing_is_retry_then_ok(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "sock"
    sink = SyslogSink({"syslog-address": f"{kind}://{path}"}, hostname=HOST)
    assert await sink.send(one()) is Outcome.RETRY
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if kind == "unix" else socket.SOCK_DGRAM)
    rx.bind(str(path))
    rx.settimeout(10)
    try:
        if kind == "unix":
            rx.listen(1)
        assert await sink.send(one(b"socket is here")) is Outcome.OK
        data = rx.accept()[0].recv(65536) if kind == "unix" else rx.recv(65536)
        assert data.endswith(b": socket is here\n")
    finally:
        rx.close()
        await sink.close()


@pytest.mark.parametrize("transport", ["tcp", "tcp+tls", "unix"])
async def test_receiver_restart(tmp_path: Path, certs: TlsFiles, transport: str) -> None:
    """rsyslogd stops: RETRY (never an exception); it starts again on the same address: OK, lines arrive."""
    peer = Rsyslog(tmp_path / "rs", certs)
    peer.start()
    try:
        c = container()
        sink = SyslogSink(sink_opts(peer, transport, "rfc5424"), hostname=HOST)
        assert await sink.send([LogRecord(c, "stdout", time.time_ns(), b"before")]) is Outcome.OK
        peer.wait_messages(by_app(c.short_id), 1)
        peer.stop()
        assert await sink.send([LogRecord(c, "stdout", time.time_ns(), b"while down")]) is Outcome.RETRY
        peer.start()
        assert await sink.send([LogRecord(c, "stdout", time.time_ns(), b"after")]) is Outcome.OK
        await sink.close()
        msgs = [m["msg"] for m in peer.wait_messages(by_app(c.short_id), 2)]
        assert msgs == ["before", "after"]
    finally:
        peer.stop()


async def test_tls_verification(rsyslog: Rsyslog, certs: TlsFiles) -> None:
    base = {"syslog-address": f"tcp+tls://127.0.0.1:{rsyslog.tls_port}", "syslog-format": "rfc5424"}
    wrong_ca = SyslogSink({**base, "syslog-tls-ca-cert": str(certs.other_ca)}, hostname=HOST)
    assert await wrong_ca.send(one()) is Outcome.RETRY  # the server's certificate is not trusted
    await wrong_ca.close()
    c = container()
    # skip-verify: the key's presence is enough, even with "false" (as in Docker); and a client pair loads
    skip = SyslogSink(
        {
            **base,
            "syslog-tls-ca-cert": str(certs.other_ca),
            "syslog-tls-skip-verify": "false",
            "syslog-tls-cert": str(certs.client_cert),
            "syslog-tls-key": str(certs.client_key),
        },
        hostname=HOST,
    )
    await send_all(skip, [LogRecord(c, "stdout", time.time_ns(), b"unverified but encrypted")])
    assert rsyslog.wait_messages(by_app(c.short_id), 1)[0]["msg"] == "unverified but encrypted"


async def test_tls_client_certificate(rsyslog: Rsyslog, certs: TlsFiles) -> None:
    """syslog-tls-cert/-key are presented: an input taking only certificates signed by the CA accepts us."""
    c = container()
    sink = SyslogSink(
        {
            "syslog-address": f"tcp+tls://127.0.0.1:{rsyslog.mtls_port}",
            "syslog-format": "rfc5424",
            "syslog-tls-ca-cert": str(certs.ca),
            "syslog-tls-cert": str(certs.client_cert),
            "syslog-tls-key": str(certs.client_key),
        },
        hostname=HOST,
    )
    await send_all(sink, [LogRecord(c, "stdout", time.time_ns(), b"mutual tls")])
    got = rsyslog.wait_messages(by_app(c.short_id), 1)[0]
    assert (got["msg"], got["input"]) == ("mutual tls", "mtls")
