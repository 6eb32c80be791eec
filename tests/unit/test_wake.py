"""agent.clock.Wake: asyncio.Event's behaviour for the one task that waits on it."""

from __future__ import annotations

import asyncio

import pytest

from agent.clock import Wake, within


async def test_set_before_wait_returns_at_once_and_stays_set_until_cleared() -> None:
    w = Wake()
    w.set()
    await asyncio.wait_for(w.wait(), 30)
    assert w.is_set()
    w.clear()
    assert not w.is_set()


async def test_a_waiter_is_woken_by_set_from_the_loop_and_from_a_thread() -> None:
    w = Wake()
    waiter = asyncio.create_task(w.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    w.set()
    await asyncio.wait_for(waiter, 30)
    w.clear()
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(w.wait())
    await asyncio.sleep(0)
    await asyncio.to_thread(loop.call_soon_threadsafe, w.set)  # how the log watcher wakes a reader
    await asyncio.wait_for(waiter, 30)


async def test_a_timed_out_wait_leaves_it_ready_for_the_next() -> None:
    w = Wake()
    assert not await within(0.01, w.wait())
    assert w._fut is None
    w.set()
    assert await within(30, w.wait())


async def test_one_waiter_at_a_time() -> None:
    w = Wake()
    first = asyncio.create_task(w.wait())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one waiter"):
        await w.wait()
    w.set()
    await asyncio.wait_for(first, 30)


async def test_wait_with_a_timeout_says_whether_it_was_set() -> None:
    w = Wake()
    assert not await w.wait(0.01)  # the timer fired: not set
    assert w._fut is None
    loop = asyncio.get_running_loop()
    loop.call_soon(w.set)
    assert await w.wait(30)
    w.clear()
    waiter = asyncio.create_task(w.wait(30))
    await asyncio.sleep(0)
    waiter.cancel()  # the agent stopping: the cancellation goes through, the timer goes with it
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert w._fut is None
