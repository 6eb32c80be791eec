"""agent/outage.py: loud once, a summary at a slow rate, one line on recovery; on a fake clock."""

from __future__ import annotations

import logging

import pytest

from agent.outage import Outage, fmt_duration
from tests.support.toolbox import FakeClock

log = logging.getLogger("test.outage")


def said(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == log.name]


def test_one_line_per_outage_then_a_summary_per_interval_then_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    o = Outage(log, "the Docker engine", every=60.0, clock=clock)
    with caplog.at_level(logging.INFO, logger=log.name):
        assert o.recovered() is False  # never down: nothing to say
        o.failed("cannot connect: no such file; fix: mount it", level=logging.ERROR)
        for _ in range(59):  # one attempt a second: nothing more for a minute
            clock.advance(1)
            o.failed("cannot connect: no such file; fix: mount it")
        clock.advance(1)
        o.failed("cannot connect: permission denied")  # 60 s after the first line: a summary
        clock.advance(30)
        assert o.recovered("connected to unix:///var/run/docker.sock") is True
        assert o.recovered() is False
    assert said(caplog) == [
        ("ERROR", "cannot connect: no such file; fix: mount it"),
        (
            "WARNING",
            "the Docker engine: still failing after 1m00s (61 failed attempts); "
            "last: cannot connect: permission denied",
        ),
        (
            "INFO",
            "the Docker engine: connected to unix:///var/run/docker.sock after 1m30s (61 failed attempts)",
        ),
    ]
    assert not o.down and o.attempts == 0


def test_a_new_outage_is_loud_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    o = Outage(log, "sink s", clock=clock)
    with caplog.at_level(logging.INFO, logger=log.name):
        o.failed("down", "sink s: cannot deliver: down")
        o.recovered()
        clock.advance(5)
        o.failed("down again", "sink s: cannot deliver: down again")
    assert [m for _, m in said(caplog)] == [
        "sink s: cannot deliver: down",
        "sink s: working again after 0s (1 failed attempts)",
        "sink s: cannot deliver: down again",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.4, "59s"), (60, "1m00s"), (1000, "16m40s"), (7260, "2h01m")]
)
def test_durations(seconds: float, text: str) -> None:
    assert fmt_duration(seconds) == text
