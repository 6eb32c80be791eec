"""The one retry loop: backoff while a sink is down, counters, a sink that raises, FAIL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import pytest

from agent.logs.delivery import SinkRunner
from agent.logs.record import LogRecord
from agent.logs.sinkspec import SinkSpec
from exporters.sinks.base import Outcome
from tests.support.toolbox import FakeClock, container

C = container(1, "x")


def recs(n: int, t: int | None = None) -> list[LogRecord]:
    t = time.time_ns() if t is None else t
    return [LogRecord(C, "stdout", t + i, b"%d" % i) for i in range(n)]


class ScriptSink:
    def __init__(self, script: list[Outcome | Exception]) -> None:
        self.name = "s"
        self.script = script  # outcomes (or exceptions) to return, then OK
        self.calls: list[float] = []
        self.opened = 0
        self.last_error = ""  # the core reads it (getattr) when send() answers RETRY

    async def open(self) -> None:
        self.opened += 1

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        self.calls.append(time.monotonic())
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return Outcome.OK

    async def close(self) -> None:
        pass


async def test_retry_with_capped_backoff_then_ok() -> None:
    sink = ScriptSink([Outcome.RETRY] * 6)
    clock = FakeClock()
    r = SinkRunner(SinkSpec("s", "x"), sink, backoff_base=0.01, backoff_cap=0.04, clock=clock)
    assert await r.deliver(recs(3)) is True
    st = r.stats
    assert (st.sent, st.retries, st.bytes) == (3, 6, 3) and st.last_success == clock.time()
    # The delays asked for (not measured): from 10 ms, doubling, capped at 40 ms; jitter x0.75-1.25.
    steps = [0.01, 0.02, 0.04, 0.04, 0.04, 0.04]
    assert len(clock.sleeps) == len(steps)
    assert all(0.75 * want <= got <= 1.25 * want for got, want in zip(clock.sleeps, steps, strict=True))
    assert sink.opened == 1


async def test_a_raising_sink_is_retried_not_fatal() -> None:
    sink = ScriptSink([RuntimeError("bug"), OSError("refused")])
    r = SinkRunner(SinkSpec("s", "x"), sink, backoff_base=0.001, clock=FakeClock())
    assert await r.deliver(recs(1)) is True
    assert r.stats.retries == 2


async def test_fail_is_counted_and_not_retried() -> None:
    sink = ScriptSink([Outcome.FAIL])
    r = SinkRunner(SinkSpec("s", "x"), sink)
    assert await r.deliver(recs(4)) is False
    assert r.stats.dropped == {"rejected": 4} and r.stats.sent == 0 and len(sink.calls) == 1


async def test_lag_is_age_of_newest_record() -> None:
    clock = FakeClock()
    r = SinkRunner(SinkSpec("s", "x"), ScriptSink([]), clock=clock)
    await r.deliver(recs(2, t=int(clock.time() * 1e9) - 5_000_000_001))  # newest: 5 s old
    assert r.stats.lag == 5.0


async def test_one_probe_while_down() -> None:
    """Ten tails of one sink that is down: the sink sees one attempt per backoff step, not ten."""
    sink = ScriptSink([Outcome.RETRY] * 5)
    r = SinkRunner(SinkSpec("s", "x"), sink, backoff_base=0.01, backoff_cap=0.02, clock=FakeClock())
    assert all(await asyncio.gather(*(r.deliver(recs(1)) for _ in range(10))))
    assert len(sink.calls) == 5 + 10 and r.stats.sent == 10


async def test_dead_sink_logs_its_first_failure_a_summary_every_5_minutes_and_its_recovery(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 retries 5 s apart (1000 s down): not 200 lines but the first failure, one summary at
    300, 600 and 900 s, and one line when the batch goes."""
    monkeypatch.setattr("agent.logs.delivery.random.random", lambda: 0.5)  # no jitter: 5 s exactly
    sink = ScriptSink([Outcome.RETRY] * 200)
    sink.last_error = "tcp://127.0.0.1:24224: connection refused"
    clock = FakeClock()
    r = SinkRunner(SinkSpec("central", "x"), sink, backoff_base=5.0, backoff_cap=5.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="agent"):
        assert await r.deliver(recs(1)) is True
    said = [(rec.levelname, rec.getMessage()) for rec in caplog.records if rec.levelno >= logging.INFO]
    assert said == [
        (
            "WARNING",
            "sink central: cannot deliver: tcp://127.0.0.1:24224: connection refused; retrying with "
            "backoff (up to 5s), its batches wait and nothing is committed past them",
        ),
        *[
            (
                "WARNING",
                f"sink central: still failing after {m}m00s ({n} failed attempts); "
                "last: tcp://127.0.0.1:24224: connection refused",
            )
            for m, n in ((5, 61), (10, 121), (15, 181))
        ],
        ("INFO", "sink central: delivering again after 16m40s (200 failed attempts)"),
    ]
    assert r.stats.retries == 200
    assert sum(1 for rec in caplog.records if rec.levelno == logging.DEBUG) == 200  # each attempt
