"""/metrics formats: OpenMetrics on Accept (strict reference parser), name[] filter, process_*."""

from __future__ import annotations

import gzip
import platform
import sys
import zlib

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.collector import Collection, Outcome
from agent.docker.models import Container
from agent.inventory import Snapshot
from agent.netstats import CollectResult, Membership, NetnsSample
from agent.procnet import DevCounters
from exporters.prometheus import names as n
from exporters.prometheus import render
from exporters.prometheus.render import MetricsPage, Renderer, head
from exporters.prometheus.scrape import EngineState, SelfMetrics
from exporters.prometheus.server import wants_openmetrics


def page() -> MetricsPage:
    c = Container(
        id="a" * 64,
        name='we"b',
        image="img:1",
        image_id="sha256:x",
        pid=1,
        network_mode="bridge",
        labels={"com.docker.compose.project": "shop"},
        health="healthy",
    )
    sample = NetnsSample(
        inode=1,
        owner=c,
        devices={"eth0": DevCounters(100, 2, 3, 4, 5, 6, 7, 8)},
        networks={"eth0": "front"},
        mib={"Tcp": {"CurrEstab": 9, "AttemptFails": 11}, "Udp": {"NoPorts": 13}},
        udp6={"NoPorts": 14},
        sockstat={"TCP": {"inuse": 15, "tw": 16}},
        tcp_states={"established": 1},
    )
    res = CollectResult(samples=[sample], members=[Membership(c, 1, c)])
    exp = Renderer().render("node1", "nid", res, {c.id: {"die": 2}}, {c.id: c}, [c])
    snap = Snapshot(containers={c.id: c}, node="node1", events_total={("container", "die"): 2})
    col = Collection(snap, {"netns": Outcome("netns", res, True, 0.0)})
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SelfMetrics(snap, col, EngineState()))  # type: ignore[arg-type]  # ours is structurally a client_python Collector
    reg.register(ProcessCollector(registry=None))
    return MetricsPage(exp, reg.collect())


def samples(families: object) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in families:  # type: ignore[attr-defined]
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def test_openmetrics_parses_strictly_and_carries_the_same_samples() -> None:
    p = page()
    text = p.body().decode()
    om = p.body(openmetrics=True).decode()
    assert om.endswith("\n# EOF\n") and om.count("# EOF") == 1
    assert "# EOF" not in text
    # The reference OpenMetrics parser refuses anything out of spec (families split, no EOF...).
    got_om = samples(parse_openmetrics(om))
    got_text = samples(parse_text(text))
    # Same series and values (process_* too: read once per collection, not per format).
    assert got_om == got_text
    assert got_om["container_network_receive_bytes_total"][0][1] == 100
    assert got_om["container_network_receive_bytes_total"][0][0]["name"] == 'we"b'
    # Counter families are named without _total in OpenMetrics, with it in the text format.
    assert "# TYPE container_network_receive_bytes counter\n" in om
    assert "# TYPE container_network_receive_bytes_total counter\n" in text
    assert "# TYPE process_cpu_seconds counter\n" in om
    assert "# TYPE dockwatch_container_info gauge\n" in om


def test_name_filter_keeps_only_the_named_series_in_both_formats() -> None:
    p = page()
    full = p.body(), p.body(openmetrics=True)
    wanted = {"container_network_receive_bytes_total", "dockwatch_build_info", "process_open_fds"}
    for om in (False, True):
        body = p.body(openmetrics=om, names=wanted).decode()
        got = samples(parse_openmetrics(body) if om else parse_text(body))
        assert set(got) == wanted, (om, set(got))
    # A family name is not a sample name: like prometheus_client, it selects nothing.
    assert p.body(names={"container_network_receive_bytes"}) == b""
    assert p.body(openmetrics=True, names={"nothing"}) == b"# EOF\n"
    # Filtered requests leave the cached whole bodies alone.
    assert (p.body(), p.body(openmetrics=True)) == full


@pytest.mark.parametrize("deflate", ["default", "zlib"])
def test_gzip_body_is_the_plain_body(deflate: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if deflate == "zlib":  # the fallback where python-isal is not installed
        monkeypatch.setattr(render, "DEFLATE", zlib)
    p = page()
    for om in (False, True):
        blob = p.body(openmetrics=om, gz=True)
        assert blob[:2] == b"\x1f\x8b"
        assert gzip.decompress(blob) == p.body(openmetrics=om)


@pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")),
    reason="python-isal is a dependency on linux x86_64 and aarch64 only (pyproject.toml)",
)
def test_gzip_is_isal_where_it_is_a_dependency() -> None:
    """The agent must not quietly fall back to zlib's slower deflate where isal is installed."""
    assert render.DEFLATE.__name__ == "isal.isal_zlib"


def test_process_metrics_are_declared_as_client_python_exports_them() -> None:
    by_name = {m.name: m for m in n.ALL}
    for fam in ProcessCollector(registry=None).collect():
        (sample_name,) = {s.name for s in fam.samples}
        m = by_name[sample_name]
        assert m.help == fam.documentation
        assert m.kind.value == fam.type
        assert m.labels == ()


def test_openmetrics_head_escapes_help_and_drops_total() -> None:
    m = n.Metric("x_total", n.Kind.COUNTER, 'say "hi"\\ now.', ())
    assert head(m, True) == '# HELP x say \\"hi\\"\\\\ now.\n# TYPE x counter\n'
    assert head(m) == '# HELP x_total say "hi"\\\\ now.\n# TYPE x_total counter\n'


def test_accept_negotiation_like_prometheus_client() -> None:
    prometheus = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    assert wants_openmetrics(prometheus)
    assert wants_openmetrics("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert not wants_openmetrics("text/plain;version=0.0.4")
    assert not wants_openmetrics("")
    assert not wants_openmetrics("*/*")
    assert not wants_openmetrics("application/openmetrics-text;q=0")


def test_the_parts_are_the_kept_renderings_and_join_to_the_body() -> None:
    p = page()
    for om in (False, True):
        parts = p.parts(openmetrics=om)
        assert b"".join(parts) == p.body(openmetrics=om)
        # The per-container families are served as the renderer's kept bytes, not copies.
        kept = {id(x) for x in p.exposition.parts}
        assert sum(id(x) not in kept for x in parts) == (len(p.exposition.spans) if om else 0) + 1
