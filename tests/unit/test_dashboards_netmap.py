"""The Service map's Node Graph query on the exporter's own series (promtool test rules): one edge
per (client, server) pair even though both ends report it, every kind of peer as a node, and the
fields Grafana's Node Graph reads (id, source, target; the value becomes mainstat)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import dashboard_queries as dq
from tests.support.toolbox import container

REPO = Path(__file__).resolve().parents[2]


def service_map() -> dict[str, Any]:
    return dict(json.loads((REPO / "grafana" / "dashboards" / "service-map.json").read_text()))


def test_node_graph_panel_shape() -> None:
    (p,) = [p for p in service_map()["panels"] if p["type"] == "nodeGraph"]
    (tg,) = p["targets"]
    # Grafana takes a frame named or refId'd "edges", with id/source/target fields, as the edges.
    assert tg["refId"] == "edges" and tg["format"] == "table" and tg["instant"]
    assert p["transformations"] == [{"id": "organize", "options": {"renameByName": {"Value": "mainstat"}}}]
    assert "custom" not in p["fieldConfig"]["defaults"]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return path


def test_node_graph_edges(tmp_path: Path, promtool: str) -> None:
    from tests.support.netmap_exposition import netmap_text

    web = container(1, "web", "x", **{"com.docker.swarm.service.name": "shop_web"})
    app = container(2, "app", "x")
    inputs = []
    for fam in text_string_to_metric_families(netmap_text(web, app, "n1")):
        for s in fam.samples:
            labels = {**s.labels, "job": "dockwatch", "instance": "n1:9105"}
            body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            inputs.append({"series": f"{s.name}{{{body}}}", "values": f"{s.value:g}x20"})
    (p,) = [p for p in service_map()["panels"] if p["type"] == "nodeGraph"]
    expr = dq.substitute(p["targets"][0]["expr"])

    def edge(src: str, dst: str, v: int) -> dict[str, Any]:
        return {"labels": f'{{id="{src} -> {dst}",source="{src}",target="{dst}"}}', "value": v}

    want = [
        edge("n1/web", "n1/app", 3),  # reported by web (client) and app (server): drawn once
        edge("n1/web", "service/shop_db", 1),  # to a service VIP
        edge("external", "n1/app", 2),  # app's external clients, seen only at app's end
        edge("host/n1", "n1/web", 1),  # the host namespace's client end; web's server end agrees
    ]
    empty = tmp_path / "empty.yml"
    empty.write_text("groups: []\n")
    test_file = tmp_path / "test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(empty)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": inputs,
                        "promql_expr_test": [{"expr": expr, "eval_time": "5m", "exp_samples": want}],
                    }
                ],
            }
        )
    )
    res = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
