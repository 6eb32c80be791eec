"""Per-container event counters on a real engine, in both collection modes (issue 9 items 2, 3).

- The counters the dashboards and alerts take increase() of exist at 0 from a container's first
  sight, so its first die is an increase of 1 (the live Prometheus proof of the panel is in
  test_dashboards_live.py).
- Thousands of engine events while /metrics is scraped without pause: every scrape answers 200,
  the agent keeps running, and each container's counter equals the events sent to it.
"""

from __future__ import annotations

import http.client
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.agentproc import Agent, Series, scrape_until, select
from tests.support.engine import BUSYBOX_IMAGE, Engine

pytestmark = pytest.mark.docker

EV = "dockwatch_container_events_total"


def uid() -> str:
    return uuid.uuid4().hex[:8]


def counts(m: dict[str, Series], name: str) -> dict[str, float]:
    return {lbl["action"]: v for lbl, v in select(m.get(EV, []), name=name)}


def counted(m: dict[str, Series], name: str) -> dict[str, float]:
    """The actions the dashboards and alerts count (a `create` before the start is counted too)."""
    return {a: v for a, v in counts(m, name).items() if a in ("start", "die", "kill", "oom", "restart")}


def test_counters_are_seen_at_zero_then_count_the_first_die(engine: Engine, agent: Agent) -> None:
    name = f"dwt-ev0-{uid()}"
    engine.run(BUSYBOX_IMAGE, "sh", "-c", "while [ ! -f /tmp/go ]; do sleep 0.1; done; exit 2", name=name)
    m = scrape_until(agent, lambda m: bool(counts(m, name)), 10, "the container's event counters")
    # Seen through its start event: start is 1 already, everything else the dashboards count is 0.
    assert counted(m, name) == {"start": 1, "die": 0, "kill": 0, "oom": 0, "restart": 0}
    engine.docker("exec", name, "touch", "/tmp/go")
    m = scrape_until(agent, lambda m: counts(m, name).get("die") == 1, 10, "the die counted")
    assert counted(m, name) == {"start": 1, "die": 1, "kill": 0, "oom": 0, "restart": 0}


class _UnixHTTP(http.client.HTTPConnection):
    """The Engine API over its unix socket (the test talks to the engine directly: the CLI would
    spend ~100 ms per event)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.unix_path)
        self.sock = s


def test_thousands_of_events_while_scraping(engine: Engine, agent: Agent) -> None:
    """kill -s USR1 to a `sleep` that is pid 1 only makes a kill event (pid 1 ignores signals it
    has no handler for), so the engine can produce thousands of events in seconds."""
    names = [f"dwt-evs-{i}-{uid()}" for i in range(10)]
    for n in names:
        engine.run(BUSYBOX_IMAGE, "sleep", "600", name=n)
    scrape_until(
        agent, lambda m: all(counts(m, n).get("kill") == 0 for n in names), 10, "the ten containers seen"
    )

    statuses: list[int] = []
    stop = threading.Event()

    def scrape_loop() -> None:
        while not stop.is_set():
            statuses.append(agent.get("/metrics")[0])

    rounds = 200  # x 10 containers: 2,000 kill events
    sent = dict.fromkeys(names, 0)

    def kill_round(_: int) -> None:
        conn = _UnixHTTP(engine.socket_path)
        try:
            for n in names:
                conn.request("POST", f"/containers/{n}/kill?signal=USR1")
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 204, resp.status
        finally:
            conn.close()

    scraper = threading.Thread(target=scrape_loop)
    scraper.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(kill_round, range(rounds)))
        for n in names:
            sent[n] = rounds
    finally:
        stop.set()
        scraper.join()
    assert statuses and set(statuses) == {200}, f"{len(statuses)} scrapes: {sorted(set(statuses))}"
    assert len(statuses) >= 10, "too few scrapes overlapped the events to prove anything"
    assert agent.proc is not None and agent.proc.poll() is None, agent.logtext()
    m = scrape_until(
        agent,
        lambda m: all(counts(m, n).get("kill") == sent[n] for n in names),
        15,
        "every kill event counted",
    )
    assert {n: counts(m, n)["kill"] for n in names} == sent
    assert m["dockwatch_engine_connected"][0][1] == 1
