"""The `fluentd` sink: Docker's fluentd logging driver spoken over asyncio (Forward protocol v1).

Records carry exactly the map dockerd's driver sends (moby `daemon/logger/fluentd/fluentd.go`):
`container_id`, `container_name` ("/name"), `source`, `log`, the extra attributes (labels, then env),
and `partial_message`/`partial_id`/`partial_ordinal`/`partial_last` on 16 KiB chunks; every value is a
string. Unlike dockerd (one Message-mode event per line, one ack round trip per line), a batch goes
as one PackedForward message per tag with one `chunk` id and one ack.
Spec: https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1

    send(batch) ─► encode (pure: group by tag, pack) ─► upstream: [connect, TLS] + HELO/PING/PONG ─► write
                                                      └► [await {"ack": chunk} per message] ─► Outcome

Docker's options, accepted with Docker's names and syntax so a daemon.json can be pasted:

- `fluentd-address`: `[tcp|tls]://host:port` (default `127.0.0.1:24224`) or `unix:///path`, as Docker.
- `fluentd-async` (legacy `fluentd-async-connect`): false: `open()` connects and raises when the peer is
  down, as Docker refuses to start the container; true: the first send connects. Neither blocks a
  container: we read its logs from the engine.
- `fluentd-async-reconnect-interval`: 0 or 100ms-10s; after a failed connect, sends within this
  interval return RETRY without dialling.
- `fluentd-buffer-limit` (RAMInBytes syntax), `fluentd-retry-wait`, `fluentd-max-retries`: validated as
  Docker does, no effect here: the pipeline owns buffering, retry and backoff.
- `fluentd-sub-second-precision`: EventTime (ext type 0) instead of integer seconds, as Docker.
- `fluentd-request-ack`: one `chunk` per message; OK only once every matching `{"ack": chunk}` arrived.
- `fluentd-write-timeout`: bounds connect and write; 0 = unbounded, as Docker.
- `fluentd-read-timeout`: bounds the wait for acks and for the handshake. 0 means 190 s for acks
  (Fluentd's own `ack_response_timeout`) and 30 s for the handshake here, not Docker's forever: one
  silent peer must not stall the pipeline.
- `tag` (default `{{.ID}}`), `labels`, `labels-regex`, `env`, `env-regex`: as Docker.

dockwatch's own options:

- `fluentd-mode`: `Message` (Docker's wire format, one event per message), `Forward`, or
  `PackedForward` (the default).
- `fluentd-compress=gzip`: CompressedPackedForward (needs `fluentd-mode=PackedForward`).
- `fluentd-max-message-size`: split a tag's events into messages of at most this size (default 4m;
  Fluent Bit's `forward` input refuses messages above 6,144,000 bytes).
- `fluentd-shared-key`, `fluentd-self-hostname`: answer the server's HELO with PING (secure forward);
  the hostname defaults to the host's.
- `fluentd-username`, `fluentd-password`: user authentication inside the handshake (needs the key).
- `fluentd-tls-ca-cert`, `fluentd-tls-cert`, `fluentd-tls-key`, `fluentd-tls-skip-verify`: TLS for
  `tls://`, named like Docker's `syslog-tls-*` options.

Delivery: with `fluentd-request-ack` a batch is at-least-once (a lost ack re-sends it). Without it the
peer says nothing, so a connection lost after the kernel took the bytes loses them, as with Docker.
One lock covers writing a batch and reading its acks, so concurrent sends never take each other's
acks (fluent-logger-golang reads acks outside its write lock; dockerd then re-sends lines).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import logging
import os
import re
import socket
import ssl
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgpack

from agent.clock import SYSTEM_CLOCK, Clock
from agent.docker.models import Container
from agent.logs.record import LogRecord
from exporters.sinks.base import (
    ExtraAttributes,
    Option,
    Outcome,
    Sink,
    SinkConfigError,
    extra_attribute_options,
    parse_bool,
    parse_duration,
    parse_size,
)
from exporters.sinks.tag import Tag
from exporters.sinks.upstream import Address, Stream, TlsKeys, Upstream, client_tls, host_port, why

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 24224
MODES = ("Message", "Forward", "PackedForward")
ACK_TIMEOUT_DEFAULT = 190.0  # Fluentd out_forward's ack_response_timeout
HANDSHAKE_TIMEOUT_DEFAULT = 30.0
_INT32_MAX = 2**31 - 1


# --- option parsers, in Docker's syntax --------------------------------------------------------------
def parse_address(value: str) -> Address:
    """moby fluentd.go parseAddress: empty → tcp://127.0.0.1:24224; no scheme means tcp."""
    if not value:
        return Address("tcp", DEFAULT_HOST, DEFAULT_PORT)
    if "://" not in value:
        value = "tcp://" + value
    url = urlsplit(value)
    if url.scheme == "unix":
        if not url.path.strip("/"):
            raise ValueError("path is empty")
        return Address("unix", path=url.path)
    if url.scheme not in ("tcp", "tls"):
        raise ValueError(f"unsupported scheme: {url.scheme!r}")
    if url.path:
        raise ValueError("should not contain a path element")
    return Address(url.scheme, *host_port(url, DEFAULT_HOST, DEFAULT_PORT))


_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kmgtp])?i?b?$", re.IGNORECASE)


def parse_ram_in_bytes(value: str) -> int:
    """docker/go-units RAMInBytes (binary: 1k = 1024), which Docker uses for fluentd-buffer-limit."""
    m = _RAM.match(value)
    if not m:
        raise ValueError("expected a size such as 1048576, 512k or 8m")
    mult = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}[(m.group(2) or "").lower()]
    return int(float(m.group(1)) * mult)


def parse_max_retries(value: str) -> int:
    """strconv.ParseUint(v, 10, 32), then capped at MaxInt32 as Docker does."""
    if not value.isdigit():
        raise ValueError("expected a non-negative integer")
    n = int(value)
    if n > _INT32_MAX:
        raise ValueError("value out of range")
    return n


def parse_reconnect_interval(value: str) -> float:
    secs = parse_duration(value)
    if secs and not 0.1 <= secs <= 10.0:
        raise ValueError("must be between 100ms and 10s")
    return secs


def parse_timeout(value: str) -> float:
    secs = parse_duration(value.removeprefix("-"))
    if value.startswith("-"):
        raise ValueError("value must be a duration that is non-negative")
    return secs


def parse_mode(value: str) -> str:
    for mode in MODES:
        if value.lower() == mode.lower():
            return mode
    raise ValueError(f"expected one of {', '.join(MODES)}")


def parse_compress(value: str) -> str:
    if value not in ("", "gzip"):
        raise ValueError("expected gzip (or empty for none)")
    return value


# --- pure format step ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EventTime:
    """Forward protocol EventTime: msgpack ext type 0 holding 32-bit seconds and nanoseconds, big endian."""

    seconds: int
    nanoseconds: int

    def to_ext(self) -> msgpack.ExtType:
        # 32 bits of seconds, as fluent-logger-golang's int32(t.Unix()): the format's year-2038 limit
        return msgpack.ExtType(0, struct.pack(">II", self.seconds & 0xFFFFFFFF, self.nanoseconds))


def event_time(time_ns: int, sub_second: bool) -> int | msgpack.ExtType:
    """Docker's time field: time.Unix() seconds, or EventTime with fluentd-sub-second-precision."""
    sec, nsec = divmod(time_ns, 1_000_000_000)
    return EventTime(sec, nsec).to_ext() if sub_second else sec


def record_map(rec: LogRecord, extra: Mapping[str, str]) -> dict[str, str | bytes]:
    """The record dockerd's fluentd driver posts for one line or chunk.

    `log` stays bytes: packed as msgpack str it carries the line's raw bytes, which is what Go's
    string(msg.Line) becomes on the wire, valid UTF-8 or not.
    """
    data: dict[str, str | bytes] = {
        "container_id": rec.container.id,
        "container_name": "/" + rec.container.name,
        "source": rec.stream,
        "log": rec.line,
    }
    data.update(extra)
    if rec.partial is not None:
        data["partial_message"] = "true"
        data["partial_id"] = rec.partial.id
        data["partial_ordinal"] = str(rec.partial.ordinal)
        data["partial_last"] = "true" if rec.partial.last else "false"
    return data


def new_chunk_id() -> str:
    """A base64 128-bit id for the `chunk` option, as the spec asks."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded Forward-protocol message, the ack id it expects (if any) and its event count."""

    data: bytes
    chunk: str | None
    events: int


class ForwardEncoder:
    """Pure: a batch of LogRecords → Forward-protocol messages (grouped by tag, in batch order)."""

    def __init__(
        self,
        *,
        tag: Tag,
        extras: ExtraAttributes,
        mode: str = "PackedForward",
        compress: str = "",
        sub_second: bool = False,
        request_ack: bool = False,
        max_message_size: int = 4 * 2**20,
        hostname: str = "",
        chunk_id: Callable[[], str] = new_chunk_id,
    ) -> None:
        self.tag = tag
        self.extras = extras
        self.mode = mode
        self.compress = compress
        self.sub_second = sub_second
        self.request_ack = request_ack
        self.max_message_size = max_message_size
        self.hostname = hostname
        self.chunk_id = chunk_id
        # Records and entries: bytes pack as msgpack str (raw), as Go strings do. The outer PackedForward
        # array uses bin for the entries (required for CompressedPackedForward, allowed for PackedForward).
        self._pack_str = msgpack.Packer(use_bin_type=False, autoreset=True).pack
        self._pack_bin = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        self._extra_cache: dict[str, dict[str, str]] = {}

    def extra_for(self, container: Container) -> dict[str, str]:
        got = self._extra_cache.get(container.id)
        if got is None:
            got = self.extras.attributes(container)
            if len(self._extra_cache) > 4096:  # containers come and go; bound the cache
                self._extra_cache.clear()
            self._extra_cache[container.id] = got
        return got

    def entry(self, rec: LogRecord) -> tuple[int | msgpack.ExtType, dict[str, str | bytes]]:
        return event_time(rec.time_ns, self.sub_second), record_map(rec, self.extra_for(rec.container))

    def encode(self, batch: Sequence[LogRecord]) -> list[Frame]:
        by_tag: dict[str, list[LogRecord]] = {}
        for rec in batch:
            by_tag.setdefault(self.tag.render(rec.container, self.hostname), []).append(rec)
        frames: list[Frame] = []
        for tag, recs in by_tag.items():
            if self.mode == "Message":
                frames.extend(self._message(tag, rec) for rec in recs)
            else:
                frames.extend(self._batched(tag, recs))
        return frames

    def _option(self, size: int | None) -> tuple[dict[str, Any], str | None]:
        option: dict[str, Any] = {}
        if size is not None:
            option["size"] = size
        chunk = self.chunk_id() if self.request_ack else None
        if chunk is not None:
            option["chunk"] = chunk
        return option, chunk

    def _message(self, tag: str, rec: LogRecord) -> Frame:
        # Docker's exact shape: 4 elements, option always present ({} without ack).
        option, chunk = self._option(None)
        t, record = self.entry(rec)
        return Frame(self._pack_str([tag, t, record, option]), chunk, 1)

    def _batched(self, tag: str, recs: Sequence[LogRecord]) -> list[Frame]:
        frames: list[Frame] = []
        parts: list[bytes] = []
        size = 0
        for rec in recs:
            entry = self._pack_str(list(self.entry(rec)))
            if parts and size + len(entry) > self.max_message_size:
                frames.append(self._wrap(tag, parts))
                parts, size = [], 0
            parts.append(entry)
            size += len(entry)
        if parts:
            frames.append(self._wrap(tag, parts))
        return frames

    def _wrap(self, tag: str, entries: list[bytes]) -> Frame:
        option, chunk = self._option(len(entries))
        if self.mode == "Forward":
            # Entries are already packed; an array header plus them is the packed array.
            body = _array_header(len(entries)) + b"".join(entries)
            return Frame(
                _array_header(3) + self._pack_str(tag) + body + self._pack_str(option), chunk, len(entries)
            )
        blob = b"".join(entries)
        if self.compress == "gzip":
            option["compressed"] = "gzip"
            blob = gzip.compress(blob, compresslevel=6, mtime=0)
        return Frame(self._pack_bin([tag, blob, option]), chunk, len(entries))


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 2**16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


# --- handshake (secure forward) --------------------------------------------------------------------------
def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def shared_key_digest(salt: str | bytes, hostname: str, nonce: str | bytes, shared_key: str) -> str:
    """sha512_hex(shared_key_salt + hostname + nonce + shared_key), for PING (client) and PONG (server)."""
    return hashlib.sha512(_b(salt) + _b(hostname) + _b(nonce) + _b(shared_key)).hexdigest()


def password_digest(auth_salt: str | bytes, username: str, password: str) -> str:
    """sha512_hex(auth_salt + username + password), the PING's user authentication."""
    return hashlib.sha512(_b(auth_salt) + _b(username) + _b(password)).hexdigest()


READ_SIZE = 16384
MAX_ANSWER = 1 << 20  # an ack is ~40 bytes; a server past this is not speaking Forward


class ProtocolError(Exception):
    """The peer said something the Forward protocol does not allow here (bad PONG, wrong ack)."""


# --- the sink ----------------------------------------------------------------------------------------------
class _Conn(Stream):
    """One connection: the upstream's stream, an unpacker for what the server says, its keepalive."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        # Its buffer is allocated at once, 1 MiB by default per connection, for a server that only
        # ever sends acks, a HELO and a PONG of a few dozen bytes; it grows on feed() as needed.
        self.unpacker = msgpack.Unpacker(
            raw=False, unicode_errors="surrogateescape", read_size=READ_SIZE, max_buffer_size=MAX_ANSWER
        )
        self.keepalive = True

    async def read_obj(self) -> Any:
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("peer closed the connection")
            try:
                self.unpacker.feed(data)
            except msgpack.BufferFull:
                raise ProtocolError(f"the server sent over {MAX_ANSWER} bytes, not one object") from None


class FluentdSink(Sink):
    """Ships log records to Fluentd / Fluent Bit over the Forward protocol."""

    driver = "fluentd"
    options = (
        Option("fluentd-address", "[tcp|tls]://host:port or unix:///path", "", parse_address),
        Option("fluentd-async", "connect on the first send instead of at open()", None, parse_bool),
        Option("fluentd-async-connect", "legacy name of fluentd-async", None, parse_bool),
        Option(
            "fluentd-async-reconnect-interval",
            "0 or 100ms-10s: no re-dial within this interval of a failed connect",
            "0",
            parse_reconnect_interval,
        ),
        Option("fluentd-buffer-limit", "accepted for Docker; the pipeline buffers", "1m", parse_ram_in_bytes),
        Option("fluentd-retry-wait", "accepted for Docker; the pipeline retries", "1s", parse_duration),
        Option(
            "fluentd-max-retries",
            "accepted for Docker; the pipeline retries",
            str(_INT32_MAX),
            parse_max_retries,
        ),
        Option("fluentd-sub-second-precision", "EventTime with nanoseconds", "false", parse_bool),
        Option("fluentd-request-ack", "chunk id per message; OK only after the ack", "false", parse_bool),
        Option("fluentd-write-timeout", "bound on connect + write (0: none)", "0", parse_timeout),
        Option("fluentd-read-timeout", "bound on acks and handshake (0: 190s for acks)", "0", parse_timeout),
        Option("tag", "Docker tag template", "{{.ID}}", Tag),
        *extra_attribute_options("as record keys"),
        Option("fluentd-mode", "Message | Forward | PackedForward", "PackedForward", parse_mode),
        Option("fluentd-compress", "gzip: CompressedPackedForward", "", parse_compress),
        Option("fluentd-max-message-size", "split messages above this size", "4m", parse_size),
        Option("fluentd-shared-key", "secure-forward shared key (HELO/PING/PONG)", None),
        Option("fluentd-self-hostname", "hostname in PING (default: the host's)", None),
        Option("fluentd-username", "user for the handshake's user authentication", None),
        Option("fluentd-password", "password for the handshake's user authentication", None),
        Option("fluentd-tls-ca-cert", "CA bundle to verify the server", None),
        Option("fluentd-tls-cert", "client certificate", None),
        Option("fluentd-tls-key", "client key", None),
        Option("fluentd-tls-skip-verify", "do not verify the server certificate", "false", parse_bool),
    )

    def __init__(
        self,
        opts: Mapping[str, str],
        *,
        name: str | None = None,
        hostname: str = "",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(opts, name=name, hostname=hostname)
        o = self.opts
        self._validate(opts)
        self.address: Address = o["fluentd-address"]
        self.async_connect = bool(o["fluentd-async"] or o["fluentd-async-connect"])
        self.request_ack: bool = o["fluentd-request-ack"]
        self.write_timeout: float | None = o["fluentd-write-timeout"] or None
        self.ack_timeout: float = o["fluentd-read-timeout"] or ACK_TIMEOUT_DEFAULT
        self.handshake_timeout: float = o["fluentd-read-timeout"] or HANDSHAKE_TIMEOUT_DEFAULT
        self.shared_key: str | None = o["fluentd-shared-key"]
        self.self_hostname: str = o["fluentd-self-hostname"] or hostname or socket.gethostname()
        self.username: str = o["fluentd-username"] or ""
        self.password: str = o["fluentd-password"] or ""
        self.encoder = ForwardEncoder(
            tag=o["tag"],
            extras=ExtraAttributes.from_options(o),
            mode=o["fluentd-mode"],
            compress=o["fluentd-compress"],
            sub_second=o["fluentd-sub-second-precision"],
            request_ack=self.request_ack,
            max_message_size=o["fluentd-max-message-size"],
            hostname=hostname or socket.gethostname(),
        )
        tls = None
        if self.address.scheme == "tls":
            keys = TlsKeys("fluentd-tls-ca-cert", "fluentd-tls-cert", "fluentd-tls-key")
            tls = client_tls(self.driver, opts, o, keys, skip_verify=o["fluentd-tls-skip-verify"])
        self.upstream = Upstream(
            self.address,
            _Conn,
            tls=tls,
            connect_timeout=self.write_timeout,
            handshake=self._handshake if self.shared_key is not None else None,
            handshake_timeout=self.handshake_timeout,
            # Docker's fluentd-async-reconnect-interval: after a failed dial, sends within it RETRY at once.
            redial_after=o["fluentd-async-reconnect-interval"],
            clock=clock,
        )
        self._lock = asyncio.Lock()

    def _validate(self, given: Mapping[str, str]) -> None:
        """Checks across options; each error names the option at fault."""
        o = self.opts

        def fail(key: str, why: str) -> None:
            raise SinkConfigError(f"log-opt {key}={given.get(key, '')!r} for the fluentd sink: {why}")

        if "fluentd-async" in given and "fluentd-async-connect" in given:
            fail("fluentd-async-connect", "conflicts with fluentd-async (the newer name); give only one")
        if o["fluentd-compress"] and o["fluentd-mode"] != "PackedForward":
            fail("fluentd-compress", "compression needs fluentd-mode=PackedForward")
        for key in ("fluentd-username", "fluentd-password"):
            if key in given and not o["fluentd-shared-key"]:
                fail(key, "user authentication happens in the handshake: set fluentd-shared-key too")
        if bool(o["fluentd-username"]) != bool(o["fluentd-password"]):
            fail("fluentd-password", "give both fluentd-username and fluentd-password")
        if o["fluentd-address"].scheme != "tls":
            for key in (
                "fluentd-tls-ca-cert",
                "fluentd-tls-cert",
                "fluentd-tls-key",
                "fluentd-tls-skip-verify",
            ):
                if key in given:
                    fail(key, "only used with a tls:// fluentd-address")

    # --- I/O ---------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Without fluentd-async, connect now and raise if the peer is down (Docker fails the start)."""
        if not self.async_connect:
            async with self._lock:
                await self._connect()

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        if not batch:
            return Outcome.OK
        try:
            frames = self.encoder.encode(batch)
        except Exception:  # cannot be packed now, nor on any retry
            log.exception("fluentd sink %s: cannot encode a batch of %d records", self.name, len(batch))
            return Outcome.FAIL
        async with self._lock:
            if self.upstream.holding_back:
                return Outcome.RETRY
            try:
                conn = await self._connect()
                await self._deliver(conn, frames)
            except (OSError, EOFError, TimeoutError, ProtocolError, ssl.SSLError, ValueError) as exc:
                # The runner reports the outage (first failure, then a summary); each attempt: debug.
                self.last_error = f"{self.upstream}: {why(exc)}"
                log.debug("fluentd sink %s: %s; will retry", self.name, self.last_error)
                self.upstream.drop()
                return Outcome.RETRY
            except Exception:  # a sink never takes the pipeline down; the batch is retried
                log.exception("fluentd sink %s: unexpected error; will retry", self.name)
                self.upstream.drop()
                return Outcome.RETRY
            if not conn.keepalive:  # the server's HELO asked for one connection per message
                self.upstream.drop()
        return Outcome.OK

    async def close(self) -> None:
        async with self._lock:
            await self.upstream.close()

    async def _deliver(self, conn: _Conn, frames: Sequence[Frame]) -> None:
        """Write every message and collect the acks: one round trip per batch, not one per line."""
        pending = {f.chunk for f in frames if f.chunk is not None}

        async def write() -> None:
            for frame in frames:
                conn.write(frame.data)
            await conn.drain(self.write_timeout)

        if not pending:
            await write()
            return
        # Read acks while writing: a server blocked on sending acks we do not read stops reading.
        try:
            async with asyncio.timeout(self.ack_timeout), asyncio.TaskGroup() as tg:
                tg.create_task(write())
                tg.create_task(self._acks(conn, pending))
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None

    async def _acks(self, conn: _Conn, pending: set[str]) -> None:
        while pending:
            got = await conn.read_obj()
            ack = got.get("ack") if isinstance(got, dict) else None
            if ack not in pending:
                raise ProtocolError(f"unexpected answer {got!r} while waiting for {len(pending)} acks")
            pending.discard(ack)

    async def _connect(self) -> _Conn:
        conn, fresh = await self.upstream.connection()
        assert isinstance(conn, _Conn)  # parse_address gives stream addresses only
        if fresh:
            log.info("fluentd sink %s: connected to %s", self.name, self.upstream)
        return conn

    async def _handshake(self, conn: _Conn) -> None:
        """HELO → PING → PONG, checking the server knows the shared key too."""
        assert self.shared_key is not None
        helo = await conn.read_obj()
        if not (
            isinstance(helo, list) and len(helo) == 2 and helo[0] == "HELO" and isinstance(helo[1], dict)
        ):
            raise ProtocolError(f"expected HELO, got {helo!r}")
        nonce = _raw(helo[1].get("nonce", b""))
        auth = _raw(helo[1].get("auth", b""))
        conn.keepalive = bool(helo[1].get("keepalive", True))
        salt = os.urandom(16).hex()
        pw = password_digest(auth, self.username, self.password) if auth else ""
        ping = [
            "PING",
            self.self_hostname,
            salt,
            shared_key_digest(salt, self.self_hostname, nonce, self.shared_key),
            self.username if auth else "",
            pw,
        ]
        conn.write(msgpack.packb(ping, use_bin_type=True))
        await conn.drain(None)  # bounded by the handshake's timeout
        pong = await conn.read_obj()
        if not (isinstance(pong, list) and len(pong) == 5 and pong[0] == "PONG"):
            raise ProtocolError(f"expected PONG, got {pong!r}")
        _, ok, reason, server_host, digest = pong
        if not ok:
            raise ProtocolError(f"authentication refused by the server: {reason}")
        if digest != shared_key_digest(salt, server_host, nonce, self.shared_key):
            raise ProtocolError("server's PONG digest does not match the shared key")


def _raw(value: Any) -> bytes:
    """HELO's nonce and auth salt arrive as bin (Fluentd) or str; the digests use their bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b""
