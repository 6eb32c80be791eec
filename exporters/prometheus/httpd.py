"""A small HTTP/1.1 server for the agent's endpoints: GET and HEAD, on asyncio streams.

Why our own: aiohttp was ~12 MiB of the agent's ~44 MiB import floor (issue 14, bench/RESULTS.md)
for four GET endpoints. What they need is small, and all of it is here: keep-alive (Prometheus
reuses its connection), HEAD, Content-Length, bodies written in slices as the socket drains (a
multi-MiB page is never copied whole again), TLS from the web config, and limits so that no client
can hold the agent's memory or connections for long: the size of a request head, the time to send
it, the idle time between requests, and the time a client may take to read a slice.

No request bodies (the endpoints take none): a Content-Length body up to MAX_BODY is read and
dropped; a larger one, or a Transfer-Encoding we would have to decode, ends the connection after
the error answer, so nothing the client sent after it is ever read as a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from agent.http11 import TOKEN, keep_alive
from agent.outage import Outage
from exporters.prometheus.pieces import SLICE, Piece, slices

log = logging.getLogger(__name__)

MAX_LINE = 8190  # the request line or one header line (aiohttp's and h11's default)
MAX_HEAD = 65536  # the whole head
MAX_HEADERS = 100
MAX_BODY = 65536  # a body we read and drop rather than refuse
KEEPALIVE = 75.0  # idle time between requests on one connection (aiohttp's default)
HEAD_TIMEOUT = 30.0  # from the request line to the end of the head (and a dropped body)
WRITE_TIMEOUT = 60.0  # for the socket to take one slice: a client that stops reading is dropped

_TARGET = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: no spaces, no controls
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Request:
    """One parsed request head. Header names are lower-case; repeated headers are joined by ", "."""

    __slots__ = ("headers", "keep_alive", "method", "path", "peercert", "query", "version")

    def __init__(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        version: tuple[int, int] = (1, 1),
        peercert: Any = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.version = version
        self.peercert = peercert  # the verified client certificate (ssl's dict), when TLS asked for one
        self.keep_alive = keep_alive(version, headers)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def query_all(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]


class Response:
    """Status, headers and a body given as pieces (written as they are, never joined)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int = 200, body: Sequence[Piece] = (), headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status, [text.encode()], {"Content-Type": content_type})


Handler = Callable[[Request], Awaitable[Response]]


class _Refused(Exception):
    """A request we answer with an error status, then close the connection."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def http_date(now: float | None = None) -> str:
    """RFC 9110's IMF-fixdate, without the locale strftime would consult."""
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def parse_request_line(line: bytes) -> tuple[str, str, list[tuple[str, str]], tuple[int, int]]:
    """`GET /metrics?name[]=x HTTP/1.1` → method, decoded path, query pairs, version."""
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]):
        raise _Refused(400, "malformed request line")
    method, target, version = parts
    m = _VERSION.fullmatch(version)
    if m is None:
        raise _Refused(400, "malformed request line")
    ver = (int(m[1]), int(m[2]))
    if ver[0] != 1:
        raise _Refused(505, "only HTTP/1.0 and HTTP/1.1 are served")
    raw = target.decode("ascii")
    if not raw.startswith("/"):
        # absolute-form (RFC 9112 3.2.2: a server must accept it); anything else is not for us
        try:
            split = urlsplit(raw)
        except ValueError:  # e.g. "http://[::1/": a bracket never closed
            raise _Refused(400, "malformed request target") from None
        if split.scheme not in ("http", "https") or not split.netloc:
            raise _Refused(400, "malformed request target")
        raw = (split.path or "/") + (f"?{split.query}" if split.query else "")
    path, _, query = raw.partition("?")
    return method.decode("ascii"), unquote(path), parse_qsl(query, keep_blank_values=True), ver


def parse_header_line(line: bytes, headers: dict[str, str]) -> None:
    """One `Name: value` line into `headers` (lower-case name; repeats joined as RFC 9110 allows)."""
    if line[:1] in (b" ", b"\t"):
        raise _Refused(400, "obsolete header line folding")
    name, sep, value = line.partition(b":")
    if not sep or not TOKEN.fullmatch(name):  # also refuses "Name :", a smuggling vector
        raise _Refused(400, "malformed header line")
    key = name.decode("ascii").lower()
    text = value.strip(b" \t\r\n").decode("latin-1")
    if "\r" in text or "\n" in text or "\0" in text:
        raise _Refused(400, "control character in a header value")
    old = headers.get(key)
    if old is None:
        headers[key] = text
    elif key == "content-length":
        if old != text:
            raise _Refused(400, "conflicting Content-Length")
    else:
        headers[key] = f"{old}, {text}"


class Server:
    """Serves `handler` on one TCP listener (TLS when given a context) until close()."""

    def __init__(
        self,
        handler: Handler,
        ssl_context: ssl.SSLContext | None = None,
        *,
        keepalive: float = KEEPALIVE,
        head_timeout: float = HEAD_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        max_connections: int = 0,
    ) -> None:
        """`max_connections`: served at once (0: no limit); past it a new one gets a 503."""
        self.handler = handler
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.refused = 0  # connections answered 503 for the limit
        self._refusals = Outage(log, "HTTP server")
        self.keepalive = keepalive
        self.head_timeout = head_timeout
        self.write_timeout = write_timeout
        self._server: asyncio.Server | None = None
        # Connection task → waiting for a request (idle); in the order they last became idle.
        self._conns: dict[asyncio.Task[Any], bool] = {}
        self._evicted: set[asyncio.Task[Any]] = set()  # idle ones closed for a new connection
        self._closing = False
        self._date = (0, "")

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._serve, host or None, port, ssl=self.ssl_context, reuse_address=True, limit=MAX_LINE
        )

    @property
    def addresses(self) -> list[Any]:
        return [s.getsockname() for s in self._server.sockets] if self._server is not None else []

    async def close(self, grace: float = 5.0) -> None:
        """Stop listening, drop idle connections at once, give answers in progress `grace` s."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task, idle in list(self._conns.items()):
            if idle:
                task.cancel()
        busy = list(self._conns)
        if busy:
            _, late = await asyncio.wait(busy, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        limit = self.max_connections
        if limit and len(self._conns) >= limit and not self._evict_idle():
            await self._refuse_over_limit(reader, writer)
            return
        if self._refusals.down and len(self._conns) < 0.9 * limit:  # not at every freed slot
            self._refusals.recovered("serving new connections again")
        self._conns[task] = True
        cancelled = False
        try:
            await self._connection(reader, writer, task)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stalled: nothing to answer
        except asyncio.CancelledError:
            if task in self._evicted or (self._closing and self._conns.get(task)):
                # Idle (or its last answer handed over), closed for a new connection or by close():
                # a plain close, what is buffered flushed first (bounded by write_timeout).
                self._evicted.discard(task)
                task.uncancel()
            else:
                cancelled = True  # close(): idle, or past its grace; no flush wait either
                if not self._closing:
                    raise
        finally:
            try:
                if cancelled:
                    writer.transport.abort()
                else:
                    if task in self._conns:  # done with requests: a new connection may cut the flush
                        self._idle(task)
                    await self._close(writer)
            finally:
                # Counted until its socket is closed: the limit bounds descriptors too.
                self._conns.pop(task, None)
                self._evicted.discard(task)

    def _idle(self, task: asyncio.Task[Any]) -> None:
        """`task`'s connection is between requests from now: at the end of the eviction order."""
        self._conns.pop(task, None)
        self._conns[task] = True

    def _evict_idle(self) -> bool:
        """At the limit: close the connection idle the longest (a keep-alive one between requests,
        or one that never sent a request) for the new one, so that idle connections cannot lock
        a scraper out. False when every connection is in a request."""
        for task, idle in self._conns.items():
            if idle and task not in self._evicted:
                self._evicted.add(task)
                task.cancel()
                return True
        return False

    async def _refuse_over_limit(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Every connection is in a request: a 503, then the connection closed once the client's
        request is read (for 1 s at most: closing with unread bytes would reset the connection,
        and some clients then report the reset, not the 503)."""
        self.refused += 1
        self._refusals.failed(
            "too many connections",
            f"HTTP server: {self.max_connections} connections in requests (web.max-connections): "
            "new ones are answered 503 and closed",
        )
        response = Response.text("503: too many connections\n", 503)
        response.headers["Retry-After"] = "1"
        try:
            await self._send(writer, response, False, False, (1, 1))
            if writer.can_write_eof():
                writer.write_eof()
            await asyncio.wait_for(reader.read(MAX_HEAD), 1.0)
        except (OSError, RuntimeError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Flush what is buffered and close; a client that does not take it is cut off."""
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self.write_timeout)
        except (OSError, TimeoutError, asyncio.CancelledError):
            writer.transport.abort()

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[Any]
    ) -> None:
        peercert = writer.get_extra_info("peercert")
        # drain() then waits until the transport has handed every byte to the kernel: one slice
        # of a page in our memory at a time, not a slice plus the transport's 64 KiB high mark.
        # 1, not 0: the TLS transport pauses at a buffer >= its high mark, so 0 never resumed.
        writer.transport.set_write_buffer_limits(high=1)
        while not self._closing:
            self._idle(task)
            try:
                first = await asyncio.wait_for(reader.readline(), self.keepalive)
            except ValueError:  # longer than MAX_LINE
                await self._refuse(writer, _Refused(414, "request line too long"))
                return
            self._conns[task] = False
            if not first.endswith(b"\n"):
                return  # closed between requests, or mid-line
            try:
                request = await asyncio.wait_for(
                    self._read_request(first, reader, peercert), self.head_timeout
                )
            except _Refused as refused:
                await self._refuse(writer, refused)
                return
            if request is None:
                return  # the head did not arrive whole
            try:
                response = await self.handler(request)
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                response = Response.text("500: Internal Server Error\n", 500)
            keep = request.keep_alive and not self._closing
            try:
                head_only, answered = request.method == "HEAD", lambda: self._idle(task)
                await self._send(writer, response, head_only, keep, request.version, answered)
            except ValueError as exc:  # a header that cannot be sent: nothing was written yet
                log.error("%s %s: %s", request.method, request.path, exc)
                response = Response.text("500: Internal Server Error\n", 500)
                await self._send(writer, response, request.method == "HEAD", False, request.version)
                return
            if not keep:
                return

    async def _read_request(
        self, first: bytes, reader: asyncio.StreamReader, peercert: Any
    ) -> Request | None:
        method, path, query, version = parse_request_line(first)
        headers: dict[str, str] = {}
        size, count = len(first), 0
        while True:
            try:
                line = await reader.readline()
            except ValueError:
                raise _Refused(431, "header line too long") from None
            if not line.endswith(b"\n"):
                return None
            if line in (b"\r\n", b"\n"):
                break
            size += len(line)
            count += 1
            if size > MAX_HEAD or count > MAX_HEADERS:
                raise _Refused(431, "request head too large")
            parse_header_line(line, headers)
        if "transfer-encoding" in headers:
            raise _Refused(501, "request bodies are not accepted")
        length = headers.get("content-length", "0")
        if not length.isdigit() or not length.isascii():
            raise _Refused(400, "malformed Content-Length")
        if len(length) > 18 or int(length) > MAX_BODY:  # int() of thousands of digits raises
            raise _Refused(413, "request bodies are not accepted")
        if int(length):
            await reader.readexactly(int(length))  # dropped: the endpoints take no body
        return Request(method, path, query, headers, version, peercert)

    async def _refuse(self, writer: asyncio.StreamWriter, refused: _Refused) -> None:
        text = f"{refused.status}: {refused}\n"
        with contextlib.suppress(OSError):
            await self._send(writer, Response.text(text, refused.status), False, False, (1, 1))

    def _date_header(self) -> str:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, http_date(now))
        return self._date[1]

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        response: Response,
        head_only: bool,
        keep: bool,
        version: tuple[int, int],
        written: Callable[[], None] | None = None,
    ) -> None:
        """`written`: called once the whole response is handed to the transport, before the last
        drain (the client may have it all by then, and be back with its next request)."""
        length = sum(len(p) for p in response.body)
        try:
            phrase = http.HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        lines = [f"HTTP/1.1 {response.status} {phrase}", f"Date: {self._date_header()}"]
        for name, value in response.headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                raise ValueError(f"header {name!r}: a line break or colon would split the response")
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {length}")
        if not keep:
            lines.append("Connection: close")
        elif version < (1, 1):
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if head_only or not length:
            writer.write(head)
        elif length <= SLICE:
            writer.write(b"".join((head, *response.body)))
        else:
            writer.write(head)
            for piece in slices(response.body):
                writer.write(piece)
                await asyncio.wait_for(writer.drain(), self.write_timeout)
        if written is not None:
            written()
        await asyncio.wait_for(writer.drain(), self.write_timeout)
