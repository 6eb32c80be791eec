"""A Fluentd Forward-protocol (v1) receiver for the tests, on asyncio.

Accepts Message, Forward, PackedForward and CompressedPackedForward (entries as str or bin), integer
time and EventTime; answers `chunk` with `{"ack": chunk}`; optionally requires the shared-key
handshake (HELO/PING/PONG) and TLS; listens on TCP or a unix socket; records every event with the
mode it came in and which connection carried it. `stop()` then `start()` reuses the same port.
Spec: https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import os
import ssl
import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack


@dataclass(frozen=True, slots=True)
class EventTime:
    seconds: int
    nanoseconds: int

    @property
    def ns(self) -> int:
        return self.seconds * 1_000_000_000 + self.nanoseconds


@dataclass(frozen=True, slots=True)
class Event:
    """One (tag, time, record) as received; `time` is an int (seconds) or an EventTime."""

    tag: str
    time: int | EventTime
    record: dict[str, Any]
    mode: str  # Message | Forward | PackedForward | CompressedPackedForward
    conn: int  # index into ForwardReceiver.connections

    @property
    def time_ns(self) -> int:
        return self.time.ns if isinstance(self.time, EventTime) else self.time * 1_000_000_000


@dataclass
class Connection:
    """What one client connection did."""

    index: int
    modes: set[str] = field(default_factory=set)
    handshake: bool = False  # PING accepted
    tls: bool = False
    chunks: list[str] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)
    entries_types: set[str] = field(default_factory=set)  # "bin" | "str" for packed entries
    error: str = ""


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        sec, nsec = struct.unpack(">II", data)
        return EventTime(sec, nsec)
    return msgpack.ExtType(code, data)


def _unpacker() -> msgpack.Unpacker:
    # str values with invalid UTF-8 (Go strings) survive as surrogate escapes; bin stays bytes.
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=_ext_hook)


def digest(*parts: str | bytes) -> str:
    return hashlib.sha512(
        b"".join(p if isinstance(p, bytes) else p.encode("utf-8", "surrogateescape") for p in parts)
    ).hexdigest()


class ForwardReceiver:
    """Listen, decode, ack, record. Use `async with ForwardReceiver(...) as rx:`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_path: str | None = None,
        shared_key: str | None = None,
        users: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ack: bool = True,
        wrong_ack: bool = False,
        keepalive: bool = True,
        hostname: str = "receiver.test",
        keep_events: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.shared_key = shared_key
        self.users = users or {}
        self.ssl_context = ssl_context
        self.ack = ack
        self.wrong_ack = wrong_ack
        self.keepalive = keepalive
        self.hostname = hostname
        self.keep_events = keep_events  # False: only count (benchmarks), and keep no raw messages
        self.count = 0
        self.events: list[Event] = []
        self.connections: list[Connection] = []
        self.raw_messages: list[list[Any]] = []  # each decoded top-level message, as received
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> ForwardReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> str:
        if self.unix_path:
            return f"unix://{self.unix_path}"
        return f"{'tls' if self.ssl_context else 'tcp'}://{self.host}:{self.port}"

    async def start(self) -> None:
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
            self._server = await asyncio.start_unix_server(self._serve, self.unix_path, ssl=self.ssl_context)
        else:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, ssl=self.ssl_context, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every client connection (the peer sees the connection close)."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()  # the serving task then reads EOF and ends
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=5)
            for t in late:
                t.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def wait_events(self, n: int, timeout: float = 10.0) -> list[Event]:
        """Wait until at least n events arrived; return them all."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.events) >= n), timeout)
        return list(self.events)

    async def wait_connections(self, n: int, timeout: float = 10.0) -> list[Connection]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.connections) >= n), timeout)
        return list(self.connections)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- per connection ------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        conn = Connection(len(self.connections), tls=writer.get_extra_info("sslcontext") is not None)
        self.connections.append(conn)
        await self._notify()
        unpacker = _unpacker()
        try:
            if self.shared_key is not None and not await self._handshake(conn, reader, writer, unpacker):
                return
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                unpacker.feed(data)
                for obj in unpacker:
                    if obj is None:  # heartbeat
                        continue
                    await self._message(conn, obj, writer)
                    if not self.keepalive:
                        return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            conn.error = str(exc)
        except ValueError as exc:  # undecodable: what in_forward does too, drop the connection
            conn.error = f"bad message: {exc}"
        except asyncio.CancelledError:  # stop() gave up waiting for this one
            conn.error = "cancelled"
        finally:
            self._writers.discard(writer)
            writer.close()
            self._tasks.discard(task)
            await self._notify()

    async def _read_obj(self, reader: asyncio.StreamReader, unpacker: msgpack.Unpacker) -> Any:
        while True:
            with contextlib.suppress(StopIteration):
                return next(unpacker)
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed during handshake")
            unpacker.feed(data)

    async def _handshake(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        unpacker: msgpack.Unpacker,
    ) -> bool:
        assert self.shared_key is not None
        nonce = os.urandom(16)
        auth = os.urandom(16) if self.users else b""
        helo = ["HELO", {"nonce": nonce, "auth": auth, "keepalive": self.keepalive}]
        writer.write(msgpack.packb(helo, use_bin_type=True))
        await writer.drain()
        ping = await self._read_obj(reader, unpacker)
        ok, reason = False, "invalid ping message"
        salt: Any = ""
        if isinstance(ping, list) and len(ping) == 6 and ping[0] == "PING":
            _, client_host, salt, key_digest, username, pw_digest = ping
            if key_digest != digest(salt, client_host, nonce, self.shared_key):
                reason = "shared_key mismatch"
            elif self.users and (
                username not in self.users or pw_digest != digest(auth, username, self.users[username])
            ):
                reason = "username/password mismatch"
            else:
                ok, reason = True, ""
        pong = [
            "PONG",
            ok,
            reason,
            self.hostname,
            digest(salt, self.hostname, nonce, self.shared_key) if ok else "",
        ]
        writer.write(msgpack.packb(pong, use_bin_type=True))
        await writer.drain()
        conn.handshake = ok
        if not ok:
            conn.error = reason
        return ok

    async def _message(self, conn: Connection, msg: Any, writer: asyncio.StreamWriter) -> None:
        if not (isinstance(msg, list) and len(msg) >= 2 and isinstance(msg[0], str)):
            raise ValueError(f"not a Forward-protocol message: {msg!r}")
        if self.keep_events:
            self.raw_messages.append(msg)
        tag, second = msg[0], msg[1]
        events: list[tuple[Any, Any]]
        if isinstance(second, list):  # Forward: [tag, [[time, record], ...], option?]
            mode, events, option = "Forward", [tuple(e) for e in second], msg[2] if len(msg) > 2 else {}
        elif isinstance(second, bytes | str):  # (Compressed)PackedForward
            option = msg[2] if len(msg) > 2 else {}
            conn.entries_types.add("bin" if isinstance(second, bytes) else "str")
            blob = second if isinstance(second, bytes) else second.encode("utf-8", "surrogateescape")
            if option.get("compressed") == "gzip":
                mode, blob = "CompressedPackedForward", gzip.decompress(blob)  # handles multiple members
            else:
                mode = "PackedForward"
            inner = _unpacker()
            inner.feed(blob)
            events = [tuple(e) for e in inner]
            if "size" in option and option["size"] != len(events):
                raise ValueError(f"option size={option['size']} but {len(events)} entries")
        else:  # Message: [tag, time, record, option?]
            mode, events, option = "Message", [(second, msg[2])], msg[3] if len(msg) > 3 else {}
        conn.modes.add(mode)
        self.count += len(events)
        if self.keep_events:
            conn.options.append(option)
            self.events.extend(Event(tag, t, record, mode, conn.index) for t, record in events)
        chunk = option.get("chunk") if isinstance(option, dict) else None
        if chunk is not None:
            conn.chunks.append(chunk)
            if self.ack:
                writer.write(msgpack.packb({"ack": "wrong" + chunk if self.wrong_ack else chunk}))
                await writer.drain()
        await self._notify()
