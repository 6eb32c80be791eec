"""The agent's own families are rendered as prometheus_client's generators render them, and their text is kept
across pages for the family objects a collector hands back unchanged (render.FamilyTexts): the
same bytes as rendering everything, in both formats, and the network map hands back the same
objects until its inputs change."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from agent.collector import Registry
from agent.hostfs import HostFS
from agent.inventory import Inventory
from agent.netstats import NetCollector
from exporters.prometheus import families as families_mod
from exporters.prometheus import render
from exporters.prometheus.netmap import NetmapMetrics
from exporters.prometheus.render import FamilyTexts, MetricsPage
from exporters.prometheus.scrape import Scraper
from tests.unit.test_netmap_metrics import API, SNAP, SWARM, WEB


class _Families(Collector):
    """Families in the registry shape prometheus_client's generators take (the reference)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def families(big: int) -> list[Metric]:
    """Small and big families, of every kind the agent exports, with label values to escape."""
    g = GaugeMetricFamily("dw_big_info", 'one per thing; "quoted" \\ help', labels=["name", "net"])
    for i in range(big):
        g.add_metric([f"c{i}", 'say "hi"\\\n' if i % 7 == 0 else f"n{i}"], 1)
    c = CounterMetricFamily("dw_events", "events", labels=["action"])
    for a in ("die", "start"):
        c.add_metric([a], 3)
    info = InfoMetricFamily("dw_build", "build", value={"version": "1.0"})
    ctr_big = CounterMetricFamily("dw_lines", "lines", labels=["name"])
    for i in range(big):
        ctr_big.add_metric([f"c{i}"], i * 1.5)
    return [c, g, info, ctr_big, GaugeMetricFamily("dw_up", "up", value=1)]


@pytest.mark.parametrize("openmetrics", [False, True])
def test_the_same_bytes_as_rendering_everything(openmetrics: bool) -> None:
    fams = families(100)
    gen = generate_openmetrics if openmetrics else generate_latest
    want = gen(_Families(fams))
    texts = FamilyTexts()
    assert texts.render(fams, openmetrics) == want
    assert texts.render(fams, openmetrics) == want  # from the memo
    assert texts.render(fams[:2], openmetrics) == gen(_Families(fams[:2]))
    assert texts.render([], openmetrics) == gen(_Families([]))


def test_unchanged_family_objects_are_not_rendered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    fams = families(100)
    texts = FamilyTexts()
    texts.render(fams, False)
    rendered: list[str] = []
    real = families_mod.generate

    def counting(fs: list[Metric], openmetrics: bool) -> bytes:
        rendered.extend(f.name for f in fs)
        return real(fs, openmetrics)

    monkeypatch.setattr(render, "generate", counting)
    again = families(100)
    again[1] = fams[1]  # the big gauge: the same object as on the last page
    texts.render(again, False)
    # The small families every time; the big counter is a new object; the kept gauge is not.
    assert rendered == ["dw_events", "dw_build", "dw_lines", "dw_up"]
    rendered.clear()
    texts.render(again, True)  # the other format has its own texts
    assert "dw_big_info" in rendered


def test_a_filtered_page_neither_uses_nor_evicts_the_memo() -> None:
    fams = families(100)
    texts = FamilyTexts()
    page = MetricsPage(render.Exposition([], []), fams, texts)
    full = page.body()
    assert page.body(names={"dw_big_info"}) == generate_latest(_Families([fams[1]]))
    assert MetricsPage(render.Exposition([], []), fams, texts).body() == full
    assert set(texts._memo[False]) == {id(fams[1]), id(fams[3])}


def test_the_network_map_hands_back_the_same_families_until_its_inputs_change() -> None:
    current = [SNAP]
    nm = NetmapMetrics(lambda: current[0], SWARM)
    first = list(nm.collect())
    # A counter-only change publishes a new snapshot with the same containers and networks.
    current[0] = replace(SNAP, generation=SNAP.generation + 1)
    second = list(nm.collect())
    assert all(a is b for a, b in zip(first, second, strict=True))
    # A container left: the containers mapping is a new object, so the families are rebuilt.
    current[0] = replace(SNAP, containers={WEB.id: WEB})
    third = list(nm.collect())
    by_name = {m.name: m for m in third}
    name = "dockwatch_container_network_info"
    assert by_name[name] is not {m.name: m for m in first}[name]
    names = {s.labels["name"] for s in by_name[name].samples}
    assert names == {WEB.name} and API.name not in names


async def test_a_failing_render_still_serves_the_agents_own_families(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fallback page (no per-container families) once raised itself: Exposition([], []).
    scraper = Scraper(Inventory(), Registry(NetCollector(HostFS(procfs=Path("/nonexistent")))))

    def broken(*args: object) -> render.Exposition:
        raise RuntimeError("a renderer bug")

    monkeypatch.setattr(scraper.renderer, "render", broken)
    body = (await scraper.scrape()).decode()
    assert 'dockwatch_scrape_collector_success{collector="netns"} 0.0' in body
    assert "container_network_receive_bytes_total" not in body
    assert render.Exposition([], []).encoded() == b""
