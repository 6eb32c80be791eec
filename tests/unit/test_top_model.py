"""dockwatch top's pure parts: rates from two samples, columns, sort, filter, plain and JSON output."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agent.procnet import DevCounters
from agent.top import plain
from agent.top.model import (
    COLUMNS,
    Iface,
    NsCounters,
    Row,
    Sample,
    compute,
    fit_columns,
    fmt_number,
    parse_filter,
    parse_number,
    sort_rows,
)


def dev(rx: int = 0, tx: int = 0, rxp: int = 0, txp: int = 0, err: int = 0, drop: int = 0) -> DevCounters:
    return DevCounters(rx, rxp, err, drop, tx, txp, 0, 0)


def ns(
    name: str,
    *ifaces: Iface,
    key: str | None = None,
    fails: int = 0,
    retrans: int = 0,
    estab: int = 0,
    project: str = "",
    service: str = "",
) -> NsCounters:
    mib = {"Tcp": {"AttemptFails": fails, "RetransSegs": retrans, "CurrEstab": estab}}
    return NsCounters(key=key or name, name=name, ifaces=ifaces, mib=mib, project=project, service=service)


def sample(t: float, *nss: NsCounters) -> Sample:
    return Sample(mono=t, wall=1_700_000_000 + t, namespaces=nss, node="n1")


def test_rates_are_deltas_over_the_real_elapsed_time() -> None:
    a = sample(
        10.0, ns("web", Iface("eth0", "front", dev(rx=1000, tx=500, rxp=10, txp=5)), fails=3, retrans=1)
    )
    b = sample(
        12.5,
        ns(
            "web",
            Iface("eth0", "front", dev(rx=6000, tx=3000, rxp=35, txp=30, err=5, drop=10)),
            fails=8,
            retrans=6,
        ),
    )
    f = compute(a, b)
    assert f.elapsed == pytest.approx(2.5)
    (r,) = f.rows
    assert r.rx_bps == pytest.approx(5000 / 2.5)
    assert r.tx_bps == pytest.approx(2500 / 2.5)
    assert r.rx_pps == pytest.approx(25 / 2.5)
    assert r.tx_pps == pytest.approx(25 / 2.5)
    assert r.errors == pytest.approx(5 / 2.5)
    assert r.drops == pytest.approx(10 / 2.5)
    assert r.failed == pytest.approx(5 / 2.5)
    assert r.retrans == pytest.approx(5 / 2.5)
    assert f.start_wall == a.wall and f.end_wall == b.wall


def test_the_span_shown_is_the_elapsed_time_even_if_the_wall_clock_was_stepped() -> None:
    """Rates are over the monotonic interval; the wall-clock span shown with them ends at this
    read and is exactly that long, whatever the wall clock did in between (stepped by 10 ms here)."""
    a = sample(10.0, ns("web", Iface("eth0", "front", dev(rx=1000))))
    b = replace(sample(12.0, ns("web", Iface("eth0", "front", dev(rx=3000)))), wall=1_700_000_012.010)
    f = compute(a, b)
    assert f.elapsed == pytest.approx(2.0)
    assert f.rows[0].rx_bps == pytest.approx(1000)
    assert f.end_wall == b.wall and f.start_wall == pytest.approx(b.wall - 2.0)
    assert f.rows[0].start_wall == f.start_wall and f.rows[0].end_wall == f.end_wall
    # A source that timed each namespace's read: that row's span is its own, end - elapsed too.
    na = replace(a.namespaces[0], mono=10.1, wall=1_700_000_010.1)
    nb = replace(b.namespaces[0], mono=12.3, wall=1_700_000_012.32)
    (row,) = compute(replace(a, namespaces=(na,)), replace(b, namespaces=(nb,))).rows
    assert row.elapsed == pytest.approx(2.2) and row.rx_bps == pytest.approx(2000 / 2.2)
    assert nb.wall is not None and row.end_wall == nb.wall and row.start_wall == pytest.approx(nb.wall - 2.2)


def test_interfaces_sum_and_networks_are_listed_once() -> None:
    a = sample(0, ns("m", Iface("eth0", "a", dev(rx=0)), Iface("eth1", "b", dev(rx=0))))
    b = sample(1, ns("m", Iface("eth0", "a", dev(rx=100)), Iface("eth1", "b", dev(rx=50))))
    (r,) = compute(a, b).rows
    assert r.rx_bps == 150
    assert r.ns.networks == ("a", "b")
    assert [i.rx_bps for i in r.ifaces] == [100, 50]


def test_a_container_seen_for_the_first_time_has_no_rate_not_a_spike() -> None:
    a = sample(0, ns("old", Iface("eth0", "n", dev(rx=10))))
    b = sample(
        1, ns("old", Iface("eth0", "n", dev(rx=20))), ns("new", Iface("eth0", "n", dev(rx=10**9)), estab=4)
    )
    rows = {r.name: r for r in compute(a, b).rows}
    assert rows["old"].rx_bps == 10
    new = rows["new"]
    assert new.rx_bps is None and new.tx_bps is None and new.failed is None
    assert new.established == 4  # a gauge needs no previous sample
    assert COLUMNS[1].text(new) == "-"


def test_a_container_that_left_is_gone_and_the_first_sample_has_no_rates() -> None:
    a = sample(0, ns("x", Iface("eth0", "n", dev())), ns("gone", Iface("eth0", "n", dev())))
    b = sample(1, ns("x", Iface("eth0", "n", dev(rx=5))))
    assert [r.name for r in compute(a, b).rows] == ["x"]
    first = compute(None, a)
    assert first.elapsed is None and first.start_wall is None
    assert all(r.rx_bps is None for r in first.rows)


def test_counters_going_back_give_no_rate() -> None:
    """A restart in a new namespace under the same key: the counters start again from zero."""
    a = sample(0, ns("r", Iface("eth0", "n", dev(rx=10**9)), fails=100))
    b = sample(1, ns("r", Iface("eth0", "n", dev(rx=500)), fails=2))
    (r,) = compute(a, b).rows
    assert r.rx_bps is None and r.failed is None


def test_an_interface_attached_between_samples_adds_nothing_until_its_second_sample() -> None:
    a = sample(0, ns("m", Iface("eth0", "a", dev(rx=100))))
    b = sample(2, ns("m", Iface("eth0", "a", dev(rx=300)), Iface("eth1", "b", dev(rx=10**8))))
    (r,) = compute(a, b).rows
    assert r.rx_bps == 100
    assert r.ifaces[1].rx_bps is None


def test_no_elapsed_time_gives_no_rates() -> None:
    a = sample(5, ns("m", Iface("eth0", "a", dev(rx=1))))
    b = sample(5, ns("m", Iface("eth0", "a", dev(rx=2))))
    f = compute(a, b)
    assert f.elapsed is None and f.rows[0].rx_bps is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0, "0"),
        (0.5, "0.5"),
        (7, "7"),
        (12.4, "12"),
        (987, "987"),
        (999.6, "1.00k"),
        (1234, "1.23k"),
        (12_345, "12.3k"),
        (123_456, "123k"),
        (1_500_000, "1.50M"),
        (2e9, "2.00G"),
    ],
)
def test_numbers_have_three_significant_digits(value: float | None, text: str) -> None:
    assert fmt_number(value) == text


def test_parse_number_inverts_fmt_number_within_the_rounding() -> None:
    for v in (0.5, 3, 42, 999, 1234, 56_789, 987_654, 1_234_567, 9.87e9):
        assert parse_number(fmt_number(v)) == pytest.approx(v, rel=0.005)
    assert parse_number("-") is None


def rows_for_sort() -> list[Row]:
    a = sample(
        0,
        ns("b-web", Iface("eth0", "n", dev())),
        ns("a-db", Iface("eth0", "n", dev())),
        ns("c-cache", Iface("eth0", "n", dev())),
    )
    b = sample(
        1,
        ns("b-web", Iface("eth0", "n", dev(rx=300))),
        ns("a-db", Iface("eth0", "n", dev(rx=100))),
        ns("c-cache", Iface("eth0", "n", dev(rx=200))),
        ns("d-new", Iface("eth0", "n", dev(rx=10**9))),
    )
    return list(compute(a, b).rows)


def test_sort_by_any_column_unknown_values_last_either_way() -> None:
    rows = rows_for_sort()
    assert [r.name for r in sort_rows(rows, "rx", True)] == ["b-web", "c-cache", "a-db", "d-new"]
    assert [r.name for r in sort_rows(rows, "rx", False)] == ["a-db", "c-cache", "b-web", "d-new"]
    assert [r.name for r in sort_rows(rows, "name", False)] == ["a-db", "b-web", "c-cache", "d-new"]
    assert [r.name for r in sort_rows(rows, "name", True)] == ["d-new", "c-cache", "b-web", "a-db"]
    for c in COLUMNS:  # every column sorts
        assert len(sort_rows(rows, c.key, True)) == 4


def test_filter_by_name_network_project_service_and_exclude() -> None:
    a = sample(
        0,
        ns("shop-web-1", Iface("eth0", "front", dev()), project="shop", service="web"),
        ns("shop-db-1", Iface("eth0", "back", dev()), project="shop", service="db"),
        ns("blog", Iface("eth0", "front", dev()), project="", service="blog_app"),
    )
    rows = compute(None, a).rows

    def names(expr: str) -> list[str]:
        m = parse_filter(expr)
        return [r.name for r in rows if m(r)]

    assert names("") == ["shop-web-1", "shop-db-1", "blog"]
    assert names("name:db") == ["shop-db-1"]
    assert names("net:front") == ["shop-web-1", "blog"]
    assert names("network:BACK") == ["shop-db-1"]
    assert names("project:shop") == ["shop-web-1", "shop-db-1"]
    assert names("service:blog") == ["blog"]
    assert names("shop !db") == ["shop-web-1"]
    assert names("front project:shop") == ["shop-web-1"]
    assert names("nomatch") == []


def test_narrow_terminals_drop_columns_never_name_or_bytes() -> None:
    wide = fit_columns(400, 24)
    assert [c.key for c in wide] == [c.key for c in COLUMNS]
    prev = len(wide)
    for width in range(160, 10, -5):
        cols = fit_columns(width, 24)
        keys = [c.key for c in cols]
        assert keys[:3] == ["name", "rx", "tx"]
        assert len(cols) <= prev
        prev = len(cols)
        if len(cols) > 3:  # once anything optional is left, the row fits
            assert sum((24 if c.key == "name" else c.width) + 2 for c in cols) <= width
    assert [c.key for c in fit_columns(80, 24)] == ["name", "rx", "tx", "estab", "fail", "net"]


def test_plain_table_has_a_caption_a_header_and_one_line_per_row() -> None:
    rows = sort_rows(rows_for_sort(), "rx", True)
    a = sample(0)
    frame = compute(a, sample(2))
    text = plain.table(frame, rows, "standalone")
    lines = text.splitlines()
    assert lines[0].startswith("dockwatch top  node n1  standalone  4/0 containers")
    assert "(2.000 s, read 0.000 s)" in lines[0]
    header = lines[1].split()
    assert header == [c.header for c in COLUMNS]
    assert [ln.split()[0] for ln in lines[2:]] == ["b-web", "c-cache", "a-db", "d-new"]
    assert lines[2].split()[1] == "300"
    assert lines[5].split()[1] == "-"
    narrow = plain.table(frame, rows, "standalone", width=60).splitlines()
    assert narrow[1].split() == ["NAME", "RXB/s", "TXB/s", "ESTAB", "FAIL/s"]
    assert all(len(ln) <= 60 for ln in narrow[1:])


def test_json_output_has_rates_totals_and_nulls_for_unknown() -> None:
    rows = rows_for_sort()
    frame = compute(sample(0), sample(1))
    data = json.loads(plain.as_json(frame, rows, "http://x:9105/metrics"))
    assert data["source"] == "http://x:9105/metrics"
    assert data["elapsed_seconds"] == 1
    by = {c["name"]: c for c in data["containers"]}
    assert by["b-web"]["rx_bytes_per_second"] == 300
    assert by["b-web"]["interfaces"][0]["totals"]["rx_bytes"] == 300
    assert by["d-new"]["rx_bytes_per_second"] is None
    assert by["d-new"]["tcp_failed_connects_per_second"] is None
