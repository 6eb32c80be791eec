"""App's lifecycle: startup → main (one TaskGroup) → shutdown; a failing task stops the agent with rc 1,
a task that finishes its work does not stop it. No engine: the engine-mode agent points at a missing
socket (its inventory keeps retrying), the sidecar-mode one needs none."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent import config
from agent.app import App
from tests.support.toolbox import until


@pytest.fixture
async def no_signal_handlers() -> AsyncIterator[None]:
    """App.run installs SIGTERM/SIGINT handlers on the (shared) test loop: take them off after."""
    yield
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


def load(tmp_path: Path, **flags: object) -> config.Config:
    base = {
        "docker.host": f"unix://{tmp_path / 'missing.sock'}",
        "web.listen-address": "127.0.0.1:0",
        "path.state": str(tmp_path),
    }
    return config.load({**base, **flags}, env={})


async def test_a_task_that_raises_stops_the_agent_with_rc_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, no_signal_handlers: None
) -> None:
    app = App(load(tmp_path))

    async def broken() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("made to fail by the test")

    app.scraper.run = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="dockwatch"):
        rc = await asyncio.wait_for(app.run(), 30)
    assert rc == 1
    assert "collect stopped unexpectedly" in caplog.text
    assert "made to fail by the test" in caplog.text


async def test_a_finished_task_does_not_stop_the_agent_and_sigterm_gives_rc_0(
    tmp_path: Path, no_signal_handlers: None
) -> None:
    app = App(load(tmp_path, sidecar=True))  # its inventory's run() returns at once: nothing to follow
    run = asyncio.create_task(app.run())
    try:
        await until(lambda: (app._runner is not None and app.inventory.ready.is_set()) or run.done(), 30)
        assert not run.done(), run
        host, port = app._runner.addresses[0][:2]  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http, http.get(f"http://{host}:{port}/readyz") as resp:
            assert resp.status == 200
        assert not run.done(), "the agent stopped when a task finished its work"
    finally:
        app.stopping.set()  # what the SIGTERM handler does
        rc = await asyncio.wait_for(run, 30)
    assert rc == 0
