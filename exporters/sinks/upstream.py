"""One upstream for the network sinks (fluent-bit's `flb_upstream`): the peer's address, TLS, the dial,
the one connection a sink reuses, dropping it and closing it. A sink encodes and writes; it never
dials on its own.

    sink.send ─► Upstream.connection() ─► the held connection, unless the peer closed it (EOF seen)
                                        └► else dial (bounded by connect_timeout), then the sink's
                                           handshake: tcp (TCP_NODELAY) [+ TLS] | unix | udp | unixgram
                                           | the local syslog socket
              ◄── a write fails: Upstream.drop(), the sink answers RETRY, the runner backs off and
                  the next send dials afresh (not within `redial_after` of a failed dial)

Nothing here loops or retries: that is the pipeline's one retry loop (agent/logs/delivery.py).
Address syntax stays each sink's (Docker's drivers differ); the shared parts are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import SplitResult

from agent.clock import SYSTEM_CLOCK, Clock
from exporters.sinks.base import SinkConfigError

CLOSE_TIMEOUT = 5.0  # on shutdown, how long a closing stream may take to flush

# The sinks' scheme names → how to reach the peer.
TRANSPORTS = {
    "tcp": "tcp",
    "tls": "tcp",  # fluentd's name
    "tcp+tls": "tcp",  # syslog's name
    "unix": "unix",
    "udp": "udp",
    "unixgram": "unixgram",
    "": "local",  # syslog: the local syslog socket (srslog's unixSyslog)
}


@dataclass(frozen=True, slots=True)
class Address:
    """Where the peer listens, in the sink's scheme names: tcp|tls|tcp+tls|udp with host and port,
    unix|unixgram with a path, or "" for the local syslog socket."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def transport(self) -> str:
        return TRANSPORTS[self.scheme]

    @property
    def stream(self) -> bool:
        return self.transport in ("tcp", "unix")

    def __str__(self) -> str:
        if self.scheme in ("unix", "unixgram"):
            return f"{self.scheme}://{self.path}"
        if not self.scheme:
            return "the local syslog socket"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def host_port(url: SplitResult, default_host: str, default_port: int) -> tuple[str, int]:
    """The host and port of a parsed address URL, with the driver's defaults for what is missing."""
    try:
        port = url.port
    except ValueError:
        raise ValueError("invalid port") from None
    return url.hostname or default_host, default_port if port is None else port


@dataclass(frozen=True, slots=True)
class TlsKeys:
    """The names of a sink's TLS options, so that an error names the key the user wrote."""

    ca: str
    cert: str
    key: str


def client_tls(
    driver: str, given: Mapping[str, str], opts: Mapping[str, Any], keys: TlsKeys, *, skip_verify: bool
) -> ssl.SSLContext:
    """The client TLS context from a sink's parsed options; SinkConfigError names the key at fault."""

    def fail(key: str, why: str) -> SinkConfigError:
        return SinkConfigError(f"log-opt {key}={given.get(key, '')!r} for the {driver} sink: {why}")

    ca, cert, key = opts[keys.ca], opts[keys.cert], opts[keys.key]
    for name, path in ((keys.ca, ca), (keys.cert, cert), (keys.key, key)):
        if path and not os.path.isfile(path):
            raise fail(name, "no such file")
    if bool(cert) != bool(key):
        raise fail(keys.key if cert else keys.cert, f"give both {keys.cert} and {keys.key}")
    try:
        ctx = ssl.create_default_context(cafile=ca or None)
    except ssl.SSLError as exc:
        raise fail(keys.ca, f"cannot load: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # docker/go-connections tlsconfig.Client's floor
    if skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise fail(keys.cert, f"cannot load the key pair: {exc}") from None
    return ctx


class Stream:
    """A tcp, tls or unix stream: the writer, and the reader (the peer's answers, or only its EOF)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def usable(self) -> bool:
        # A peer that closed its end shows EOF here before our next write would vanish into a RST.
        return not (self.writer.is_closing() or self.reader.at_eof())

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self, timeout: float | None) -> None:
        """Wait until the kernel took what was written; `timeout` None: as long as it takes."""
        await asyncio.wait_for(self.writer.drain(), timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Datagram:
    """A connected non-blocking udp or unixgram socket: one message per datagram."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @property
    def usable(self) -> bool:
        return self.sock.fileno() >= 0

    def close(self) -> None:
        self.sock.close()


S = TypeVar("S", bound=Stream)


class Upstream(Generic[S]):
    """One sink's peer and its one connection. Not locked: the sink serialises its sends."""

    def __init__(
        self,
        address: Address,
        stream: Callable[[asyncio.StreamReader, asyncio.StreamWriter], S],
        *,
        tls: ssl.SSLContext | None = None,
        connect_timeout: float | None = None,
        handshake: Callable[[S], Awaitable[None]] | None = None,
        handshake_timeout: float | None = None,
        redial_after: float = 0.0,
        local_paths: Sequence[str] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.address = address
        self.stream = stream  # wraps a new stream: Stream, or a sink's subclass with protocol state
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.handshake = handshake
        self.handshake_timeout = handshake_timeout
        self.redial_after = redial_after
        self.local_paths = tuple(local_paths)
        self.clock = clock
        self.conn: S | Datagram | None = None
        self._failed_at = float("-inf")

    def __str__(self) -> str:
        return str(self.address)

    @property
    def holding_back(self) -> bool:
        """No connection, and a dial failed less than `redial_after` ago: do not dial yet."""
        return self.conn is None and self.clock.monotonic() - self._failed_at < self.redial_after

    async def connection(self) -> tuple[S | Datagram, bool]:
        """The held connection if the peer has not closed it, else a new one (raising what the dial
        or the handshake raised); and whether it is new."""
        if isinstance(self.conn, Stream):
            # Two loop turns: the first polls the socket, the second runs its callbacks, so a FIN the
            # peer already sent shows as EOF now, not as a RST after our write "succeeded".
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        if self.conn is not None and self.conn.usable:
            return self.conn, False
        self.drop()
        try:
            conn = await asyncio.wait_for(self._dial(), self.connect_timeout)
            if self.handshake is not None and not isinstance(conn, Datagram):
                try:
                    await asyncio.wait_for(self.handshake(conn), self.handshake_timeout)
                except BaseException:
                    conn.close()
                    raise
        except BaseException:
            self._failed_at = self.clock.monotonic()
            raise
        self.conn = conn
        return conn, True

    def drop(self) -> None:
        """Forget the connection (after a failed write, or when the peer wants one per message)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if isinstance(conn, Stream):
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.writer.wait_closed(), CLOSE_TIMEOUT)
        elif conn is not None:
            conn.close()

    async def _dial(self) -> S | Datagram:
        a = self.address
        kind = a.transport
        if kind == "tcp":
            reader, writer = await asyncio.open_connection(
                a.host, a.port, ssl=self.tls, server_hostname=a.host if self.tls else None
            )
            sock = writer.get_extra_info("socket")
            if sock is not None:  # a batch is one write: do not hold its last segment back (Nagle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self.stream(reader, writer)
        if kind == "unix":
            return self.stream(*await asyncio.open_unix_connection(a.path))
        if kind == "udp":
            infos = await asyncio.get_running_loop().getaddrinfo(a.host, a.port, type=socket.SOCK_DGRAM)
            family, _, _, _, addr = infos[0]
            return Datagram(_connected(family, socket.SOCK_DGRAM, addr))
        if kind == "unixgram":
            return Datagram(_connected(socket.AF_UNIX, socket.SOCK_DGRAM, a.path))
        return await self._dial_local()

    async def _dial_local(self) -> S | Datagram:
        """srslog's unixSyslog: each local path as a datagram socket, then as a stream socket."""
        for path in self.local_paths:
            with contextlib.suppress(OSError):
                return Datagram(_connected(socket.AF_UNIX, socket.SOCK_DGRAM, path))
        for path in self.local_paths:
            with contextlib.suppress(OSError):
                return self.stream(*await asyncio.open_unix_connection(path))
        raise ConnectionError(f"no local syslog socket ({', '.join(self.local_paths)})")


def _connected(family: int, kind: int, addr: tuple[Any, ...] | str) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        sock.connect(addr)  # datagram connect does not block; it fixes the peer and surfaces ICMP errors
    except BaseException:
        sock.close()
        raise
    return sock


def why(exc: BaseException) -> str:
    """An I/O error in a few words, for `last_error`."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
