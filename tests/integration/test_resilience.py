"""The agent never crashes for a vanished container or a restarted dockerd."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from agent.collector import Registry
from agent.docker.client import DockerClient
from agent.hostfs import HostFS
from agent.inventory import Inventory, Snapshot
from agent.netstats import NetCollector
from exporters.prometheus.scrape import Scraper
from tests.support.agentproc import Agent, one, parse, scrape_until, select
from tests.support.engine import BUSYBOX_IMAGE, Engine

pytestmark = pytest.mark.docker
RX = "container_network_receive_bytes_total"


async def test_container_vanished_mid_scrape_is_not_an_error(engine: Engine) -> None:
    """A real container inspected while running, then removed before the scrape reads its /proc."""
    live = engine.run(BUSYBOX_IMAGE, "sleep", "600")
    doomed = engine.run(BUSYBOX_IMAGE, "sleep", "600")
    client = DockerClient(engine.host)
    try:
        await client.negotiate()
        inv = Inventory()
        stale = {cid: await client.inspect(cid) for cid in (live, doomed)}
        engine.docker("rm", "-f", doomed)
        inv._snap = Snapshot(containers=stale, node="n")  # the view just before the die event arrives
        scraper = Scraper(inv, Registry(NetCollector(HostFS())))
        m = parse((await scraper.scrape()).decode())
    finally:
        await client.close()
    assert one(m, "dockwatch_scrape_collector_success", collector="netns") == 1
    assert scraper.last_result is not None and scraper.last_result.vanished == 1
    assert scraper.last_result.errors == 0
    names = {lbl["name"] for lbl, _ in m[RX]}
    assert stale[live].name in names and stale[doomed].name not in names


def test_dockerd_restart_agent_keeps_serving_and_follows_new_containers(engine_session: Engine) -> None:
    eng = engine_session
    agent = Agent(eng).start()
    try:
        before = f"dwt-pre-{uuid.uuid4().hex[:8]}"
        eng.run(BUSYBOX_IMAGE, "sleep", "600", name=before)
        scrape_until(agent, lambda m: bool(select(m.get(RX, []), name=before)), 5, "pre-restart container")

        # /healthz must answer throughout the restart; record every probe's status.
        statuses: list[int] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                statuses.append(agent.get("/healthz")[0])
                time.sleep(0.1)

        t = threading.Thread(target=probe)
        t.start()
        try:
            eng.restart()
            m = scrape_until(
                agent, lambda m: one(m, "dockwatch_engine_connected") == 1, 30, "agent reconnected to dockerd"
            )
        finally:
            stop.set()
            t.join()
        assert statuses and all(s == 200 for s in statuses), statuses
        assert one(m, "dockwatch_engine_reconnects_total") >= 1

        after = f"dwt-post-{uuid.uuid4().hex[:8]}"
        eng.run(BUSYBOX_IMAGE, "sleep", "600", name=after)
        m = scrape_until(
            agent, lambda m: bool(select(m.get(RX, []), name=after)), 5, "post-restart container"
        )
        # Without live-restore dockerd stopped the old container; the re-list dropped it.
        assert not select(m.get(RX, []), name=before)
        assert agent.get("/readyz")[0] == 200
    finally:
        assert agent.stop() == 0, agent.logtext()
