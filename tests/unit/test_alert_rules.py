"""grafana/alerts: the rules load in promtool, their unit tests pass, and every alert is shown firing
by a test, is annotated, and reads only metrics the agent (or Prometheus) exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.prometheus import names
from tests.support import dashboard_queries as dq

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "grafana" / "alerts"
RULES = ALERTS / "dockwatch.rules.yml"
TESTS = ALERTS / "dockwatch.rules.test.yml"
KNOWN_METRICS = {m.name for m in names.ALL} | {"up"}
REQUIRED = {
    "DockwatchTargetDown",
    "DockwatchTargetMissing",
    "DockwatchCollectorFailing",
    "DockwatchEngineDisconnected",
    "ContainerTcpFailedConnectsRising",
    "ContainerNetworkErrors",
    "ContainerNetworkDrops",
    "ContainerRestartLoop",
    "ContainerUnhealthy",
    "LogSinkDropping",
    "LogSinkLagging",
    "ContainerPublishedPortNotListening",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return path


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules(promtool: str) -> None:
    res = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in res.stdout


def test_promtool_test_rules(promtool: str) -> None:
    res = subprocess.run([promtool, "test", "rules", str(TESTS)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_test_rules_fails_when_a_threshold_moves(tmp_path: Path, promtool: str) -> None:
    """The unit tests pin behaviour: raising the failed-connects threshold breaks them."""
    text = RULES.read_text()
    moved = text.replace(") > 1\n", ") > 3\n", 1)
    assert moved != text
    (tmp_path / RULES.name).write_text(moved)
    shutil.copy(TESTS, tmp_path / TESTS.name)
    res = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / TESTS.name)], capture_output=True, text=True
    )
    assert res.returncode != 0 and "ContainerTcpFailedConnectsRising" in res.stdout + res.stderr


def test_required_alerts_exist_and_are_annotated() -> None:
    names_ = [a["alert"] for a in alerts()]
    assert len(names_) == len(set(names_))
    assert set(names_) >= REQUIRED
    for a in alerts():
        assert a["labels"]["severity"] in ("warning", "critical"), a["alert"]
        assert a["annotations"]["summary"] and a["annotations"]["description"], a["alert"]


def test_every_alert_is_shown_firing_by_a_unit_test() -> None:
    doc = yaml.safe_load(TESTS.read_text())
    assert doc["rule_files"] == [RULES.name]
    fired = {
        case["alertname"] for t in doc["tests"] for case in t.get("alert_rule_test", []) if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for t in doc["tests"]
        for case in t.get("alert_rule_test", [])
        if not case["exp_alerts"]
    }
    all_alerts = {a["alert"] for a in alerts()}
    assert all_alerts - fired == set(), "never shown firing"
    # Most alerts also have a case where the trouble is short or absent and they stay quiet.
    assert len(all_alerts & quiet) >= len(all_alerts) - 3, all_alerts - quiet


def test_alerts_read_exported_metrics_on_the_agent_job() -> None:
    jobs = set()
    for a in alerts():
        expr = a["expr"]
        used = dq.metric_names(expr)
        assert used, a["alert"]
        assert used <= KNOWN_METRICS, (a["alert"], used - KNOWN_METRICS)
        for _, matchers in dq.selectors(expr):
            jobs |= set(re.findall(r'job="([^"]*)"', matchers))
            assert "job=" in matchers, (a["alert"], matchers)
        for rng in re.findall(r"\[([^\]]*)\]", dq.strip_strings(expr)):
            assert re.fullmatch(r"\d+m", rng), (a["alert"], rng)
    # The job the deploy configs scrape the agent as.
    assert jobs == {"dockwatch"}
    for cfg in (REPO / "deploy" / "prometheus").glob("*.yml"):
        job_names = {j["job_name"] for j in yaml.safe_load(cfg.read_text())["scrape_configs"]}
        assert "dockwatch" in job_names, cfg


def test_counters_only_through_rate_or_increase() -> None:
    counters = {m.name for m in names.ALL if m.kind is names.Kind.COUNTER}
    for a in alerts():
        expr = dq.strip_strings(a["expr"])
        for name in dq.metric_names(expr) & counters:
            total = len(re.findall(rf"\b{name}\s*\{{", expr))
            wrapped = len(re.findall(rf"\b(?:rate|increase)\(\s*{name}\s*\{{[^}}]*\}}\s*\[", expr))
            # ServiceTasksCrashing compares counter *presence* (a new die series), not values.
            if a["alert"] == "ServiceTasksCrashing":
                continue
            assert total == wrapped, (a["alert"], name)
