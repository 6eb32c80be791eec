"""Shared fixtures: the private test engine and a per-test handle that cleans up after itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import Engine, test_engine

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def engine_session() -> Iterator[Engine]:
    with test_engine() as eng:
        yield eng


@pytest.fixture
def engine(engine_session: Engine) -> Iterator[Engine]:
    """The session's engine; containers and networks made through it are removed after the test."""
    handle = Engine(
        host=engine_session.host,
        root=engine_session.root,
        owned=engine_session.owned,
        proc=engine_session.proc,
    )
    try:
        yield handle
    finally:
        handle.cleanup()
