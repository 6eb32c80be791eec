"""A byte-for-byte proxy in front of the real engine's socket that can hold back container inspects:
a dockerd slow to answer them (it is busy copying a fast writer's logs) made deterministic. Every
other request (events, lists, pings) passes at once. For the agent's Engine API client only: one
request at a time per connection (HTTP/1.1 without pipelining), requests without bodies."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from types import TracebackType

INSPECT = re.compile(rb"(?:GET|HEAD) /(?:v[\d.]+/)?containers/(?!json\b)[^/?\s]+/json\b")


class EngineProxy:
    def __init__(self, upstream: str, path: Path) -> None:
        """`upstream`: the engine's `unix://` address; `path`: where this proxy listens."""
        assert upstream.startswith("unix://"), upstream
        self.upstream = upstream.removeprefix("unix://")
        self.path = path
        self.inspects_open = asyncio.Event()
        self.inspects_open.set()
        self.held = 0  # inspect requests waiting now
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def hold_inspects(self) -> None:
        self.inspects_open.clear()

    def release_inspects(self) -> None:
        self.inspects_open.set()

    async def __aenter__(self) -> EngineProxy:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release_inspects()
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        for t in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            ur, uw = await asyncio.open_unix_connection(self.upstream)
        except OSError:
            cw.close()
            self._conns.discard(task)
            return
        back = asyncio.create_task(self._pump(ur, cw, gate=False))
        try:
            await self._pump(cr, uw, gate=True)
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await back
            for w in (uw, cw):
                w.close()
            self._conns.discard(task)

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, gate: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await r.read(65536):
                if gate and INSPECT.search(data) and not self.inspects_open.is_set():
                    self.held += 1
                    try:
                        await self.inspects_open.wait()
                    finally:
                        self.held -= 1
                w.write(data)
                await w.drain()
