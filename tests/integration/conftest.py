"""Fixtures shared by the integration tests."""

from __future__ import annotations

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
