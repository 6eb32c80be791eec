"""grafana/: the committed dashboards are what build.py makes, every query parses (promtool), and
dashboard-linter's rules hold, plus ours: metrics exist in names.py, shared namespaces counted once."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.prometheus import names
from grafana import build
from tests.support import dashboard_queries as dq
from tests.support.toolbox import container

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"


DS = {"type": "prometheus", "uid": "${datasource}"}
UIDS = {
    "traffic.json": "dockwatch-traffic",
    "container.json": "dockwatch-container",
    "connections.json": "dockwatch-connections",
    "events.json": "dockwatch-events",
    "agent.json": "dockwatch-agent",
    "networks.json": "dockwatch-networks",
    "service-map.json": "dockwatch-service-map",
}
# Prometheus's own per-target series, not the agent's.
BUILTIN_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
KNOWN_METRICS = {m.name for m in names.ALL} | BUILTIN_METRICS
IDENTITY_METRICS = {m.name for m in names.ALL if "name" in m.labels}
COUNTERS = {m.name for m in names.ALL if m.kind is names.Kind.COUNTER}
PANEL_TYPES = {"timeseries", "stat", "table", "state-timeline", "nodeGraph"}
GRAFANA_BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__url_time_range", "__all"}
# Panel field links use Grafana's ${__field...} / ${__value...} and ${var:queryparam}.
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from dash["panels"]


def targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for fname, dash in dashboards().items():
        for p in panels(dash):
            for tg in p["targets"]:
                yield fname, p, tg


def all_exprs() -> list[tuple[str, str]]:
    """(where, raw expr) of every panel target and query variable."""
    return [(f"{q.dashboard} {q.source}", q.raw) for q in dq.dashboard_queries()]


# --- the builder ------------------------------------------------------------------------------------
def test_committed_json_is_what_build_py_makes() -> None:
    res = subprocess.run(
        [sys.executable, str(GRAFANA / "build.py"), "--check"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    rendered = build.render_all()
    assert set(rendered) == set(dashboards()) == set(UIDS)
    for name, text in rendered.items():
        on_disk = (GRAFANA / "dashboards" / name).read_text()
        assert on_disk == text
        assert text.endswith("}\n")
        # Deterministic: sorted keys, and a second build gives the same bytes.
        assert json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n" == text
    assert build.render_all() == rendered


def test_check_fails_on_an_edited_or_stale_file(tmp_path: Path) -> None:
    for p in (GRAFANA / "dashboards").glob("*.json"):
        shutil.copy(p, tmp_path / p.name)
    cmd = [sys.executable, str(GRAFANA / "build.py"), "--check", "--dir", str(tmp_path)]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    edited = tmp_path / "traffic.json"
    edited.write_text(edited.read_text().replace("Traffic by node", "Traffic per node"))
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1 and "traffic.json" in res.stderr
    shutil.copy(GRAFANA / "dashboards" / "traffic.json", edited)
    (tmp_path / "old.json").write_text("{}\n")
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1 and "old.json" in res.stderr


# --- dashboard model ---------------------------------------------------------------------------------
def test_dashboard_model() -> None:
    for fname, dash in dashboards().items():
        assert dash["uid"] == UIDS[fname]
        assert dash["schemaVersion"] >= 39
        assert "dockwatch" in dash["tags"]
        assert dash["title"] and dash["description"]
        # Links between dashboards: the tag link, keeping time range and variables.
        assert any(
            lk["type"] == "dashboards"
            and lk["tags"] == ["dockwatch"]
            and lk["includeVars"]
            and lk["keepTime"]
            for lk in dash["links"]
        ), fname


def test_panels_lint_rules() -> None:
    """dashboard-linter: panel-datasource, panel-title-description, panel-units, panel-no-targets."""
    for fname, dash in dashboards().items():
        ids = [p["id"] for p in panels(dash)]
        assert len(ids) == len(set(ids)), fname
        cells: set[tuple[int, int]] = set()
        for p in panels(dash):
            where = f"{fname} {p['title']!r}"
            assert p["type"] in PANEL_TYPES, where  # no Angular graph/singlestat, no rows
            assert p["datasource"] == DS, where
            assert p["title"] and p["description"].strip(), where
            assert p["fieldConfig"]["defaults"]["unit"], where
            assert p["targets"], where
            for tg in p["targets"]:
                assert tg["datasource"] == DS, where
                assert tg["expr"].strip(), where
            refs = [tg["refId"] for tg in p["targets"]]
            assert len(refs) == len(set(refs)), where
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0, where
            mine = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
            assert not mine & cells, f"{where} overlaps another panel"
            cells |= mine


def test_data_links_point_at_our_dashboards() -> None:
    uids = set(UIDS.values())
    for fname, dash in dashboards().items():
        linked = re.findall(r"/d/([\w-]+)/", json.dumps(dash))
        assert set(linked) <= uids, fname
    # The overview dashboards link into the container dashboard.
    for fname in ("traffic.json", "connections.json", "events.json"):
        assert "/d/dockwatch-container/" in json.dumps(dashboards()[fname]), fname


def test_variables() -> None:
    want = {
        "traffic.json": {"datasource", "job", "node", "stack", "service", "container", "network"},
        "container.json": {"datasource", "job", "node", "stack", "service", "container", "network"},
        "connections.json": {"datasource", "job", "node", "stack", "service", "container"},
        "events.json": {"datasource", "job", "node", "stack", "service", "container"},
        "agent.json": {"datasource", "job", "node", "sink"},
        "networks.json": {"datasource", "job", "node", "stack", "service", "container", "network"},
        "service-map.json": {"datasource", "job", "node", "stack", "service", "container"},
    }
    for fname, dash in dashboards().items():
        vs = {v["name"]: v for v in dash["templating"]["list"]}
        assert want[fname] <= set(vs), fname
        ds = vs["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"
        assert ds["current"]["value"] == build.DATASOURCE_UID
        for v in vs.values():
            if v["type"] != "query":
                continue
            assert v["datasource"] == DS, (fname, v["name"])
            assert v["definition"] == v["query"]["query"], (fname, v["name"])
            assert v["definition"].startswith("label_values("), (fname, v["name"])
            if v.get("includeAll") and v["name"] != "job":
                assert v["allValue"] == ".*", (fname, v["name"])
        if "network" in vs:
            net = vs["network"]
            assert net["multi"] and net["includeAll"] and net["allValue"] == ".*"
        if "container" in vs:
            assert vs["container"]["definition"].endswith(", name)")
        # Every variable an expression uses is defined on that dashboard (or is Grafana's).
        text = json.dumps(dash)
        used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", text))
        assert used <= set(vs) | GRAFANA_BUILTIN_VARS | {"__field", "__value", "__data"}, (
            fname,
            used - set(vs),
        )


# --- PromQL: parse and lint ------------------------------------------------------------------------
def test_every_query_parses_with_promtool(tmp_path: Path, promtool: str) -> None:
    queries = list(dq.dashboard_queries())
    n_targets = sum(1 for _ in targets())
    n_vars = sum(1 for d in dashboards().values() for v in d["templating"]["list"] if v["type"] == "query")
    assert len(queries) == n_targets + n_vars
    for q in queries:
        assert not re.search(r"\$(?!\d)", q.expr), q  # $1..$9: label_replace's groups
    rules = [{"record": f"dashboard:query_{i}", "expr": q.expr} for i, q in enumerate(queries)]
    f = tmp_path / "queries.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    res = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
    index = "\n".join(f"{i}: {q.dashboard} {q.source}: {q.expr}" for i, q in enumerate(queries))
    assert res.returncode == 0, res.stdout + res.stderr + "\n" + index


def test_promtool_rejects_a_broken_query(tmp_path: Path, promtool: str) -> None:
    """The parse test above can fail: an unbalanced expression is refused."""
    f = tmp_path / "bad.yml"
    bad = dq.substitute('sum(rate(container_network_receive_bytes_total{job=~"$job"}[$__rate_interval])')
    f.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "x:y", "expr": bad}]}]}))
    assert subprocess.run([promtool, "check", "rules", str(f)], capture_output=True).returncode != 0


def test_counters_only_inside_rate_or_increase() -> None:
    """dashboard-linter target-counter-agg, for every *_total our exprs name."""
    for where, raw in all_exprs():
        expr = dq.strip_strings(raw)
        for name in dq.metric_names(expr):
            if not name.endswith("_total"):
                continue
            assert name in COUNTERS, (where, name)
            total = len(re.findall(rf"\b{name}\s*\{{", expr))
            wrapped = len(re.findall(rf"\b(?:rate|irate|increase)\(\s*{name}\s*\{{[^}}]*\}}\s*\[", expr))
            if where.split()[1] == "variable":
                continue  # label_values(counter{...}, label) reads labels, not values
            assert total == wrapped, (where, name)


def test_every_range_is_rate_interval() -> None:
    """dashboard-linter target-rate-interval: no fixed windows that break at other scrape intervals."""
    n = 0
    # An instant "over the shown range" stat may use $__range; everything else $__rate_interval.
    instant_exprs = {tg["expr"] for _, _, tg in targets() if tg.get("instant")}
    for where, raw in all_exprs():
        allowed = {"$__rate_interval", "$__range"} if raw in instant_exprs else {"$__rate_interval"}
        for m in re.finditer(r"\[([^\]]*)\]", dq.strip_strings(raw)):
            rng = m.group(1)
            # A range query may use the whole range only evaluated once, at its end (top talkers).
            at_end = m.string[m.end() :].startswith(" @ end()")
            assert rng in allowed or (rng == "$__range" and at_end), (where, rng)
            n += 1
        for fn in re.findall(r"\b(rate|irate|increase)\(", raw):
            assert fn in ("rate", "increase"), where  # irate hides everything between two samples
    assert n > 50


def test_no_cgroup_id_selectors() -> None:
    for where, raw in all_exprs():
        assert not re.search(r"[{,]\s*id\s*(=|!=|=~|!~)", raw), where


def test_every_metric_exists() -> None:
    """Each selector names a metric of names.py (log sinks included) or Prometheus's per-target ones,
    and nothing else in an expr could be a bare metric name that this check would miss."""
    for where, raw in all_exprs():
        expr = dq.strip_strings(raw)
        assert dq.metric_names(expr) <= KNOWN_METRICS, (where, dq.metric_names(expr) - KNOWN_METRICS)
        rest = re.sub(r"\{[^}]*\}", "", expr)
        rest = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", rest)
        rest = re.sub(r"\[[^\]]*\]", "", rest)
        rest = re.sub(r"\b[a-zA-Z_]\w*\s*\(", "(", rest)  # function names
        words = set(re.findall(r"\b[a-zA-Z_:][\w:]*\b", rest)) - PROMQL_KEYWORDS
        # What is left must be the metric names of the selectors just removed.
        assert words <= dq.metric_names(expr), (where, words)


def test_container_panels_filter_the_host_namespace() -> None:
    """Identity series either select containers (name!="" or one container) or the host (name="").
    Variables only look label values up, so they are not held to it."""
    for where, raw in all_exprs():
        if where.split()[1] == "variable":
            continue
        for metric, matchers in dq.selectors(raw):
            if metric not in IDENTITY_METRICS:
                continue
            ms = [m.strip() for m in matchers.split(",")]
            assert 'name!=""' in ms or 'name=""' in ms, (where, metric, matchers)


def test_info_is_joined_one_series_per_namespace() -> None:
    """A query mixing per-namespace series with dockwatch_container_info must collapse info to one
    series per (node, netns_owner) first, or a shared namespace would be multiplied by its members."""
    joins = 0
    for where, raw in all_exprs():
        found = dq.metric_names(raw)
        if "dockwatch_container_info" not in found or not (found & IDENTITY_METRICS) - {
            "dockwatch_container_info"
        }:
            continue
        occurrences = raw.count("dockwatch_container_info{")
        grouped = raw.count("group by (node, netns_owner) (dockwatch_container_info{")
        assert occurrences == grouped, where
        joins += 1
    assert joins >= 2  # the container dashboard's namespace-traffic panel (rx and tx)


def test_every_names_py_metric_is_on_a_dashboard() -> None:
    used: set[str] = set()
    for _, raw in all_exprs():
        used |= dq.metric_names(raw)
    # Deliberate exceptions. Add `name: reason` here to leave a metric off the dashboards.
    exceptions: dict[str, str] = {
        "process_virtual_memory_bytes": "address space reserved, not memory used: RSS is shown",
    }
    missing = {m.name for m in names.ALL} - used - set(exceptions)
    assert not missing, sorted(missing)


def test_log_sink_panels_say_they_are_empty_without_a_sink() -> None:
    agent = dashboards()["agent.json"]
    sink_panels = [p for p in panels(agent) if "dockwatch_log_sink_" in json.dumps(p["targets"])]
    assert len(sink_panels) >= 6
    for p in sink_panels:
        assert "until a log sink is configured" in p["fieldConfig"]["defaults"]["noValue"], p["title"]


# --- semantics on synthetic series (promtool test rules) -------------------------------------------
def _panel_expr(fname: str, title: str, ref: str = "A", **values: str) -> str:
    p = next(p for p in panels(dashboards()[fname]) if p["title"] == title)
    raw = next(tg["expr"] for tg in p["targets"] if tg["refId"] == ref)
    return dq.substitute(raw, values)


def test_shared_namespace_is_counted_once(tmp_path: Path, promtool: str) -> None:
    """`app` owns a namespace that `sidecar` joins (network_mode container:app): the agent reports
    the traffic once, as name=app. The overview totals and the container dashboard's namespace panel
    must show 1 B/s, never 2, whether the sidecar, the app or All is selected."""
    ident = 'job="dockwatch",instance="n1",node="n1",image="img"'
    eth0 = 'name="app",interface="eth0",network="net"'

    def info(cid: str, mode: str, name: str) -> str:
        extra = f'container_id="{cid}",network_mode="{mode}",netns_owner="app",name="{name}"'
        return f"dockwatch_container_info{{{ident},{extra}}}"

    series = [
        (f"container_network_receive_bytes_total{{{ident},{eth0}}}", "0+60x20"),  # 1 B/s
        (f"container_network_transmit_bytes_total{{{ident},{eth0}}}", "0+120x20"),  # 2 B/s
        (info("a1", "bridge", "app"), "1x20"),
        (info("s1", "container", "sidecar"), "1x20"),
        ('dockwatch_build_info{job="dockwatch",instance="n1",node="n1",version="x"}', "1x20"),
    ]
    ns = "Namespace traffic (via netns owner)"
    # record name -> (dashboard expr, expected labels of the one result, expected value)
    cases = {
        "total_rx": (_panel_expr("traffic.json", "Receive"), "", 1),
        "by_node_rx": (_panel_expr("traffic.json", "Traffic by node"), '{node="n1"}', 1),
        "ns_all": (_panel_expr("container.json", ns), '{interface="eth0",name="app"}', 1),
        "ns_app": (_panel_expr("container.json", ns, container="app"), '{interface="eth0",name="app"}', 1),
        "ns_sidecar": (
            _panel_expr("container.json", ns, container="sidecar"),
            '{interface="eth0",name="app"}',
            1,
        ),
        "ns_sidecar_tx": (
            _panel_expr("container.json", ns, "B", container="sidecar"),
            '{interface="eth0",name="app"}',
            2,
        ),
        "running": (_panel_expr("traffic.json", "Running containers"), "", 2),
    }
    rules = tmp_path / "rules.yml"
    recs = [{"record": f"dash:{k}", "expr": e} for k, (e, _, _) in cases.items()]
    rules.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": recs}]}))
    checks = [
        {"expr": f"dash:{k}", "eval_time": "10m", "exp_samples": [{"labels": f"dash:{k}{lbl}", "value": v}]}
        for k, (_, lbl, v) in cases.items()
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
                        "input_series": [{"series": sr, "values": v} for sr, v in series],
                        "promql_expr_test": checks,
                    }
                ],
            }
        )
    )
    res = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr + "\n" + rules.read_text()


def _exposition() -> list[tuple[str, dict[str, str], float, bool]]:
    """(name, labels, value, is_counter) of what an agent on node n1 exports, from the real
    renderer and self-metrics collector; log-sink series from their names.py declaration."""
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from agent.collector import Collection, Outcome
    from agent.docker.models import Container
    from agent.inventory import Snapshot
    from agent.netstats import CollectResult, Membership, NetnsSample
    from agent.procnet import DevCounters
    from exporters.prometheus.render import Renderer
    from exporters.prometheus.scrape import EngineState, SelfMetrics

    def ctr(n: int, name: str, mode: str = "bridge", health: str = "", **labels: str) -> Container:
        return replace(container(n, name, mode, **labels), health=health)

    swarm = {
        "com.docker.stack.namespace": "shop",
        "com.docker.swarm.service.name": "shop_web",
        "com.docker.swarm.task.name": "shop_web.1.x",
    }
    web = ctr(1, "shop_web.1.x", health="healthy", **swarm)
    app = ctr(
        2,
        "app",
        health="unhealthy",
        **{"com.docker.compose.project": "p", "com.docker.compose.service": "app"},
    )
    side = ctr(3, "sidecar", mode="container:" + app.id)
    hostc = ctr(4, "hostc", mode="host")

    def ns(owner: Container | None, ino: int, net: str) -> NetnsSample:
        return NetnsSample(
            inode=ino,
            owner=owner,
            devices={"eth0": DevCounters(100, 10, 1, 2, 200, 20, 3, 4)},
            networks={"eth0": net},
            mib={
                "Tcp": {f: 5 for _, sec, f in names.TCP_MIB_METRICS if sec == "Tcp"},
                "TcpExt": {f: 6 for _, sec, f in names.TCP_MIB_METRICS if sec == "TcpExt"},
                "Udp": {f: 7 for _, f in names.UDP_METRICS},
            },
            udp6={f: 8 for _, f in names.UDP_METRICS},
            sockstat={"TCP": {"inuse": 9, "tw": 10}, "TCP6": {"inuse": 11}, "UDP": {"inuse": 12}},
            tcp_states={"established": 3, "time_wait": 2},
        )

    result = CollectResult(
        samples=[ns(web, 1, "shop_front"), ns(app, 2, "p_default"), ns(None, 3, "")],
        members=[
            Membership(web, 1, web),
            Membership(app, 2, app),
            Membership(side, 2, app),
            Membership(hostc, 3, None),
        ],
    )
    actions = {"die": 3, "start": 4, "restart": 1, "oom": 1, "kill": 1, "health_status": 2}
    events = {web.id: actions, app.id: actions}
    known = {c.id: c for c in (web, app)}
    text = Renderer().render("n1", "nid", result, events, known, [web, app, side, hostc]).text()
    snap = Snapshot(
        containers={web.id: web}, node="n1", events_total={("container", a): v for a, v in actions.items()}
    )
    from agent.connections import ConnectionsResult  # issue 11's tier, a background collector

    tier = Outcome("connections", ConnectionsResult(), True, 0.0)
    col = Collection(snap, {"netns": Outcome("netns", result, True, 0.0), "connections": tier})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SelfMetrics(snap, col, EngineState()))  # type: ignore[arg-type]  # ours is structurally a client_python Collector
    registry.register(ProcessCollector(registry=None))
    text += generate_latest(registry).decode()
    from tests.support.netmap_exposition import netmap_text  # issue 11's families, from the real exporter

    text += netmap_text(web, app, "n1")
    out = []
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name.endswith("_created"):
                continue
            out.append((smp.name, dict(smp.labels), float(smp.value), fam.type == "counter"))
    values = {"sink": "syslog", "reason": "rejected"}
    for m in names.ALL:
        if m.name.startswith("dockwatch_log_"):
            labels = {lbl: values[lbl] for lbl in m.labels}
            out.append((m.name, labels, 5.0, m.kind is names.Kind.COUNTER))
    return out


def test_every_query_returns_data_on_the_agents_exposition(tmp_path: Path, promtool: str) -> None:
    """Each panel and variable query, variables at All, is non-empty on series shaped exactly like
    the agent's exposition (host namespace, tcp-states, healthchecks, events and a sink present).
    Catches a label or join that parses but matches nothing."""
    target = {"job": "dockwatch", "instance": "n1:9105"}

    def series(name: str, labels: dict[str, str]) -> str:
        body = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, **target}.items()))
        return f"{name}{{{body}}}"

    inputs = [
        {"series": series(n, lbl), "values": f"{v:g}+{max(v, 1):g}x40" if counter else f"{v:g}x40"}
        for n, lbl, v, counter in _exposition()
    ]
    inputs += [
        {"series": series("up", {}), "values": "1x40"},
        {"series": series("scrape_duration_seconds", {}), "values": "0.01x40"},
        {"series": series("scrape_samples_scraped", {}), "values": "900x40"},
    ]
    exported = {i["series"].split("{")[0] for i in inputs}
    assert {m.name for m in names.ALL} <= exported  # the fixture covers every metric
    queries = list(dq.dashboard_queries())
    checks = [
        {
            "expr": f"(count({q.expr}) > bool 0) or vector(0)",
            "eval_time": "8m",
            "exp_samples": [{"labels": "{}", "value": 1}],
        }
        for q in queries
    ]
    empty = tmp_path / "empty.yml"
    empty.write_text("groups: []\n")
    test_file = tmp_path / "test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(empty)],
                "evaluation_interval": "15s",
                "tests": [{"interval": "15s", "input_series": inputs, "promql_expr_test": checks}],
            }
        )
    )
    res = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    # promtool quotes the failing expr Go-style, which for these strings is JSON's quoting.
    out = res.stdout + res.stderr
    failed = [q for q in queries if json.dumps(f"(count({q.expr}) > bool 0) or vector(0)") in out]
    assert res.returncode == 0, "\n".join(f"{q.dashboard} {q.source}: {q.expr}" for q in failed) or out


# --- provisioning and docs --------------------------------------------------------------------------
def test_provisioning() -> None:
    ds_doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert ds_doc["apiVersion"] == 1
    (ds,) = ds_doc["datasources"]
    assert ds["uid"] == build.DATASOURCE_UID == "dockwatch-prometheus"
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090" and ds["access"] == "proxy"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dockwatch.yaml").read_text())
    assert prov["apiVersion"] == 1
    (pr,) = prov["providers"]
    assert pr["type"] == "file" and pr["options"]["path"] == "/var/lib/grafana/dashboards"


def test_readme_documents_dashboards_and_log_sink_contract() -> None:
    text = (GRAFANA / "README.md").read_text()
    for uid in UIDS.values():
        assert f"`{uid}`" in text, uid
    assert "/var/lib/grafana/dashboards" in text
    for m in names.ALL:
        if m.name.startswith("dockwatch_log_"):
            assert f"`{m.name}`" in text, m.name


def test_query_extraction_needs_markers() -> None:
    qs = list(dq.dashboard_queries())
    by_need: dict[str | None, int] = {}
    for q in qs:
        by_need[q.needs] = by_need.get(q.needs, 0) + 1
    # Most queries must be non-empty on any agent with containers; the rest say what they need.
    assert by_need[None] > len(qs) // 2
    assert {"a log sink configured", "--collector.tcp-states", "--collector.host-netns"} <= set(by_need)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return path
