"""exporters/prometheus/httpd.py: the agent's own HTTP/1.1 server, against raw sockets (we control
every byte and can misbehave as a client), aiohttp's client and Python's ssl as independent peers.
The real agent behind it is served to curl and Prometheus in tests/integration (test_web_config.py,
test_exposition.py)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from exporters.prometheus import httpd
from exporters.prometheus.httpd import Request, Response, Server
from exporters.prometheus.pieces import SLICE, slices
from tests.support.certs import PKI, make_pki
from tests.support.toolbox import until

Handler = Callable[[Request], Awaitable[Response]]
Serve = Callable[..., Awaitable[tuple[Server, int]]]


async def hello(request: Request) -> Response:
    body = f"{request.method} {request.path} {request.query_all('name[]')}\n"
    return Response.text(body)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[Server] = []

    async def start(handler: Handler = hello, **opts: object) -> tuple[Server, int]:
        server = Server(handler, **opts)  # type: ignore[arg-type]
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server, server.addresses[0][1]

    yield start
    for s in servers:
        await s.close(grace=1)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response off a raw connection (Content-Length framed, as the server always answers)."""
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def exchange(port: int, raw: bytes, responses: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        return [await read_response(reader) for _ in range(responses)]
    finally:
        writer.close()


# --- parsing -----------------------------------------------------------------------------------------------
def test_request_line_forms() -> None:
    assert httpd.parse_request_line(b"GET /metrics?name[]=a&name%5B%5D=b&x= HTTP/1.1\r\n") == (
        "GET",
        "/metrics",
        [("name[]", "a"), ("name[]", "b"), ("x", "")],
        (1, 1),
    )
    # absolute-form (what a client talking through a proxy sends) and a percent-encoded path
    assert httpd.parse_request_line(b"GET http://h:9105/m%65trics?a=1 HTTP/1.0\r\n")[:2] == (
        "GET",
        "/metrics",
    )
    for bad, status in [
        (b"GET /metrics\r\n", 400),
        (b"GET  /metrics HTTP/1.1\r\n", 400),
        (b"GET /me trics HTTP/1.1\r\n", 400),
        (b"G(T /metrics HTTP/1.1\r\n", 400),
        (b"GET metrics HTTP/1.1\r\n", 400),
        (b"GET /metrics HTTP/1.x\r\n", 400),
        (b"PRI * HTTP/2.0\r\n", 505),
        (b"GET /\x01 HTTP/1.1\r\n", 400),
    ]:
        with pytest.raises(httpd._Refused) as err:
            httpd.parse_request_line(bad)
        assert err.value.status == status, bad


def test_header_lines() -> None:
    h: dict[str, str] = {}
    httpd.parse_header_line(b"Accept-Encoding: gzip \r\n", h)
    httpd.parse_header_line(b"accept-encoding:br\r\n", h)
    httpd.parse_header_line(b"Content-Length: 3\r\n", h)
    httpd.parse_header_line(b"Content-Length: 3\r\n", h)  # the same twice is allowed
    assert h == {"accept-encoding": "gzip, br", "content-length": "3"}
    for bad in [b" folded\r\n", b"Host : x\r\n", b"no colon\r\n", b": x\r\n", b"Content-Length: 4\r\n"]:
        with pytest.raises(httpd._Refused):
            httpd.parse_header_line(bad, h)


def test_keep_alive_by_version() -> None:
    assert Request("GET", "/", [], {}, (1, 1)).keep_alive
    assert not Request("GET", "/", [], {"connection": "Close"}, (1, 1)).keep_alive
    assert not Request("GET", "/", [], {}, (1, 0)).keep_alive
    assert Request("GET", "/", [], {"connection": "keep-alive"}, (1, 0)).keep_alive


def test_http_date_is_imf_fixdate() -> None:
    assert httpd.http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110's example


# --- one connection --------------------------------------------------------------------------------------
async def test_pipelined_requests_are_answered_in_order_on_one_connection(serve: Serve) -> None:
    _, port = await serve()
    got = await exchange(
        port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b?name[]=c HTTP/1.1\r\nHost: x\r\n\r\n", 2
    )
    assert [b for _, _, b in got] == [b"GET /a []\n", b"GET /b ['c']\n"]
    assert all(s == 200 and "connection" not in h and h["date"].endswith(" GMT") for s, h, _ in got)


async def test_http_1_0_closes_unless_asked_to_keep_alive(serve: Serve) -> None:
    _, port = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    _, headers, _ = await read_response(reader)
    assert headers["connection"] == "close"
    assert await reader.read() == b""  # and closes
    writer.close()
    got = await exchange(port, b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n", 2)
    assert got[0][1]["connection"] == "keep-alive" and got[1][2] == b"GET /2 []\n"


async def test_head_has_the_length_of_get_and_no_body(serve: Serve) -> None:
    _, port = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HEAD /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n")
    status = int((await reader.readline()).split()[1])
    head = b""
    while (line := await reader.readline()) != b"\r\n":
        head += line
    assert status == 200 and b"Content-Length: 11\r\n" in head  # len("HEAD /x []\n")
    # The next bytes are the second response: the HEAD answer carried no body.
    assert (await read_response(reader))[2] == b"GET /y []\n"
    writer.close()


async def test_a_small_body_is_dropped_and_the_connection_goes_on(serve: Serve) -> None:
    _, port = await serve()
    got = await exchange(port, b"GET /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /GET /b HTTP/1.1\r\n\r\n", 2)
    assert [b for _, _, b in got] == [b"GET /a []\n", b"GET /b []\n"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"GET /a HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413),
        (b"GET /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n", 431),
        (b"GET /a HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (b"GET http://[::1/metrics HTTP/1.1\r\n\r\n", 400),  # urlsplit raises on it
        (b"GET /a HTTP/1.1\r\nContent-Length: " + b"9" * 4400 + b"\r\n\r\n", 413),  # int() would raise
    ],
)
async def test_a_refused_request_is_answered_then_the_connection_closed(
    serve: Serve, raw: bytes, status: int
) -> None:
    """Nothing after a refused head is read as a request: the smuggled GET gets no answer."""
    _, port = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw + b"GET /smuggled HTTP/1.1\r\n\r\n")
    got, headers, _ = await read_response(reader)
    assert got == status and headers["connection"] == "close"
    assert await reader.read() == b""
    writer.close()


async def test_a_failing_handler_is_a_500_and_the_connection_goes_on(serve: Serve) -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("made to fail by the test")
        return await hello(request)

    _, port = await serve(handler)
    got = await exchange(port, b"GET /boom HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n", 2)
    assert [s for s, _, _ in got] == [500, 200]


async def test_a_header_that_would_split_the_response_is_a_500_without_it(serve: Serve) -> None:
    async def handler(request: Request) -> Response:
        return Response(200, [b"x"], {"X": "a\r\nSet-Cookie: y"} if request.path == "/bad" else {})

    _, port = await serve(handler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /bad HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert (status, headers["connection"], "set-cookie" in headers) == (500, "close", False)
    assert await reader.read() == b""
    writer.close()


# --- bodies, slow and vanishing clients ------------------------------------------------------------------
async def test_a_big_body_is_written_in_slices_of_its_pieces_never_joined(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    parts: list[bytes | memoryview] = [big, memoryview(big)[5:300_000], b"# EOF\n"]
    writes: list[int] = []
    real = asyncio.StreamWriter.write

    def record(self: asyncio.StreamWriter, data: bytes | memoryview) -> None:
        writes.append(len(data))
        real(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", record)

    async def handler(request: Request) -> Response:
        return Response(200, parts, {"Content-Type": "text/plain"})

    _, port = await serve(handler)
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/") as resp:
        assert resp.headers["Content-Length"] == str(sum(len(p) for p in parts))
        assert "Transfer-Encoding" not in resp.headers
        assert await resp.read() == b"".join(parts)
    body_writes = writes[1:]  # the first is the head (the client's own writes were not on a StreamWriter)
    assert max(body_writes) <= SLICE and len(body_writes) == 4 + 2 + 1


async def test_a_scraper_that_hangs_up_mid_body_leaves_the_server_serving(serve: Serve) -> None:
    parts: list[bytes | memoryview] = [b"x" * (SLICE * 40), b"# EOF\n"]

    async def handler(request: Request) -> Response:
        return Response(200, parts, {"Content-Type": "text/plain"})

    server, port = await serve(handler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readexactly(16)).startswith(b"HTTP/1.1 200")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    writer.close()
    await until(lambda: not server._conns, what="the reset connection dropped")
    got = await exchange(port, b"GET / HTTP/1.1\r\n\r\n")
    assert got[0][0] == 200 and len(got[0][2]) == SLICE * 40 + 6


async def test_a_client_that_stops_reading_is_cut_off(serve: Serve) -> None:
    parts: list[bytes | memoryview] = [b"x" * (SLICE * 200)]  # 50 MiB: more than socket buffers hold

    async def handler(request: Request) -> Response:
        return Response(200, parts)

    server, port = await serve(handler, write_timeout=0.2)
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        await until(lambda: server._conns, what="the request being served")
        await until(lambda: not server._conns, timeout=30, what="the stalled client cut off")
    finally:
        sock.close()


async def test_close_is_bounded_by_its_grace_with_a_client_that_stopped_reading(serve: Serve) -> None:
    async def handler(request: Request) -> Response:
        return Response(200, [b"x" * (SLICE * 200)])

    server, port = await serve(handler, write_timeout=600)
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        await until(
            lambda: server._conns and not any(server._conns.values()), what="the answer being written"
        )
        await asyncio.wait_for(server.close(grace=0.1), 30)  # not the 600 s write timeout
        assert not server._conns
    finally:
        sock.close()


async def test_idle_and_slow_connections_are_closed(serve: Serve) -> None:
    _, port = await serve(keepalive=0.2, head_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    await read_response(reader)
    assert await asyncio.wait_for(reader.read(), 30) == b""  # idle after an answer: closed
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()


async def test_close_drops_idle_connections_and_finishes_answers_in_progress(serve: Serve) -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            await release.wait()
        return await hello(request)

    server, port = await serve(handler)
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
    idle_w.write(b"GET / HTTP/1.1\r\n\r\n")
    await read_response(idle_r)
    busy_r, busy_w = await asyncio.open_connection("127.0.0.1", port)
    busy_w.write(b"GET /slow HTTP/1.1\r\n\r\n")
    await until(lambda: len(server._conns) == 2 and not all(server._conns.values()), what="both connected")
    closing = asyncio.create_task(server.close(grace=30))
    assert await asyncio.wait_for(idle_r.read(), 30) == b""
    assert not closing.done()
    release.set()
    status, headers, body = await read_response(busy_r)
    assert (status, headers["connection"], body) == (200, "close", b"GET /slow []\n")
    await asyncio.wait_for(closing, 30)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    idle_w.close()
    busy_w.close()


async def test_at_the_connection_limit_a_new_one_closes_the_one_idle_the_longest(serve: Serve) -> None:
    """Idle keep-alive connections cannot lock a scraper out: the one idle the longest is closed
    (a plain FIN, after its answers) and the new one served."""
    server, port = await serve(max_connections=2)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for r, w in reversed(held):  # the second one (connected last) is answered first: idle the longest
        w.write(b"GET / HTTP/1.1\r\n\r\n")
        assert (await read_response(r))[0] == 200
    assert (await exchange(port, b"GET /new HTTP/1.1\r\nConnection: close\r\n\r\n"))[0][0] == 200
    assert await asyncio.wait_for(held[1][0].read(), 30) == b""  # closed for it
    r, w = held[0]
    w.write(b"GET / HTTP/1.1\r\n\r\n")  # the other one goes on
    assert (await read_response(r))[0] == 200
    assert server.refused == 0
    for _, w in held:
        w.close()


async def test_a_connection_whose_answer_is_sent_does_not_hold_its_place(serve: Serve) -> None:
    """Once a response is handed over, its connection is between requests: the client may have it
    all and be back on a new connection before the server's task ran again (seen in CI: the
    readiness check's connection got the next one a 503 at a limit of 1)."""

    async def big(request: Request) -> Response:
        return Response(200, [b"x" * (3 * SLICE)], {"Content-Type": "text/plain"})

    server, port = await serve(big, max_connections=1)
    for _ in range(20):
        ((status, _, body),) = await exchange(port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert (status, len(body)) == (200, 3 * SLICE)
    assert server.refused == 0


async def test_when_every_connection_is_in_a_request_a_new_one_is_a_503(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporters.prometheus.httpd")
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            await release.wait()
        return await hello(request)

    server, port = await serve(handler, max_connections=2)
    busy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for _, w in busy:
        w.write(b"GET /slow HTTP/1.1\r\n\r\n")
    await until(lambda: len(server._conns) == 2 and not any(server._conns.values()), what="both in a request")
    for _ in range(3):  # a request sent at once, as urllib does: still the 503, not a reset
        status, headers, body = (await exchange(port, b"GET / HTTP/1.1\r\n\r\n"))[0]
        assert (status, headers["connection"], body) == (503, "close", b"503: too many connections\n")
    assert server.refused == 3
    assert len([r for r in caplog.records if "web.max-connections" in r.getMessage()]) == 1
    release.set()
    for r, w in busy:
        assert (await read_response(r))[0] == 200
        w.close()
    await until(lambda: not server._conns, what="both gone")
    assert (await exchange(port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))[0][0] == 200
    assert any("serving new connections again" in r.getMessage() for r in caplog.records)


# --- peers -------------------------------------------------------------------------------------------------
async def test_aiohttp_client_gets_gzip_and_keeps_its_connection(serve: Serve) -> None:
    page = b"metric 1\n" * 10_000

    async def handler(request: Request) -> Response:
        gz = "gzip" in request.header("accept-encoding")
        headers = {"Content-Type": "text/plain", **({"Content-Encoding": "gzip"} if gz else {})}
        return Response(200, [gzip.compress(page) if gz else page], headers)

    server, port = await serve(handler)
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200 and await resp.read() == page  # aiohttp asks gzip, inflates
        assert len(server._conns) == 1  # one kept-alive connection for the three


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def test_tls_with_a_verified_client_certificate(serve: Serve, pki: PKI, tmp_path: Path) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server.cert, pki.server.key)
    ctx.load_verify_locations(pki.ca.cert)
    ctx.verify_mode = ssl.CERT_REQUIRED

    async def handler(request: Request) -> Response:
        sans = [v for _, v in (request.peercert or {}).get("subjectAltName", ())]
        return Response.text(f"{sans}\n")

    _, port = await serve(handler, ssl_context=ctx)
    client = ssl.create_default_context(cafile=str(pki.ca.cert))
    client.load_cert_chain(pki.client.cert, pki.client.key)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="localhost")
    writer.write(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    first, second = await read_response(reader), await read_response(reader)
    assert first[0] == second[0] == 200 and first[2] == b"['prometheus.test']\n"
    writer.close()
    # Without a certificate the handshake fails; the server goes on serving.
    bare = ssl.create_default_context(cafile=str(pki.ca.cert))
    try:  # TLS 1.3: the client's handshake ends before the server checks; the refusal comes after
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=bare, server_hostname="localhost")
        w.write(b"GET / HTTP/1.1\r\n\r\n")
        answer = await asyncio.wait_for(r.read(), 30)
        w.close()
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="localhost")
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    writer.close()


async def test_a_page_of_many_slices_over_tls(serve: Serve, pki: PKI) -> None:
    """The TLS transport pauses writing at a buffer >= its high mark: with the mark at 0 the first
    slice was the last, and the page was cut at 256 KiB after the write timeout."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server.cert, pki.server.key)
    page = [bytes([i]) * 100_000 for i in range(40)]  # 4 MB in 40 pieces

    async def handler(request: Request) -> Response:
        return Response(200, page)

    _, port = await serve(handler, ssl_context=ctx, write_timeout=600)
    client = ssl.create_default_context(cafile=str(pki.ca.cert))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="localhost")
    for _ in range(2):  # and the connection is still good for the next
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        status, _, body = await asyncio.wait_for(read_response(reader), 30)
        assert status == 200 and body == b"".join(page)
    writer.close()


def test_slices_join_small_pieces_and_cut_big_ones_never_over_the_size() -> None:
    pieces: list[bytes | memoryview] = [b"ab", b"cde", b"f" * 9, memoryview(b"ghij"), b"k", b"l" * 25, b"m"]
    out = list(slices(pieces, 8))
    assert b"".join(out) == b"".join(pieces)
    assert all(0 < len(x) <= 8 for x in out)
    assert [bytes(x) for x in out] == [
        b"abcde",
        b"f" * 8,
        b"f",
        b"ghijk",
        b"l" * 8,
        b"l" * 8,
        b"l" * 8,
        b"l",
        b"m",
    ]
    assert list(slices([], 8)) == []
    one = b"xyz"
    assert next(slices([one], 8)) is one  # a lone small piece is not copied
