"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.support.agentproc import Agent
from tests.support.engine import Engine


@pytest.fixture(scope="module", params=["at-scrape", "interval"])
def agent(request: pytest.FixtureRequest, engine_session: Engine) -> Iterator[Agent]:
    """The agent in both collection modes: at scrape time, and on a background interval.
    (A module that needs another agent defines its own `agent` fixture.)"""
    args = ["--collector.interval=2s"] if request.param == "interval" else []
    a = Agent(engine_session, *args).start()
    yield a
    assert a.stop() == 0, a.logtext()


@pytest.fixture
def veth_parent() -> Iterator[str]:
    """One end of a veth pair made for the test: a macvlan parent (this kernel has no dummy links)."""
    tag = uuid.uuid4().hex[:8]  # unique per test: parallel runs share the host's link names
    a, b = f"dwva{tag}", f"dwvb{tag}"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    subprocess.run(["ip", "link", "set", a, "up"], check=True)
    subprocess.run(["ip", "link", "set", b, "up"], check=True)
    try:
        yield a
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)
