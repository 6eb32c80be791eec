"""The agent keeps each namespace's /proc/<pid>/net files open between collections
(agent/nsfiles.py), and an open file holds its namespace alive: when a container goes, the
agent must close its files, at scrape time and in interval mode, or it would pin the namespaces
of every container removed. (That the kept files give the kernel's numbers of now, not of the
first read, is test_network_metrics.py's traffic test: it scrapes before and after the traffic.)"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.support.agentproc import Agent, scrape_until, select
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import wait_for

pytestmark = pytest.mark.docker
RX = "container_network_receive_bytes_total"
WAIT = 30.0


def files_held(agent: Agent, pid: int) -> set[str]:
    """The names of the /proc/<pid>/net files the agent's process has open."""
    assert agent.proc is not None
    out = set()
    fd_dir = f"/proc/{agent.proc.pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(f"/proc/{pid}/net/"):
            out.add(Path(target).name)
    return out


def test_a_removed_containers_files_are_closed(engine: Engine, agent: Agent) -> None:
    name = f"dwt-kept-{uuid.uuid4().hex[:8]}"
    engine.run(BUSYBOX_IMAGE, "sleep", "600", name=name)
    pid = engine.pid(name)
    scrape_until(agent, lambda m: bool(select(m.get(RX, []), name=name)), WAIT, f"{name}'s series")
    held = wait_for(lambda: files_held(agent, pid), timeout=WAIT, what=f"the agent to keep {name}'s files")
    assert {"dev", "snmp", "netstat", "sockstat"} <= held
    engine.docker("rm", "-f", name)
    scrape_until(agent, lambda m: not select(m.get(RX, []), name=name), WAIT, f"{name}'s series gone")
    wait_for(lambda: not files_held(agent, pid), timeout=WAIT, what=f"the agent to close {name}'s files")


def test_every_kept_file_is_closed_after_the_idle_time_without_a_scrape(engine: Engine) -> None:
    """Nobody scrapes: after --collector.keep-files-idle the agent closes every kept file, so it
    pins no namespace (the container here stays; only the time without a collection passes)."""
    name = f"dwt-idle-{uuid.uuid4().hex[:8]}"
    engine.run(BUSYBOX_IMAGE, "sleep", "600", name=name)
    agent = Agent(engine, "--collector.keep-files-idle=2s").start()
    try:
        pid = engine.pid(name)
        scrape_until(agent, lambda m: bool(select(m.get(RX, []), name=name)), WAIT, f"{name}'s series")
        assert {"dev", "snmp", "netstat", "sockstat"} <= files_held(agent, pid)  # kept after the scrape
        wait_for(lambda: not files_held(agent, pid), timeout=WAIT, what="the idle agent to close the files")
        # and a scrape after that opens them again, with the container's series
        scrape_until(agent, lambda m: bool(select(m.get(RX, []), name=name)), WAIT, f"{name}'s series again")
        assert {"dev", "snmp", "netstat", "sockstat"} <= files_held(agent, pid)
    finally:
        agent.stop()
        engine.docker("rm", "-f", name)
