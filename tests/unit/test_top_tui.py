"""The live view's keys with a scripted source, headless (Textual's pilot): fast and exact.

The same keys are proven in a real terminal against a real engine in
tests/integration/test_top.py; these cover the edges quickly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.pilot import Pilot

from agent.procnet import DevCounters
from agent.top.model import Iface, NsCounters, Sample
from agent.top.sources import SourceError
from agent.top.tui import DetailScreen, HelpScreen, TopApp
from tests.support.toolbox import present


class Scripted:
    """Each sample adds `per_second[name]` bytes per second of received traffic."""

    label = "scripted"

    def __init__(self, per_second: dict[str, int], fail: range = range(0)) -> None:
        self.per_second = per_second
        self.n = 0
        self.fail = fail
        self.closed = False

    async def start(self) -> None:
        pass

    async def sample(self) -> Sample:
        self.n += 1
        if self.n in self.fail:
            raise SourceError("agent unreachable")
        t = float(self.n)
        nss = tuple(
            NsCounters(
                key=name,
                name=name,
                ifaces=(Iface("eth0", f"net-{name}", DevCounters(int(rate * t), int(t), 0, 0, 0, 0, 0, 0)),),
                project="shop" if name.startswith("shop") else "",
            )
            for name, rate in self.per_second.items()
        )
        return Sample(mono=t, wall=1_700_000_000 + t, namespaces=nss, node="n1")

    async def sockets(self, ns: NsCounters) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


def names(app: TopApp) -> list[str]:
    return [r.name for r in app.visible_rows()]


async def until(pilot: Pilot[int], cond: Callable[[], object], what: str) -> None:
    for _ in range(200):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"never: {what}")


async def test_sort_filter_pause_detail_help_quit() -> None:
    src = Scripted({"shop-web": 300, "shop-db": 100, "blog": 200})
    app = TopApp(src, interval=0.05)
    async with app.run_test(size=(160, 30)) as pilot:
        await until(pilot, lambda: app.shown_frame is not None and app.shown_frame.elapsed, "two samples")
        assert names(app) == ["shop-web", "blog", "shop-db"]
        await pilot.press("r")
        assert names(app) == ["shop-db", "blog", "shop-web"]
        await pilot.press("less_than_sign")  # previous column: NAME, A→Z
        assert app.sort_key == "name" and names(app) == ["blog", "shop-db", "shop-web"]
        await pilot.press("s")  # the sort menu: down from NAME is RXB/s
        await pilot.press("down", "enter")
        assert app.sort_key == "rx" and names(app) == ["shop-web", "blog", "shop-db"]

        await pilot.press("slash", *"project:shop", "enter")
        assert names(app) == ["shop-web", "shop-db"]
        await pilot.press("escape")
        assert len(names(app)) == 3

        await pilot.press("p")
        frozen = present(app.shown_frame)
        await until(
            pilot, lambda: app.latest is not None and app.latest.end_wall > frozen.end_wall, "sampling"
        )
        assert app.shown_frame is frozen  # the display waits; sampling goes on
        await pilot.press("p")
        assert app.shown_frame is app.latest

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen), "detail")
        await pilot.press("escape")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code == 0
    assert src.closed


async def test_a_failed_sample_is_shown_and_the_next_rate_spans_the_gap() -> None:
    src = Scripted({"web": 1000}, fail=range(3, 6))
    app = TopApp(src, interval=0.05)
    async with app.run_test(size=(160, 30)) as pilot:
        status = app.query_one("#status")
        await until(pilot, lambda: "agent unreachable" in str(status.render()), "the error in the header")
        await until(pilot, lambda: src.n >= 6 and app.error == "", "the source back")
        frame = app.shown_frame
        assert frame is not None and frame.elapsed is not None
        (row,) = frame.rows
        # Samples 2 and 6 are 4 s apart on the scripted clock: still 1000/s, no spike, no dip.
        assert row.rx_bps == 1000
        await pilot.press("q")


class HeldSockets(Scripted):
    """The detail view's socket read waits until the test lets it finish."""

    def __init__(self, per_second: dict[str, int]) -> None:
        super().__init__(per_second)
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def sockets(self, ns: NsCounters) -> None:
        self.asked.set()
        await self.release.wait()


async def test_the_detail_closed_while_its_sockets_are_read() -> None:
    """The detail view refreshes after reading sockets: if it was closed meanwhile, the refresh
    finds nothing to update and sampling goes on (the sampler died with NoMatches: a flaky run)."""
    src = HeldSockets({"web": 100, "db": 200})
    app = TopApp(src, interval=0.02)
    async with app.run_test(size=(160, 30)) as pilot:
        await until(pilot, lambda: app.shown_frame is not None, "a sample")
        await pilot.press("enter")
        await until(pilot, lambda: src.asked.is_set(), "the detail reading sockets")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DetailScreen), "the detail closed")
        src.release.set()
        n = src.n
        await until(pilot, lambda: src.n >= n + 3, "sampling after the detail closed")
        assert app.error == ""
        await pilot.press("q")
    assert app.return_code == 0
