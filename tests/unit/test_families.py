"""exporters/prometheus/families.py against prometheus_client, the reference: the same calls give
the same bytes in both formats, and the agent's process_* families match ProcessCollector's."""

from __future__ import annotations

import math
import os
from typing import Any

import prometheus_client
import prometheus_client.core as pc
import pytest
from prometheus_client.openmetrics.exposition import generate_latest as pc_openmetrics

from exporters.prometheus import families as f

VALUES = [0, 1, -1, 0.5, 1e-9, 1234567.0, 12345678.0, 1e21, 2**53 + 1, math.inf, -math.inf, math.nan]
LABELS = ["plain", 'quo"te', "back\\slash", "new\nline", "ünï code", ""]


def build(lib: Any) -> list[Any]:
    out = []
    g = lib.GaugeMetricFamily(
        "dockwatch_test_gauge", 'Help with "quotes", \\ and\na newline.', labels=["b", "a"]
    )
    for i, v in enumerate(VALUES):
        g.add_metric([LABELS[i % len(LABELS)], str(i)], v)
    out.append(g)
    out.append(lib.GaugeMetricFamily("dockwatch_test_single", "One value.", value=42))
    c = lib.CounterMetricFamily("dockwatch_test_events_total", "Counted.", labels=["sink"])
    c.add_metric(["a"], 3)
    c.add_metric(["b"], 2.5, timestamp=1700000000.123)
    out.append(c)
    out.append(lib.CounterMetricFamily("dockwatch_test_plain", "No suffix given.", value=7))
    out.append(lib.GaugeMetricFamily("dockwatch_test_empty", "No samples.", labels=["x"]))
    return out


class _Registry:
    def __init__(self, fams: list[object]) -> None:
        self.fams = fams

    def collect(self) -> list[object]:
        return self.fams


def test_the_same_families_give_the_same_bytes_as_prometheus_client() -> None:
    ours, ref = build(f), build(pc)
    assert f.generate(ours) == prometheus_client.generate_latest(_Registry(ref))  # type: ignore[arg-type]
    assert f.generate(ours, True) + b"# EOF\n" == pc_openmetrics(_Registry(ref))  # type: ignore[no-untyped-call]


def test_prometheus_client_families_render_the_same_through_ours() -> None:
    """FamilyTexts and the name[] filter may be handed either kind (tests build theirs with the client)."""
    ref = build(pc)
    info = pc.InfoMetricFamily("dockwatch_test", "Info.", value={"version": "1"})
    created = pc.CounterMetricFamily("dockwatch_test_c", "With created.", labels=["a"])
    created.add_metric(["x"], 1, created=1700000000.0)
    ref += [info, created]
    assert f.generate(ref) == prometheus_client.generate_latest(_Registry(ref))  # type: ignore[arg-type]
    assert f.generate(ref, True) + b"# EOF\n" == pc_openmetrics(_Registry(ref))  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("v", [*VALUES, 0.1, 1e6, 9999999.0, 1e7 + 0.5, -1e22])
def test_go_float_is_client_pythons(v: float) -> None:
    from prometheus_client.utils import floatToGoString

    assert f.go_float(v) == floatToGoString(v)  # type: ignore[no-untyped-call]


def test_process_metrics_are_client_pythons() -> None:
    ours = {m.name: m for m in f.ProcessMetrics().collect()}
    ref = {m.name: m for m in prometheus_client.ProcessCollector(registry=None).collect()}
    assert (
        set(ours)
        == set(ref)
        == {
            "process_virtual_memory_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_cpu_seconds",
            "process_open_fds",
            "process_max_fds",
        }
    )
    for name, m in ours.items():
        r = ref[name]
        assert (m.documentation, m.type, [s.name for s in m.samples]) == (
            r.documentation,
            r.type,
            [s.name for s in r.samples],
        ), name
    for name in ("process_start_time_seconds", "process_max_fds"):
        assert ours[name].samples[0].value == ref[name].samples[0].value
    assert ours["process_resident_memory_bytes"].samples[0].value > 10 * 2**20


def test_process_open_fds_counts_the_descriptors() -> None:
    def open_fds() -> float:
        (m,) = [m for m in f.ProcessMetrics().collect() if m.name == "process_open_fds"]
        return m.samples[0].value

    # Within a few: another thread of the test process may hold one more or one less meanwhile.
    before = open_fds()
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(300)]
    try:
        assert abs(open_fds() - (before + 300)) <= 3
    finally:
        for fd in fds:
            os.close(fd)
    assert abs(open_fds() - before) <= 3


def test_a_wrong_number_of_label_values_is_an_error() -> None:
    g = f.GaugeMetricFamily("x", "h", labels=["a", "b"])
    with pytest.raises(ValueError):
        g.add_metric(["only one"], 1)
