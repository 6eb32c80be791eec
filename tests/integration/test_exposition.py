"""/metrics of the real agent: OpenMetrics on Accept, the name[] filter, gzip, and process_*
metrics equal to what the kernel says about the agent's process (/proc/<pid>)."""

from __future__ import annotations

import gzip
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from tests.support.agentproc import Agent, one, parse
from tests.support.engine import Engine

pytestmark = pytest.mark.docker

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    f = stat(pid)
    return (int(f[11]) + int(f[12])) / TICK


@pytest.fixture(scope="module")
def agent(engine_session: Engine) -> Iterator[Agent]:
    eng = Engine(host=engine_session.host, root=engine_session.root, owned=False)
    a = Agent(eng).start()
    yield a
    assert a.stop() == 0, a.logtext()


def test_openmetrics_when_asked_like_prometheus_asks(agent: Agent) -> None:
    headers, body = get(agent.url + "/metrics", {"Accept": PROMETHEUS_ACCEPT})
    assert headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    text = body.decode()
    assert text.endswith("# EOF\n")
    names = {s.name for fam in parse_openmetrics(text) for s in fam.samples}  # strict parser
    assert {"dockwatch_build_info", "process_cpu_seconds_total", "dockwatch_containers_tracked"} <= names
    # Without an Accept asking for it: the text format, as before.
    headers, body = get(agent.url + "/metrics")
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# EOF" not in body
    # gzip of either.
    headers, body = get(agent.url + "/metrics", {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body).decode().endswith("# EOF\n")


def test_name_filter(agent: Agent) -> None:
    q = "name[]=process_open_fds&name[]=dockwatch_build_info&name[]=container_network_receive_bytes_total"
    _, body = get(f"{agent.url}/metrics?{q}")
    got = parse(body.decode())
    assert set(got) == {"process_open_fds", "dockwatch_build_info", "container_network_receive_bytes_total"}
    _, body = get(f"{agent.url}/metrics?{q}", {"Accept": PROMETHEUS_ACCEPT})
    got_om = {s.name for fam in parse_openmetrics(body.decode()) for s in fam.samples}
    assert got_om == set(got)


def test_process_metrics_are_the_kernels(agent: Agent) -> None:
    assert agent.proc is not None
    pid = agent.proc.pid
    before = cpu_seconds(pid)
    rss_before = int(stat(pid)[21]) * PAGE
    m = agent.scrape()
    after = cpu_seconds(pid)
    rss_after = int(stat(pid)[21]) * PAGE
    # CPU: read by the agent between our two reads of the same counters.
    # (utime + stime) / ticks here, utime / ticks + stime / ticks there: equal up to float rounding.
    assert before - 1e-9 <= one(m, "process_cpu_seconds_total") <= after + 1e-9
    # Start time: boot time + the process's start in clock ticks, as the kernel reports it.
    btime = next(
        int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime")
    )
    assert one(m, "process_start_time_seconds") == pytest.approx(btime + int(stat(pid)[19]) / TICK, abs=0.01)
    rss = one(m, "process_resident_memory_bytes")
    assert 0.8 * min(rss_before, rss_after) <= rss <= 1.2 * max(rss_before, rss_after)
    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
    soft = next(ln for ln in limits if ln.startswith("Max open files")).split()[3]
    assert one(m, "process_max_fds") == float(soft)
    # Open fds move by the scrape's own sockets: within a few of what /proc lists now.
    assert abs(one(m, "process_open_fds") - len(os.listdir(f"/proc/{pid}/fd"))) <= 5


def test_at_web_max_connections_a_new_connection_closes_the_idle_one(engine: Engine) -> None:
    """The limit reaches the real agent's server: with one connection allowed and one held idle
    (a client's keep-alive), a scrape is still served, and the idle connection is closed for it.
    (The 503, when every connection is in a request, is tests/unit/test_httpd.py's.)"""
    agent = Agent(engine, "--web.max-connections=1").start()
    try:
        host, port = agent.url.removeprefix("http://").split(":")
        held = socket.create_connection((host, int(port)), timeout=30)
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held.recv(4096).startswith(b"HTTP/1.1 200 ")
        _, body = get(agent.url + "/metrics")
        assert b"dockwatch_build_info" in body
        assert held.recv(4096) == b""  # closed (FIN) for the scrape
        held.close()
    finally:
        agent.stop()
