"""A collector that raises, in a running agent on a real engine (issue 9 item 2): the agent keeps
serving /metrics, reports that collector's success 0, and recovers when it works again, at
scrape time and in interval mode (where an unguarded loop used to end the agent with rc 1).

The agent runs in-process (its App on this test's event loop) so the collector can be made to
raise; everything else is the real thing: engine, inventory, HTTP server.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from agent import config
from agent.app import App
from agent.netstats import NetCollector
from tests.support.agentproc import Series, free_port, parse, select
from tests.support.engine import BUSYBOX_IMAGE, Engine

pytestmark = pytest.mark.docker
RX = "container_network_receive_bytes_total"
SUCCESS = "dockwatch_scrape_collector_success"


async def until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("interval", ["0", "0.5s"])
async def test_a_raising_collector_keeps_the_agent_serving(
    engine: Engine, interval: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"dwt-coll-{uuid.uuid4().hex[:8]}"
    engine.run(BUSYBOX_IMAGE, "sleep", "600", name=name)
    port = free_port()
    cfg = config.load(
        {
            "docker.host": engine.host,
            "web.listen-address": f"127.0.0.1:{port}",
            "collector.interval": interval,
            "collector.tcp-states": True,
            "collector.tcp-states-interval": "1s",
        },
        env={},
    )
    real = NetCollector.collect

    def broken(self: NetCollector, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("collector made to raise by the test")

    monkeypatch.setattr(NetCollector, "collect", broken)
    app = App(cfg)
    run = asyncio.create_task(app.run())
    loop = asyncio.get_running_loop()
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> tuple[int, str]:
                assert not run.done(), f"the agent stopped: {run}"
                try:
                    async with http.get(url + path) as resp:
                        return resp.status, await resp.text()
                except aiohttp.ClientError:
                    return 0, ""

            async def metrics_when(cond: Callable[[dict[str, Series]], bool]) -> dict[str, Series] | None:
                status, body = await get("/metrics")
                if status != 200:
                    raise AssertionError(f"/metrics answered {status}: {body[:500]}")
                m = parse(body)
                return m if cond(m) else None

            async def ready() -> bool:
                return (await get("/readyz"))[0] == 200

            await until(ready, 120, "agent ready")  # relisting every container of a busy shared engine

            def failing(m: dict[str, Series]) -> bool:
                ok = {lbl["collector"]: v for lbl, v in m.get(SUCCESS, [])}
                # In interval mode the body may be from before the first listing: wait for one after.
                connected = m["dockwatch_engine_connected"][0][1] == 1
                return connected and ok.get("netns") == 0 and ok.get("tcp_states") == 1

            m = await until(lambda: metrics_when(failing), 60, "netns reported failing, tcp_states not")
            assert not select(m.get(RX, []), name=name)  # that collector's series are missing...
            assert m["dockwatch_containers_tracked"][0][1] >= 1  # ...the rest of the scrape is served
            assert select(m["dockwatch_container_events_total"], name=name, action="start")
            for _ in range(5):  # and it stays that way: nothing stops, nothing answers 500
                await metrics_when(failing)
                await asyncio.sleep(0.2)
            assert (await get("/healthz"))[0] == 200 and not run.done()

            monkeypatch.setattr(NetCollector, "collect", real)

            def recovered(m: dict[str, Series]) -> bool:
                ok = {lbl["collector"]: v for lbl, v in m.get(SUCCESS, [])}
                return ok.get("netns") == 1 and bool(select(m.get(RX, []), name=name))

            await until(lambda: metrics_when(recovered), 60, "netns back, the container's series with it")
    finally:
        app.stopping.set()
        await asyncio.wait({run}, timeout=30)  # never hangs, even if the agent would
        for sig in (signal.SIGTERM, signal.SIGINT):  # App.run installed them on this test loop
            loop.remove_signal_handler(sig)
    assert run.done(), "the agent did not stop within 30 s of being asked to"
    assert run.result() == 0
