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
