"""A small asyncio HTTP/1.1 client for the Engine API: GET only, keep-alive, standard library only.

Why not aiohttp: importing it costs ~12 MiB of the agent's resident memory (issue 14) for a client
that only ever sends GETs to one engine. This module speaks exactly what dockerd (Go's net/http)
answers: a status line and headers, then a body framed by Content-Length, by chunked transfer
coding (RFC 9112 §7.1), or by the end of the connection.

    Pool.request(target) ─► idle connection (or a new one) ─► request line + headers
                          ◄─ Response: status, headers, body pieces as they arrive
    on exit: body read to its end, no error, no `Connection: close` → back to the idle list;
             anything else (abandoned, failed, cancelled, timed out) → the connection is closed.

Errors: ConnectError (no connection could be made: carries the OSError), ProtocolError (the
answer is not HTTP we can frame: bad head, bad chunk, truncated body), and OSError from the
socket once connected. The caller (client.py) turns them into EngineError.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from agent.http11 import TOKEN, keep_alive

HEAD_LIMIT = 64 * 1024  # status line + headers (and chunk trailers): more is not an engine talking
PIECE = 64 * 1024  # the most one read of the body returns; less when less has arrived
MAX_IDLE = 8  # idle keep-alive connections kept; the agent rarely has more requests in flight

_STATUS = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class ConnectError(Exception):
    """No connection to the server could be made; `os_error` says why."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error


class ProtocolError(Exception):
    """The server's answer cannot be read as HTTP/1.1 (or ended too early)."""


class _Stale(Exception):
    """A reused connection failed before any byte of the response: the server had closed it."""


@dataclass(eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.transport.is_closing())

    def abort(self) -> None:
        # No graceful close for a connection in an unknown state: what is unread is dropped.
        self.writer.transport.abort()


@dataclass(eq=False)
class Response:
    """A response whose head has been read; its body is read through `read` or `iter_any`."""

    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    _body: _Body
    keep_alive: bool = True

    async def read(self) -> bytes:
        out = bytearray()
        async for piece in self.iter_any():
            out += piece
        return bytes(out)

    async def iter_any(self) -> AsyncIterator[bytes]:
        """Each piece of the body as soon as it has arrived (never held back to fill a buffer)."""
        while piece := await self._body.read_some():
            yield piece

    @property
    def reusable(self) -> bool:
        return self.keep_alive and self._body.done and not self._body.failed


class _Body:
    """Reads one body off the stream in the framing the head announced."""

    def __init__(self, reader: asyncio.StreamReader, length: int | None, chunked: bool) -> None:
        self._r = reader
        self._left = length if length is not None else 0
        self._chunked = chunked
        self._to_eof = length is None and not chunked
        self._crlf_due = False  # a chunk's data was read; its CRLF not yet
        self.done = length == 0 and not chunked
        self.failed = False

    async def read_some(self) -> bytes:
        if self.done:
            return b""
        try:
            if self._chunked:
                return await self._chunk_piece()
            data = await self._r.read(PIECE if self._to_eof else min(self._left, PIECE))
            if self._to_eof:
                self.done = not data
                return data
            if not data:
                raise ProtocolError(f"connection closed {self._left} bytes before the end of the body")
            self._left -= len(data)
            self.done = self._left == 0
            return data
        except BaseException:
            self.failed = True
            raise

    async def _chunk_piece(self) -> bytes:
        if self._left == 0:
            if self._crlf_due:
                if await _line(self._r, "chunk") not in (b"\r\n", b"\n"):
                    raise ProtocolError("chunk data not followed by CRLF")
                self._crlf_due = False
            raw = await _line(self._r, "chunk size line")
            size = raw.split(b";", 1)[0].strip()  # chunk extensions are allowed and ignored
            if not _HEX.fullmatch(size):
                raise ProtocolError(f"bad chunk size {raw[:40]!r}")
            self._left = int(size, 16)
            if self._left == 0:
                await _skip_trailers(self._r)
                self.done = True
                return b""
        data = await self._r.read(min(self._left, PIECE))
        if not data:
            raise ProtocolError("connection closed inside a chunk")
        self._left -= len(data)
        self._crlf_due = self._left == 0
        return data


async def _line(reader: asyncio.StreamReader, what: str) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise ProtocolError(f"connection closed in a {what}") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"{what} longer than {HEAD_LIMIT} bytes") from None


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    total = 0
    while (line := await _line(reader, "chunked trailer")) not in (b"\r\n", b"\n"):
        total += len(line)
        if total > HEAD_LIMIT:
            raise ProtocolError(f"chunked trailers larger than {HEAD_LIMIT} bytes")


def parse_head(lines: list[bytes]) -> tuple[tuple[int, int], int, str, dict[str, str]]:
    """Status line and header lines (without line ends) → (version, status, reason, headers)."""
    m = _STATUS.fullmatch(lines[0])
    if m is None:
        raise ProtocolError(f"malformed status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    last = ""
    for raw in lines[1:]:
        if raw[:1] in (b" ", b"\t") and last:  # obsolete line folding: part of the previous value
            headers[last] += " " + raw.strip().decode("latin-1")
            continue
        name, sep, value = raw.partition(b":")
        if not sep or not TOKEN.fullmatch(name):
            raise ProtocolError(f"malformed header line {raw[:80]!r}")
        last = name.decode("ascii").lower()
        v = value.strip().decode("latin-1")
        headers[last] = f"{headers[last]}, {v}" if last in headers else v
    version = (int(m[1]), int(m[2]))
    return version, int(m[3]), (m[4] or b"").decode("latin-1"), headers


def _framing(status: int, headers: dict[str, str]) -> tuple[int | None, bool]:
    """(Content-Length or None, chunked) of a response to a GET."""
    if status in (204, 304):
        return 0, False
    te = headers.get("transfer-encoding")
    if te is not None:
        codings = [c.strip().lower() for c in te.split(",") if c.strip()]
        if any(c not in ("chunked", "identity") for c in codings):
            raise ProtocolError(f"unsupported Transfer-Encoding {te!r}")
        return None, bool(codings) and codings[-1] == "chunked"  # else: until the connection ends
    cl = headers.get("content-length")
    if cl is None:
        return None, False
    values = {v.strip() for v in cl.split(",")}
    if len(values) != 1 or not (v := values.pop()).isdigit() or not v.isascii() or len(v) > 18:
        raise ProtocolError(f"bad Content-Length {cl!r}")
    return int(v), False


async def read_response(reader: asyncio.StreamReader) -> Response:
    """A response off `reader`: its head now, its body as the caller reads it."""
    return await _read_head(reader, await _line(reader, "status line"))


async def _read_head(reader: asyncio.StreamReader, first: bytes) -> Response:
    total = 0
    line = first
    while True:  # a 1xx interim response is followed by the real one
        lines: list[bytes] = []
        while True:
            total += len(line)
            if total > HEAD_LIMIT:
                raise ProtocolError(f"response head larger than {HEAD_LIMIT} bytes")
            stripped = line.rstrip(b"\r\n")
            if not stripped:
                break
            lines.append(stripped)
            line = await _line(reader, "response head")
        if not lines:
            raise ProtocolError("empty response head")
        version, status, reason, headers = parse_head(lines)
        if not 100 <= status < 200:
            break
        if status == 101:
            raise ProtocolError("101 Switching Protocols to a GET that asked for no upgrade")
        line = await _line(reader, "response head")
    length, chunked = _framing(status, headers)
    keep = keep_alive(version, headers)
    # A body that ends with the connection leaves nothing to reuse.
    keep = keep and (length is not None or chunked)
    return Response(status, reason, headers, _Body(reader, length, chunked), keep)


@dataclass(eq=False)
class Pool:
    """GETs to one server (a unix socket path, or host and port with optional TLS), keep-alive."""

    unix_path: str = ""
    host: str = ""
    port: int = 0
    tls: ssl.SSLContext | None = None
    host_header: str = "localhost"
    user_agent: str = "dockwatch"
    max_idle: int = MAX_IDLE
    _idle: list[_Conn] = field(default_factory=list, init=False)
    _busy: set[_Conn] = field(default_factory=set, init=False)

    @property
    def idle(self) -> int:
        return len(self._idle)

    @contextlib.asynccontextmanager
    async def request(self, target: str, timeout: float | None) -> AsyncIterator[Response]:
        """GET `target` (path and query, already encoded); `timeout` bounds connecting and the head.

        The connection goes back to the pool only if the block ends normally and the body was
        read to its end; an exception (cancellation included) or an unread body closes it."""
        if any(c in target for c in " \r\n") or not target.startswith("/"):
            raise ValueError(f"not a request target: {target!r}")
        req = (
            f"GET {target} HTTP/1.1\r\nHost: {self.host_header}\r\nUser-Agent: {self.user_agent}\r\n"
            "Accept: */*\r\n\r\n"
        ).encode("ascii")
        async with asyncio.timeout(timeout):
            conn, resp = await self._open(req)
        try:
            yield resp
        except BaseException:
            self._discard(conn)
            raise
        self._busy.discard(conn)
        if resp.reusable and conn.usable() and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.abort()

    async def _open(self, req: bytes) -> tuple[_Conn, Response]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.usable():
                conn.abort()
                continue
            self._busy.add(conn)
            try:
                return conn, await self._exchange(conn, req, reused=True)
            except _Stale:
                self._discard(conn)
                break  # GET is idempotent: once more, on a fresh connection
            except BaseException:
                self._discard(conn)
                raise
        conn = await self._connect()
        self._busy.add(conn)
        try:
            return conn, await self._exchange(conn, req, reused=False)
        except BaseException:
            self._discard(conn)
            raise

    async def _connect(self) -> _Conn:
        try:
            if self.unix_path:
                r, w = await asyncio.open_unix_connection(self.unix_path, limit=HEAD_LIMIT)
            else:
                r, w = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                    limit=HEAD_LIMIT,
                )
        except OSError as exc:  # ssl.SSLError included: a failed handshake is no connection
            raise ConnectError(exc) from exc
        return _Conn(r, w)

    async def _exchange(self, conn: _Conn, req: bytes, reused: bool) -> Response:
        try:
            conn.writer.write(req)
            await conn.writer.drain()
            first = await conn.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if reused and not exc.partial:
                raise _Stale from exc
            where = "in the status line" if exc.partial else "with no response"
            raise ProtocolError(f"connection closed {where}") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"status line longer than {HEAD_LIMIT} bytes") from None
        except OSError as exc:
            if reused:
                raise _Stale from exc
            raise
        return await _read_head(conn.reader, first)

    def _discard(self, conn: _Conn) -> None:
        self._busy.discard(conn)
        conn.abort()

    async def close(self) -> None:
        """Close every connection: idle ones, and those of requests still in progress."""
        idle, self._idle = self._idle, []
        for conn in self._busy:
            conn.abort()
        self._busy.clear()
        for conn in idle:
            conn.writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(1.0):  # a TLS peer that never answers close_notify
                await asyncio.gather(*(c.writer.wait_closed() for c in idle), return_exceptions=True)
