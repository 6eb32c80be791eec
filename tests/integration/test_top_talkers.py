"""The Top talkers panel shows at most 10 containers over a whole range, on a real Prometheus.

`topk(10, rate(...))` in a range query picks 10 per step, so a graph over an hour shows every
container that was briefly in the top 10: more than 10 series. The panel picks its 10 once, at the
end of the range (`topk(10, increase(...[$__range] @ end()))`). This loads an hour of synthetic
samples for 15 containers (promtool tsdb create-blocks-from openmetrics), each briefly the biggest,
into Debian's Prometheus and runs the panel's range query as Grafana would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.dashboard_queries import substitute
from tests.support.peers.prometheus import Prometheus
from tests.support.toolbox import wait_for

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "dashboards" / "traffic.json"
CONTAINERS = 15
STEP = 15  # seconds between samples, and the query step
MINUTES = 60


def openmetrics(t0: int) -> str:
    """rx/tx counters of 15 containers: container i sends i B/s, and 2000 B/s in its own 4 minutes."""
    lines = []
    for metric in ("container_network_receive_bytes", "container_network_transmit_bytes"):
        lines.append(f"# TYPE {metric} counter")
        for i in range(CONTAINERS):
            labels = (
                f'job="dockwatch",instance="n1:9105",node="n1",name="c{i:02d}",interface="eth0",network="n"'
            )
            total = 0
            for k in range(MINUTES * 60 // STEP + 1):
                ts = t0 + k * STEP
                minute = k * STEP // 60
                total += STEP * (2000 if 4 * i <= minute < 4 * i + 4 else i)
                lines.append(f"{metric}_total{{{labels}}} {total} {ts}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def query_range(base: str, expr: str, start: int, end: int) -> list[dict[str, object]]:
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": STEP})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}", timeout=30) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_top_talkers_shows_at_most_ten_containers_over_the_range(tmp_path: Path) -> None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        pytest.skip("Debian's prometheus package is not installed")
    t0 = (int(time.time()) // 3600 - 3) * 3600  # three hours ago, on an hour: inside retention
    src = tmp_path / "samples.om"
    src.write_text(openmetrics(t0))
    tsdb = tmp_path / "tsdb"
    res = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(src), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
    prom = Prometheus(tmp_path / "prometheus.yml", tsdb)
    base = prom.base
    try:
        start, end = t0 + 5 * 60, t0 + MINUTES * 60

        def loaded() -> bool:
            expr = "count(container_network_receive_bytes_total)"
            return bool(query_range(base, expr, end - STEP, end))

        wait_for(loaded, timeout=60, what="Prometheus to load the blocks")
        panel = next(p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"] == "Top talkers")
        raw = panel["targets"][0]["expr"]
        expr = substitute(raw.replace("$__range", f"{end - start}s"))
        got = {r["metric"]["name"] for r in query_range(base, expr, start, end)}  # type: ignore[index]
        # The 10 biggest over the range: each sends 2000 B/s for 4 minutes and i B/s otherwise.
        # The spikes of c00 and c14 fall partly or wholly outside the 55 minutes shown.
        totals = {}
        for i in range(CONTAINERS):
            spike = max(0, min(4 * i + 4, MINUTES) - max(4 * i, 5))
            totals[f"c{i:02d}"] = spike * 60 * 2000 + ((MINUTES - 5) - spike) * 60 * i
        want = set(sorted(totals, key=totals.__getitem__, reverse=True)[:10])
        assert got == want, (sorted(got), sorted(want))
        # The per-step topk it replaces shows every container that was ever in the top 10.
        per_step = substitute(
            "topk(10, sum by (node, name) (rate(container_network_receive_bytes_total[$__rate_interval])) "
            "+ sum by (node, name) (rate(container_network_transmit_bytes_total[$__rate_interval])))"
        )
        assert len({r["metric"]["name"] for r in query_range(base, per_step, start, end)}) > 10  # type: ignore[index]
    finally:
        prom.stop()
