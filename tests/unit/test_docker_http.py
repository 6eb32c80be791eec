"""agent/docker/http.py on the wire: fake servers written as raw bytes (so the test owns the framing)
on a unix socket, and on loopback tcp with TLS. Framing (Content-Length, chunked with extensions and
trailers, until EOF), limits, keep-alive reuse and when a connection must not be reused, the retry
of a stale pooled connection, promptness of streamed pieces, timeouts and cancellation.

tests/unit/test_docker_requests.py drives the same client against an independent server (aiohttp);
tests/integration against the real dockerd."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import struct
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from agent.docker.client import DockerClient, tls_context
from agent.docker.http import HEAD_LIMIT, ProtocolError, Response, read_response
from agent.docker.models import EngineError, NotFound
from agent.docker.stdcopy import LogFrame
from agent.docker.timefmt import parse_time
from tests.support.certs import PKI, make_pki
from tests.support.toolbox import until

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


def ok(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = "".join(f"{h}\r\n" for h in (f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers))
    return head.encode() + b"\r\n" + body


def chunked_head(*headers: str) -> bytes:
    lines = ("HTTP/1.1 200 OK", "Content-Type: application/json", "Transfer-Encoding: chunked", *headers)
    return "".join(f"{h}\r\n" for h in lines).encode() + b"\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Raw:
    """A unix-socket server: each connection goes to `serve`, which writes raw bytes."""

    def __init__(self, serve: Callable[[Raw, Reader, Writer], Awaitable[None]]) -> None:
        self.serve = serve
        self.conns = 0
        self.requests: list[bytes] = []  # each request's head, as received
        self.client_closed = 0  # connections on which the server then read EOF
        self.release = asyncio.Event()  # what a holding handler waits for
        self.path = ""

    async def _handle(self, reader: Reader, writer: Writer) -> None:
        self.conns += 1
        try:
            await self.serve(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def request(self, reader: Reader) -> bytes | None:
        """The next request's head, or None when the client closed the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.client_closed += 1
            return None
        self.requests.append(head)
        return head

    async def until_client_closes(self, reader: Reader) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 16):
                pass
        self.client_closed += 1


def answer_each(*responses: bytes) -> Callable[[Raw, Reader, Writer], Awaitable[None]]:
    """Keep-alive server: the n-th request on a connection gets responses[n] (the last repeats)."""

    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        n = 0
        while await srv.request(reader) is not None:
            writer.write(responses[min(n, len(responses) - 1)])
            await writer.drain()
            n += 1

    return serve


@pytest.fixture
async def sockdir() -> AsyncIterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="dw-http-"))  # a unix socket path must stay short
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.asynccontextmanager
async def serving(
    sockdir: Path, serve: Callable[[Raw, Reader, Writer], Awaitable[None]], timeout: float = 5.0
) -> AsyncIterator[tuple[Raw, DockerClient]]:
    srv = Raw(serve)
    srv.path = str(sockdir / "e.sock")
    server = await asyncio.start_unix_server(srv._handle, srv.path)
    client = DockerClient(f"unix://{srv.path}", timeout=timeout)
    try:
        yield srv, client
    finally:
        await client.close()
        srv.release.set()
        server.close()
        await server.wait_closed()


def first_line(head: bytes) -> str:
    return head.split(b"\r\n", 1)[0].decode()


# --- framing, from a StreamReader fed piece by piece -------------------------------------------


async def body_fed_in(pieces: list[bytes]) -> tuple[Response, bytes]:
    """Parse a response while its bytes arrive in `pieces`, giving the reader a turn after each."""
    reader = asyncio.StreamReader()

    async def feed() -> None:
        for p in pieces:
            reader.feed_data(p)
            for _ in range(3):
                await asyncio.sleep(0)  # a turn for the parser: not a wait for time to pass
        reader.feed_eof()

    feeder = asyncio.create_task(feed())
    resp = await read_response(reader)
    body = await resp.read()
    await feeder
    return resp, body


CHUNKED = (
    chunked_head("Trailer: Expires")
    + b"4;name=value\r\nWiki\r\n"  # a chunk extension
    + b"5\r\npedia\r\n"
    + b'E ; quoted="a;b"\r\n in\r\n\r\nchunks.\r\n'
    + b"0\r\nExpires: never\r\nX-Other: 1\r\n\r\n"  # trailers
)


@pytest.mark.parametrize("split", ["whole", "bytewise", "every-3", "every-7"])
async def test_chunked_with_extensions_and_trailers_at_any_boundary(split: str) -> None:
    step = {"whole": len(CHUNKED), "bytewise": 1, "every-3": 3, "every-7": 7}[split]
    pieces = [CHUNKED[i : i + step] for i in range(0, len(CHUNKED), step)]
    resp, body = await body_fed_in(pieces)
    assert body == b"Wikipedia in\r\n\r\nchunks."
    assert resp.status == 200 and resp.headers["transfer-encoding"] == "chunked"
    assert resp.reusable  # read to its last chunk and trailers


async def test_content_length_until_eof_and_no_body_statuses() -> None:
    resp, body = await body_fed_in([ok(b'{"a": 1}')[:20], ok(b'{"a": 1}')[20:]])
    assert (body, resp.reusable) == (b'{"a": 1}', True)
    resp, body = await body_fed_in([b"HTTP/1.1 200 OK\r\n\r\nall until", b" the end"])
    assert (body, resp.reusable) == (b"all until the end", False)  # nothing left to reuse
    resp, body = await body_fed_in([b"HTTP/1.0 400 Bad Request\r\n\r\nplain http to a TLS port\n"])
    assert (resp.status, body) == (400, b"plain http to a TLS port\n")
    for status in ("204 No Content", "304 Not Modified"):
        resp, body = await body_fed_in([f"HTTP/1.1 {status}\r\nX: y\r\n\r\n".encode()])
        assert (body, resp.reusable) == (b"", True)
    resp, body = await body_fed_in([b"HTTP/1.1 100 Continue\r\n\r\n", ok(b"after")])
    assert (resp.status, body) == (200, b"after")
    resp, _ = await body_fed_in([ok(b"x", "Connection: close")])
    assert not resp.reusable
    resp, _ = await body_fed_in([b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"])
    assert not resp.reusable  # HTTP/1.0 without keep-alive


@pytest.mark.parametrize(
    ("wire", "says"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "7 bytes before the end of the body"),
        (chunked_head() + b"5\r\nab", "closed inside a chunk"),
        (chunked_head() + b"5\r\nabcde\r\n", "closed in a chunk size line"),
        (chunked_head() + b"zz\r\nabc\r\n", "bad chunk size"),
        (chunked_head() + b"-1\r\n", "bad chunk size"),
        (chunked_head() + b"3\r\nabcXY\r\n0\r\n\r\n", "not followed by CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported Transfer-Encoding"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "closed in a response head"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * (HEAD_LIMIT + 10) + b"\r\n\r\n", "longer than"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Many: aaaaaaaaaa\r\n" * 4000 + b"\r\n", "head larger than"),
    ],
)
async def test_broken_responses_are_protocol_errors(wire: bytes, says: str) -> None:
    reader = asyncio.StreamReader(limit=HEAD_LIMIT)
    reader.feed_data(wire)
    reader.feed_eof()
    with pytest.raises(ProtocolError, match=says):
        resp = await read_response(reader)
        await resp.read()


async def test_a_chunk_is_yielded_before_the_next_arrives() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(chunked_head() + b"400\r\n" + b"x" * 100)  # a 1 KiB chunk, 100 bytes of it here
    resp = await read_response(reader)
    pieces = resp.iter_any()
    assert await anext(pieces) == b"x" * 100  # not held back until the chunk is complete
    reader.feed_data(b"y" * 924 + b"\r\n" + chunk(b"next"))
    assert await anext(pieces) == b"y" * 924
    assert await anext(pieces) == b"next"
    reader.feed_data(b"0\r\n\r\n")
    assert [p async for p in pieces] == []
    assert resp.reusable


# --- the client on a socket ----------------------------------------------------------------------


async def test_requests_reuse_one_connection_and_say_who_they_are(sockdir: Path) -> None:
    body = json.dumps([{"Id": "c1", "State": "running"}]).encode()
    async with serving(sockdir, answer_each(ok(body, "Content-Type: application/json"))) as (srv, client):
        assert await client.container_states() == {"c1": "running"}
        assert await client.running_container_ids() == ["c1"]
        assert srv.conns == 1 and client._pool.idle == 1
    assert first_line(srv.requests[0]) == "GET /containers/json?all=1 HTTP/1.1"
    assert first_line(srv.requests[1]) == "GET /containers/json HTTP/1.1"
    headers = srv.requests[0].decode().split("\r\n")
    assert "Host: docker" in headers and "User-Agent: dockwatch" in headers


async def test_query_encoding_of_since_and_ids(sockdir: Path) -> None:
    async with serving(sockdir, answer_each(ok(b""))) as (srv, client):
        client.api_version = "1.45"
        with pytest.raises(EngineError, match="closed the stream"):
            async for _ in client.events(since="1700000000.000000001"):
                pass
        async for _ in client.logs("a b/c", since_ns=1_700_000_000_000_000_001, follow=False):
            pass
    assert first_line(srv.requests[0]) == "GET /v1.45/events?since=1700000000.000000001 HTTP/1.1"
    assert first_line(srv.requests[1]) == (
        "GET /v1.45/containers/a%20b/c/logs?follow=0&stdout=1&stderr=1&timestamps=1"
        "&since=1700000000.000000001 HTTP/1.1"
    )


async def test_error_statuses_leave_the_connection_reusable(sockdir: Path) -> None:
    gone = ok(b'{"message": "No such container: x"}', status="404 Not Found")
    busy = ok(b'{"message": "busy"}', status="500 Internal Server Error")
    async with serving(sockdir, answer_each(gone, busy, ok(b"{}"))) as (srv, client):
        with pytest.raises(NotFound, match="No such container: x"):
            await client.inspect("x")
        with pytest.raises(EngineError) as err:
            await client.info()
        assert (str(err.value), err.value.status) == ("GET /info: 500 busy", 500)
        assert await client.get_json("/x") == {}
        assert srv.conns == 1


async def test_truncated_body_and_read_until_eof(sockdir: Path) -> None:
    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        head = await srv.request(reader)
        if head is not None and b"/short" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}")
        else:
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"until": "eof"}')
        await writer.drain()  # then the connection closes

    async with serving(sockdir, serve) as (_srv, client):
        with pytest.raises(EngineError, match=r"^GET /short: ProtocolError: connection closed 98 bytes"):
            await client.get_json("/short")
        assert await client.get_json("/eof") == {"until": "eof"}
        assert client._pool.idle == 0  # a body ended by EOF leaves no connection to reuse


async def test_a_stale_pooled_connection_is_retried_on_a_fresh_one(sockdir: Path) -> None:
    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        if await srv.request(reader) is None:
            return
        writer.write(ok(b'{"n": 1}'))  # keep-alive, as far as the client knows
        await writer.drain()
        if srv.conns == 1:
            await srv.request(reader)  # the next request arrives: close without an answer
            return
        while await srv.request(reader) is not None:
            writer.write(ok(b'{"n": 2}'))
            await writer.drain()

    async with serving(sockdir, serve) as (srv, client):
        assert await client.get_json("/a") == {"n": 1}
        assert client._pool.idle == 1
        assert await client.get_json("/b") == {"n": 1}  # retried: the first answer of connection 2
        assert srv.conns == 2 and [first_line(r) for r in srv.requests] == [
            "GET /a HTTP/1.1",
            "GET /b HTTP/1.1",
            "GET /b HTTP/1.1",
        ]


async def test_an_idle_connection_the_server_closed_is_not_used(sockdir: Path) -> None:
    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        if await srv.request(reader) is not None:
            writer.write(ok(b"{}"))  # and close at once: an engine's idle timeout
            await writer.drain()

    async with serving(sockdir, serve) as (srv, client):
        for _ in range(3):
            assert await client.get_json("/x") == {}
        assert srv.conns == 3


async def test_a_fresh_connection_closed_without_an_answer_is_an_error(sockdir: Path) -> None:
    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        await srv.request(reader)

    async with serving(sockdir, serve) as (srv, client):
        with pytest.raises(EngineError, match="connection closed with no response"):
            await client.info()
        assert srv.conns == 1  # no retry of a connection that was never reused


async def test_connection_close_and_an_abandoned_stream_are_not_reused(sockdir: Path) -> None:
    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        head = await srv.request(reader)
        if head is None:
            return
        if b"/close" in head:
            writer.write(ok(b"{}", "Connection: close"))  # and the server keeps it open anyway
        else:
            writer.write(chunked_head() + chunk(b"one piece, and more to come"))
        await writer.drain()
        await srv.until_client_closes(reader)

    async with serving(sockdir, serve) as (srv, client):
        assert await client.get_json("/close") == {}
        assert client._pool.idle == 0
        async with contextlib.aclosing(client.stream("/stream")) as pieces:
            async for _ in pieces:
                break  # abandoned midway
        assert client._pool.idle == 0
        await until(lambda: srv.client_closed == 2, what="both connections closed by the client")
        assert await client.get_json("/close") == {}
        assert srv.conns == 3


async def test_events_arrive_while_the_engine_holds_the_stream_open(sockdir: Path) -> None:
    def event(action: str) -> bytes:
        return json.dumps({"Type": "container", "Action": action, "Actor": {"ID": "c1"}}).encode() + b"\n"

    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        await srv.request(reader)
        writer.write(chunked_head() + chunk(event("create")))
        await writer.drain()
        await srv.release.wait()  # nothing more until the test has seen the first event
        writer.write(chunk(event("start")) + b"0\r\n\r\n")
        await writer.drain()
        await srv.until_client_closes(reader)

    async with serving(sockdir, serve) as (srv, client):
        events = client.events()
        first = await asyncio.wait_for(anext(events), 10)  # a deadline: it must not wait for more
        assert (first.action, first.actor_id) == ("create", "c1")
        srv.release.set()
        assert (await anext(events)).action == "start"
        with pytest.raises(EngineError, match="closed the stream"):
            await anext(events)
        assert client._pool.idle == 1  # the stream ended with its last chunk: reusable


async def test_log_frames_arrive_while_the_engine_holds_the_stream_open(sockdir: Path) -> None:
    t = "2026-11-23T08:19:30.000000001Z"
    frame = struct.pack(">BxxxI", 1, len(t) + 5) + t.encode() + b" one\n"

    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        await srv.request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunk(frame[:5])  # a frame split across chunks
        )
        await writer.drain()
        await srv.release.wait()
        writer.write(chunk(frame[5:]))  # the frame complete; the stream stays open
        await writer.drain()
        await srv.until_client_closes(reader)

    async with serving(sockdir, serve) as (srv, client):
        logs = client.logs("c1")
        assert isinstance(logs, AsyncGenerator)
        task = asyncio.ensure_future(anext(logs))
        await until(lambda: srv.requests, what="the logs request")
        srv.release.set()
        assert await asyncio.wait_for(task, 10) == [LogFrame("stdout", parse_time(t), b"one", True)]
        await logs.aclose()
        await until(lambda: srv.client_closed == 1, what="the abandoned logs connection closed")


async def hold(srv: Raw, reader: Reader, writer: Writer) -> None:
    """Read the request and never answer; note when the client gives up."""
    await srv.request(reader)
    await srv.until_client_closes(reader)


async def test_a_request_that_gets_no_answer_times_out(sockdir: Path) -> None:
    async with serving(sockdir, hold, timeout=0.2) as (srv, client):
        with pytest.raises(EngineError, match=r"^GET /info: TimeoutError"):
            await client.info()
        # The head of a stream is bounded too (its body is not).
        with pytest.raises(EngineError, match=r"^GET /events: TimeoutError"):
            async for _ in client.events():
                pass
        await until(lambda: srv.client_closed == 2, what="both connections closed by the client")
        assert client._pool.idle == 0


async def test_a_slow_body_is_bounded_by_the_whole_request_timeout(sockdir: Path) -> None:
    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        await srv.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{")  # and the rest never
        await writer.drain()
        await srv.until_client_closes(reader)

    async with serving(sockdir, serve, timeout=0.2) as (_srv, client):
        with pytest.raises(EngineError, match=r"^GET /info: TimeoutError"):
            await client.info()
        assert client._pool.idle == 0


async def test_a_cancelled_request_closes_its_connection(sockdir: Path) -> None:
    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        head = await srv.request(reader)
        if head is not None and b"/events" in head:
            writer.write(chunked_head() + chunk(b'{"Type": "container", "Action": "die"}\n'))
            await writer.drain()
        await srv.until_client_closes(reader)

    async with serving(sockdir, serve) as (srv, client):
        waiting = asyncio.create_task(client.info())
        await until(lambda: srv.requests, what="the /info request")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        seen = asyncio.Event()

        async def follow() -> None:
            async for _ in client.events():
                seen.set()

        streaming = asyncio.create_task(follow())
        await asyncio.wait_for(seen.wait(), 10)
        streaming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await streaming
        assert client._pool.idle == 0 and not client._pool._busy
        await until(lambda: srv.client_closed == 2, what="both connections closed by the client")


async def test_idle_connections_are_bounded(sockdir: Path) -> None:
    n = 10

    async def serve(srv: Raw, reader: Reader, writer: Writer) -> None:
        while await srv.request(reader) is not None:
            if len(srv.requests) >= n:
                srv.release.set()
            await srv.release.wait()  # all n in flight at once: n connections
            writer.write(ok(b"{}"))
            await writer.drain()

    async with serving(sockdir, serve) as (srv, client):
        assert await asyncio.gather(*(client.get_json("/x") for _ in range(n))) == [{}] * n
        assert srv.conns == n and client._pool.idle == 8


async def test_close_closes_the_connections_in_use(sockdir: Path) -> None:
    async with serving(sockdir, hold) as (srv, client):
        task = asyncio.create_task(client.info())
        await until(lambda: srv.requests, what="the request")
        await client.close()
        with pytest.raises(EngineError, match="closed with no response"):
            await task
        assert await until(lambda: srv.client_closed == 1, what="the connection closed")


# --- tcp, plain and with TLS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def cert_dir(d: Path, pki: PKI, ca: Path | None = None) -> str:
    d.mkdir()
    (d / "ca.pem").write_bytes((ca or pki.ca.cert).read_bytes())
    (d / "cert.pem").write_bytes(pki.client.cert.read_bytes())
    (d / "key.pem").write_bytes(pki.client.key.read_bytes())
    return str(d)


@contextlib.asynccontextmanager
async def tcp_server(tls: ssl.SSLContext | None) -> AsyncIterator[tuple[Raw, int]]:
    srv = Raw(answer_each(ok(b'{"ApiVersion": "1.44", "Version": "26.1.0"}')))
    server = await asyncio.start_server(srv._handle, "127.0.0.1", 0, ssl=tls)
    try:
        yield srv, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def server_tls(pki: PKI) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server.cert, pki.server.key)
    ctx.load_verify_locations(pki.ca.cert)
    ctx.verify_mode = ssl.CERT_REQUIRED  # as dockerd --tlsverify: the client's certificate too
    return ctx


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
async def test_tls_over_tcp(pki: PKI, tmp_path: Path, name: str) -> None:
    async with tcp_server(server_tls(pki)) as (srv, port):
        async with DockerClient(f"tcp://{name}:{port}", tls=tls_context(cert_dir(tmp_path / "c", pki))) as c:
            assert (await c.negotiate()).api_version == "1.44"
            assert (await c.negotiate()).version == "26.1.0"
        assert srv.conns == 1
    assert f"Host: {name}:{port}" in srv.requests[0].decode().split("\r\n")


async def test_tls_refuses_an_engine_it_cannot_verify(pki: PKI, tmp_path: Path) -> None:
    tls = tls_context(cert_dir(tmp_path / "c", pki, ca=pki.other_ca.cert))
    async with (
        tcp_server(server_tls(pki)) as (srv, port),
        DockerClient(f"tcp://127.0.0.1:{port}", tls=tls) as c,
    ):
        with pytest.raises(EngineError) as err:
            await c.negotiate()
    assert err.value.unreachable and "certificate verify failed" in str(err.value)
    assert not srv.requests


async def test_plain_tcp(tmp_path: Path) -> None:
    async with tcp_server(None) as (srv, port), DockerClient(f"tcp://127.0.0.1:{port}") as c:
        assert (await c.negotiate()).api_version == "1.44"
    assert f"Host: 127.0.0.1:{port}" in srv.requests[0].decode().split("\r\n")
    async with DockerClient(f"tcp://127.0.0.1:{port}") as c:  # the server is gone: refused
        with pytest.raises(EngineError) as err:
            await c.info()
    assert err.value.unreachable and "is the engine listening there?" in str(err.value)
