"""Dashboard details a Grafana user trips on: data links keep the clicked series' own node, service
legends are readable for standalone containers, error/drop/failed-connect stats have thresholds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import build
from tests.support import dashboard_queries as dq

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "grafana" / "dashboards"


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for p in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(p.read_text())["panels"]:
            yield p.name, panel


def links(panel: dict[str, Any]) -> list[str]:
    found = [lk["url"] for lk in panel["fieldConfig"]["defaults"].get("links", [])]
    for ov in panel["fieldConfig"]["overrides"]:
        for prop in ov["properties"]:
            if prop["id"] == "links":
                found += [lk["url"] for lk in prop["value"]]
    return found


def test_data_links_carry_the_clicked_series_node() -> None:
    linked = 0
    for fname, p in panels():
        for url in links(p):
            linked += 1
            where = (fname, p["title"], url)
            # ${node:queryparam} would pass the dashboard's node selection (All: every node).
            assert "${node:queryparam}" not in url, where
            assert "var-node=${__field.labels.node}" in url or "var-node=${__data.fields.node}" in url, where
            assert "var-container=" in url, where
            # The series must carry the labels the link reads: every aggregation keeps node and name.
            for tg in p["targets"]:
                for by in re.findall(r"\bby \(([^)]*)\)", tg["expr"]):
                    assert {"node", "name"} <= {x.strip() for x in by.split(",")}, (*where, tg["expr"])
    assert linked >= 15


def test_no_legend_reads_a_bare_slash() -> None:
    for fname, p in panels():
        for tg in p["targets"]:
            legend = tg["legendFormat"]
            assert "{{stack}}{{compose_project}}" not in legend, (fname, p["title"])


def test_per_service_groups_are_readable(tmp_path: Path) -> None:
    """On real PromQL (promtool): swarm, compose and standalone containers each get a legend label."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    ident = 'job="dockwatch",instance="n1",node="n1",interface="eth0",network="n",image="i"'
    series = {
        "web": 'stack="shop",service="shop_web",compose_project="",compose_service=""',
        "app": 'stack="",service="",compose_project="p",compose_service="app"',
        "lone1": 'stack="",service="",compose_project="",compose_service=""',
        "lone2": 'stack="",service="",compose_project="",compose_service=""',
    }
    inputs = [
        {"series": f'container_network_receive_bytes_total{{{ident},name="{n}",{g}}}', "values": "0+60x20"}
        for n, g in series.items()
    ]
    p = next(p for f, p in panels() if f == "traffic.json" and p["title"] == "Traffic by stack / service")
    expr = dq.substitute(p["targets"][0]["expr"])
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "by:service", "expr": expr}]}]})
    )
    want = [
        {"labels": 'by:service{group="shop/shop_web",stack="shop",service="shop_web"}', "value": 1},
        {"labels": 'by:service{group="p/app",compose_project="p",compose_service="app"}', "value": 1},
        # Standalone containers: one series, named, not "/".
        {"labels": f'by:service{{group="{build.STANDALONE}"}}', "value": 2},
    ]
    test_file = tmp_path / "test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": inputs,
                        "promql_expr_test": [{"expr": "by:service", "eval_time": "10m", "exp_samples": want}],
                    }
                ],
            }
        )
    )
    res = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr + "\n" + expr
    for _, p in panels():
        for tg in p["targets"]:
            # Queries that build the per-service `group` label (the node graph's label_joins build
            # node ids, not legends).
            if "label_join" in tg["expr"] and '"group"' in tg["expr"]:
                assert tg["legendFormat"].startswith("{{group}}"), p["title"]


@pytest.mark.parametrize(
    ("fname", "title"),
    [
        ("traffic.json", "Errors"),
        ("traffic.json", "Drops"),
        ("container.json", "Failed connects"),
        ("connections.json", "Failed connects"),
    ],
)
def test_error_drop_and_failed_connect_stats_have_warning_and_critical(fname: str, title: str) -> None:
    p = next(p for f, p in panels() if f == fname and p["title"] == title)
    assert p["type"] == "stat"
    steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["color"] for s in steps] == ["green", "orange", "red"], steps
    assert steps[0]["value"] is None and 0 < steps[1]["value"] < steps[2]["value"], steps
    assert p["options"]["colorMode"] == "value"
