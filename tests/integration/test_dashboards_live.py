"""Issue 5's end-to-end proof: every dashboard query returns data from a real Prometheus.

A real Prometheus (Debian's binary) scrapes a real agent every second while real containers
exchange traffic, fail to connect, restart, report health and log through a sink. Then every
panel query and every variable query of grafana/dashboards/*.json, with its variables set to
All, must return a non-empty result — except the ones listed in EMPTY_BY_DESIGN, with why.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.support.agentproc import Agent
from tests.support.dashboard_queries import Query, dashboard_queries, substitute
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.prometheus import Prometheus, prom_query
from tests.support.toolbox import wait_for

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
# Panels that may stay empty in this run, keyed by a marker in their query, and why; none is
# skipped silently. Everything the dashboards show is staged above, so this is empty.
EMPTY_BY_DESIGN: dict[str, str] = {}
# Empty unless the shared test engine happens to be a swarm manager with services: its swarm
# belongs to tests/e2e/test_swarm.py, so this test makes none. These panels are proven on the
# exporter's own series by tests/unit/test_dashboards.py (and the parsing by unit tests).
NEEDS_SWARM_SERVICES: dict[str, str] = {"dockwatch_service_": "swarm services (GET /services on a manager)"}


@pytest.fixture(scope="module")
def stack(engine_session: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Agent, str]]:
    eng = Engine(host=engine_session.host, root=engine_session.root, owned=False)
    tmp = tmp_path_factory.mktemp("dash")
    # The agent first: event panels count what happens after it subscribed.
    agent = Agent(
        eng,
        "--collector.tcp-states",
        "--collector.tcp-states-interval=1s",
        # Issue 11's tier; with it on, the TCP states come from its read, on its interval.
        "--collector.connections",
        "--collector.connections-interval=1s",
        "--log-sink=json-file",
        f"--log-opt=path={tmp / 'logs'}",
        f"--path.state={tmp / 'state'}",
    ).start()
    host_conn: socket.socket | None = None
    try:  # a failure while staging must not leave the agent running
        net = f"dwt-dash-{uuid.uuid4().hex[:6]}"
        eng.network(net)
        srv = f"dwt-dsrv-{uuid.uuid4().hex[:6]}"
        labels = ["--label", "com.docker.compose.project=shop", "--label", "com.docker.compose.service=web"]
        eng.run(
            "--network",
            net,
            *labels,
            "-p",  # published on the host's loopback, a port Docker picks: listening behind it
            "127.0.0.1::80",
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            "echo hi > /var/www/index.html; httpd -f -p 80 -h /var/www",
            name=srv,
        )
        # A published port with nothing behind it (issue 11's "not listening" panels and alert).
        eng.run("--network", net, "-p", "127.0.0.1::8080", BUSYBOX_IMAGE, "sleep", "600")
        ip = eng.inspect(srv)["NetworkSettings"]["Networks"][net]["IPAddress"]
        # Bounded loops: traffic, failed connects and log lines; one connection held open.
        eng.run(
            "--network",
            net,
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            f"for i in $(seq 600); do wget -q -O /dev/null http://{srv}/; nc {srv} 9 </dev/null;"
            " echo line $i; sleep 0.1; done; sleep 600",
        )
        eng.run("--network", net, BUSYBOX_IMAGE, "sh", "-c", f"sleep 600 | nc {ip} 80")
        # Lifecycle: a healthcheck, a restart loop, an OOM kill, a docker kill, unreadable logs.
        eng.run("--health-cmd", "true", "--health-interval", "1s", BUSYBOX_IMAGE, "sleep", "600")
        eng.run("--restart", "on-failure:3", BUSYBOX_IMAGE, "sh", "-c", "sleep 1; exit 1")
        eng.run(
            "--memory",
            "8m",
            "--memory-swap",
            "8m",
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            "sleep 2; head -c 100000000 /dev/zero | tail >/dev/null; sleep 600",
        )
        eng.docker("kill", eng.run(BUSYBOX_IMAGE, "sleep", "600"))
        eng.run("--log-driver", "none", BUSYBOX_IMAGE, "sleep", "600")
        # Issue 11's service map: the host namespace holding a connection to a container, and a
        # container talking to an address Docker does not know (192.0.2.77, TEST-NET-1, put on a
        # second container's interface inside its namespace): an "external" peer that stays here.
        # Each listener's stdin is a pipe that stays open: on EOF (a detached container's /dev/null)
        # nc would close its end at once, leaving FIN-WAIT-2 / CLOSE-WAIT instead of ESTABLISHED.
        sink = eng.run("--network", net, BUSYBOX_IMAGE, "sh", "-c", "sleep 600 | nc -l -p 9000 >/dev/null")
        sink_ip = eng.inspect(sink)["NetworkSettings"]["Networks"][net]["IPAddress"]
        ext = eng.run("--network", net, BUSYBOX_IMAGE, "sh", "-c", "sleep 600 | nc -l -p 7000 >/dev/null")
        ext_cli = eng.run("--network", net, BUSYBOX_IMAGE, "sleep", "600")
        for cid, cmd in (
            (ext, "addr add 192.0.2.77/32 dev eth0"),
            (ext_cli, "route add 192.0.2.77/32 dev eth0"),
        ):
            subprocess.run(["nsenter", "-t", str(eng.pid(cid)), "-n", "ip", *cmd.split()], check=True)
        # Retried (bounded) until the listener is up: a refused nc exits at once, a connected one stays
        # (its stdin a FIFO a sleeping writer holds open; a pipe would wait out the sleep on failure).
        hold = (
            "busybox mkfifo /tmp/hold; sleep 600 > /tmp/hold & "
            "for i in $(seq 100); do nc 192.0.2.77 7000 < /tmp/hold; sleep 0.2; done"
        )
        eng.docker("exec", "-d", ext_cli, "sh", "-c", hold)
        host_conn = wait_for(
            lambda: socket.create_connection((sink_ip, 9000), timeout=5), timeout=10, what="nc -l"
        )

        cfg = tmp / "prometheus.yml"
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{REPO / 'grafana' / 'alerts' / 'dockwatch.rules.yml'}']\n"
            "scrape_configs:\n"
            "  - job_name: dockwatch\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{agent.port}']}}]\n"
        )
        prom = Prometheus(cfg, tmp / "tsdb")
    except BaseException:
        if host_conn is not None:
            host_conn.close()
        agent.stop()
        eng.cleanup()
        raise
    base = prom.base
    try:
        wait_for(lambda: prom_query(base, 'up{job="dockwatch"} == 1'), timeout=60, what="Prometheus scraping")
        yield agent, base
    finally:
        assert host_conn is not None
        host_conn.close()
        prom.stop()
        assert agent.stop() == 0, agent.logtext()
        eng.cleanup()


def test_every_dashboard_query_returns_data(stack: tuple[Agent, str]) -> None:
    _, base = stack
    exempt = {**EMPTY_BY_DESIGN, **NEEDS_SWARM_SERVICES}
    queries = list(dashboard_queries(values={"job": "dockwatch"}))
    assert len(queries) > 50
    box: list[list[Query]] = [[], []]  # the last round's empty and unexplained queries

    def all_have_data() -> bool:
        """Rather than waiting a fixed time for data to accumulate (rate() needs two samples in its
        window, counters must move): ask until every query returns data, or the deadline passes."""
        empty = [q for q in queries if not prom_query(base, q.expr)]
        box[:] = [empty, [q for q in empty if not any(k in q.expr.lower() for k in exempt)]]
        return not box[1]

    with contextlib.suppress(TimeoutError):
        wait_for(all_have_data, timeout=180, interval=2, what="data in every panel")
    empty, unexplained = box
    assert not unexplained, "\n".join(f"{q.dashboard} {q.source}: {q.expr}" for q in unexplained)
    # Every exemption was used: an empty-by-design entry that no longer matches must go.
    for key, why in EMPTY_BY_DESIGN.items():
        assert any(key in q.expr.lower() for q in empty), f"{key!r} ({why}) returned data: remove it"


def test_first_die_and_oom_of_a_container_seen_at_zero_show_on_the_panels(
    stack: tuple[Agent, str], engine: Engine
) -> None:
    """Issue 9 item 3: a container Prometheus has scraped, which then dies once (and one OOM-killed
    once): the Events dashboard's Dies and OOMs panels show exactly that, not 0. increase() needs
    a sample before the event, so the counters are exported at 0 from the container's first sight."""
    _, base = stack
    ev = "dockwatch_container_events_total"
    wait_go = "while [ ! -f /tmp/go ]; do sleep 0.1; done"
    dies, ooms = f"dwt-die1-{uuid.uuid4().hex[:6]}", f"dwt-oom1-{uuid.uuid4().hex[:6]}"
    engine.run(BUSYBOX_IMAGE, "sh", "-c", f"{wait_go}; exit 2", name=dies)
    engine.run(
        *("--memory", "8m", "--memory-swap", "8m"),
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        f"{wait_go}; head -c 100000000 /dev/zero | tail >/dev/null; sleep 600",
        name=ooms,
    )
    for name, action in ((dies, "die"), (ooms, "oom")):  # Prometheus scraped them at 0 first
        wait_for(
            partial(prom_query, base, f'{ev}{{name="{name}",action="{action}"}} == 0'),
            30,
            what=f"{name}'s {action} counter at 0 in Prometheus",
        )
    for name in (dies, ooms):
        engine.docker("exec", name, "touch", "/tmp/go")
    panels = {}  # title -> query as written (source: "panel <id> '<title>' <refId>")
    for q in dashboard_queries():
        if q.dashboard == "dockwatch-events" and q.source.startswith("panel "):
            panels[q.source.split("'")[1]] = q.raw
    for name, action, panel in ((dies, "die", "Dies"), (ooms, "oom", "OOMs")):
        series = f'{ev}{{name="{name}",action="{action}"}}'
        wait_for(partial(prom_query, base, f"{series} >= 1"), 30, what=f"{name} {action} in Prometheus")
        # Evaluated at the newest sample's time, the panel shows exactly the counter's increase.
        (last,) = prom_query(base, f"timestamp({series})")
        at = float(last["value"][1])  # [evaluation time, the sample's timestamp]
        (counter,) = prom_query(base, series, at)
        expr = substitute(panels[panel], {"job": "dockwatch", "container": name})
        shown = prom_query(base, expr, at)  # empty: increase() had no two samples to compare
        value, count = float(shown[0]["value"][1]) if shown else 0.0, float(counter["value"][1])
        assert value == count >= 1, f"{panel} shows {value} for {name}, whose {action} counter is {count}"
        if action == "die":
            assert value == 1
