"""The client's one request path against a fake Engine API on a unix socket: typed /version and
/info, error statuses, bodies that are not JSON, the events stream's `opened` signal and the logs
stream's frames. The real engine answers the same calls in tests/integration."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agent.docker.client import DockerClient
from agent.docker.models import EngineError, Info, NotFound, Version
from agent.docker.stdcopy import CorruptFrame, LogFrame, since_param
from agent.docker.timefmt import parse_time

T = "2026-11-23T08:19:30.000000001Z"


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload


class FakeEngine:
    """Answers a few Engine API paths; records each request's path and query."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.event_sent = asyncio.Event()
        self.release_event = asyncio.Event()
        self.logs_body = b""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.query)))
        path = request.path.removeprefix("/v1.45")
        if path == "/version":
            return web.json_response({"Version": "27.3.1", "ApiVersion": "1.47"})
        if path == "/info":
            return web.json_response(
                {"Name": "node-a", "Swarm": {"NodeID": "abc123", "LocalNodeState": "active"}}
            )
        if path == "/containers/gone/json":
            return web.json_response({"message": "No such container: gone"}, status=404)
        if path == "/containers/busy/json":
            return web.json_response({"message": "engine busy"}, status=500)
        if path == "/containers/html/json":
            return web.Response(text="<html>proxy</html>", content_type="text/html")
        if path == "/events":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await self.release_event.wait()  # sent only once the test says so
            await resp.write(
                json.dumps({"Type": "container", "Action": "start", "Actor": {"ID": "c1"}}).encode() + b"\n"
            )
            self.event_sent.set()
            return resp  # the stream ends: the client says so as EngineError
        if path.endswith("/logs"):
            return web.Response(body=self.logs_body, content_type="application/vnd.docker.raw-stream")
        return web.json_response({"message": "page not found"}, status=404)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeEngine, DockerClient]]:
    d = tempfile.mkdtemp(prefix="dw-api-")  # a unix socket path must stay short
    sock = str(Path(d, "docker.sock"))
    eng = FakeEngine()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", eng.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, sock).start()
    client = DockerClient(f"unix://{sock}", timeout=5)
    try:
        yield eng, client
    finally:
        await client.close()
        await runner.cleanup()
        shutil.rmtree(d, ignore_errors=True)


async def test_version_and_info_are_typed(fake: tuple[FakeEngine, DockerClient]) -> None:
    eng, client = fake
    assert await client.negotiate() == Version(version="27.3.1", api_version="1.47")
    assert client.api_version == "1.45"  # the lower of the engine's and ours
    assert await client.info() == Info(name="node-a", node_id="abc123")
    assert [p for p, _ in eng.requests] == ["/version", "/v1.45/info"]


def test_info_outside_a_swarm_has_no_node_id() -> None:
    assert Info.from_api({"Name": "n", "Swarm": {"NodeID": "", "LocalNodeState": "inactive"}}) == Info(
        "n", ""
    )
    assert Info.from_api({}) == Info("", "")
    assert Version.from_api({}).api_version == "1.24"  # engines too old to say speak 1.24


async def test_error_statuses_and_bodies(fake: tuple[FakeEngine, DockerClient]) -> None:
    _, client = fake
    with pytest.raises(NotFound) as nf:
        await client.inspect("gone")
    assert (str(nf.value), nf.value.status) == ("No such container: gone", 404)
    with pytest.raises(EngineError) as busy:
        await client.inspect("busy")
    assert (str(busy.value), busy.value.status) == ("GET /containers/busy/json: 500 engine busy", 500)
    with pytest.raises(EngineError, match="response is not JSON"):
        await client.inspect("html")


async def test_unreachable_engine_says_how_to_fix_it(tmp_path: Path) -> None:
    async with DockerClient(f"unix://{tmp_path}/none.sock") as client:
        with pytest.raises(EngineError) as err:
            await client.info()
    assert err.value.unreachable and "mount the socket" in str(err.value)


async def test_events_signal_opened_before_the_first_event(fake: tuple[FakeEngine, DockerClient]) -> None:
    eng, client = fake
    seen: list[str] = []

    async def opened() -> None:
        seen.append("opened")
        assert not eng.event_sent.is_set()  # the subscription is up; no event was read yet
        eng.release_event.set()

    with pytest.raises(EngineError, match="closed the stream"):
        async for ev in client.events(opened=opened):
            seen.append(f"{ev.type} {ev.action} {ev.actor_id}")
    assert seen == ["opened", "container start c1"]


async def test_logs_yield_frames_and_ask_since(fake: tuple[FakeEngine, DockerClient]) -> None:
    eng, client = fake
    eng.logs_body = (
        frame(1, T.encode() + b" out\n")
        + frame(0, b"stdin is not container output")
        + frame(2, T.encode() + b" partial")
        + frame(3, b"system: an engine message")
        + frame(1, b"no-timestamp-here")
    )
    got = [f async for frames in client.logs("c1", since_ns=5, follow=False) for f in frames]
    assert got == [
        LogFrame("stdout", parse_time(T), b"out", True),
        LogFrame("stderr", parse_time(T), b"partial", False),
        CorruptFrame("stdout", "no timestamp"),
    ]
    path, query = eng.requests[-1]
    assert path == "/containers/c1/logs"
    assert query == {"follow": "0", "stdout": "1", "stderr": "1", "timestamps": "1", "since": since_param(5)}


async def test_logs_that_lose_the_framing_are_an_engine_error(fake: tuple[FakeEngine, DockerClient]) -> None:
    eng, client = fake
    eng.logs_body = b"2026-11-23T08:19:30Z a TTY stream has no frames\n"
    with pytest.raises(EngineError, match="bad stdcopy header"):
        async for _ in client.logs("c1"):
            pass
