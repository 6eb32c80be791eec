"""Time as a parameter: the parts whose behaviour depends on time take a Clock, tests a fake one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clocks and asyncio.sleep."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


async def within(timeout: float, aw: Awaitable[object]) -> bool:
    """Await `aw` for at most `timeout` seconds: True if it finished, False on the timeout.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that arrives
    as the awaited thing completes, and the caller's loop then never ends on shutdown."""
    try:
        async with asyncio.timeout(timeout):
            await aw
    except TimeoutError:
        return False
    return True


class Wake:
    """asyncio.Event for one waiting task, without Event's deque of waiters: ~800 B less each, and
    every log reader has one (1,650 at 500 containers with three sinks; bench/RESULTS.md)."""

    __slots__ = ("_flag", "_fut")

    def __init__(self) -> None:
        self._flag = False
        self._fut: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            fut = self._fut
            if fut is not None and not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self, timeout: float | None = None) -> bool:
        """Until set, or `timeout` seconds: True if set. The timeout is a timer on the loop, not
        asyncio.timeout around a coroutine: ~400 B less while each idle reader waits."""
        if self._flag:
            return True
        if self._fut is not None:
            raise RuntimeError("Wake has one waiter at a time")
        loop = asyncio.get_running_loop()
        fut = self._fut = loop.create_future()
        timer = loop.call_later(timeout, _expire, fut) if timeout is not None else None
        try:
            await fut
        finally:
            self._fut = None
            if timer is not None:
                timer.cancel()
        return self._flag


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
