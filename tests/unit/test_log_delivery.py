"""The one retry loop: backoff while a sink is down, counters, a sink that raises, FAIL."""

from __future__ import annotations

import asyncio
import time

from agent.docker.models import Container
from agent.logs.delivery import SinkRunner
from agent.logs.filters import SinkSpec
from agent.logs.record import LogRecord
from exporters.sinks.base import Outcome

C = Container(id="d" * 64, name="x", image="i", image_id="", pid=1, network_mode="")


def recs(n: int, t: int | None = None) -> list[LogRecord]:
    t = time.time_ns() if t is None else t
    return [LogRecord(C, "stdout", t + i, b"%d" % i) for i in range(n)]


class ScriptSink:
    def __init__(self, script: list[object]) -> None:
        self.name = "s"
        self.script = script  # outcomes (or exceptions) to return, then OK
        self.calls: list[float] = []
        self.opened = 0

    async def open(self) -> None:
        self.opened += 1

    async def send(self, batch):
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
    r = SinkRunner(SinkSpec("s", "x"), sink, backoff_base=0.01, backoff_cap=0.04)
    assert await r.deliver(recs(3)) is True
    st = r.stats
    assert (st.sent, st.retries, st.bytes) == (3, 6, 3) and st.last_success > 0
    gaps = [b - a for a, b in zip(sink.calls, sink.calls[1:], strict=False)]
    assert gaps[0] < 0.05 and max(gaps) < 0.2  # grows from 10 ms, capped at 40 ms (x1.25 jitter)
    assert sink.opened == 1


async def test_a_raising_sink_is_retried_not_fatal() -> None:
    sink = ScriptSink([RuntimeError("bug"), OSError("refused")])
    r = SinkRunner(SinkSpec("s", "x"), sink, backoff_base=0.001)
    assert await r.deliver(recs(1)) is True
    assert r.stats.retries == 2


async def test_fail_is_counted_and_not_retried() -> None:
    sink = ScriptSink([Outcome.FAIL])
    r = SinkRunner(SinkSpec("s", "x"), sink)
    assert await r.deliver(recs(4)) is False
    assert r.stats.dropped == {"rejected": 4} and r.stats.sent == 0 and len(sink.calls) == 1


async def test_lag_is_age_of_newest_record() -> None:
    r = SinkRunner(SinkSpec("s", "x"), ScriptSink([]))
    await r.deliver(recs(2, t=time.time_ns() - 5_000_000_000))
    assert 4.9 < r.stats.lag < 6


async def test_one_probe_while_down() -> None:
    """Ten tails of one sink that is down: the sink sees one attempt per backoff step, not ten."""
    sink = ScriptSink([Outcome.RETRY] * 5)
    r = SinkRunner(SinkSpec("s", "x"), sink, backoff_base=0.01, backoff_cap=0.02)
    assert all(await asyncio.gather(*(r.deliver(recs(1)) for _ in range(10))))
    assert len(sink.calls) == 5 + 10 and r.stats.sent == 10
