"""Sidecar mode: the agent inside an app's network namespace, with no Docker socket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import procnet
from tests.support.agentproc import REPO, Series, free_port, one, parse
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import agent_env, wait_for

pytestmark = pytest.mark.docker


def test_sidecar_reports_the_app_namespace_equal_to_the_kernel(engine: Engine, tmp_path: Path) -> None:
    app = engine.run(
        BUSYBOX_IMAGE, "sh", "-c", "echo hello > /var/www/index.html; httpd -f -p 80 -h /var/www"
    )
    pid = engine.pid(app)
    port = free_port()
    log = open(tmp_path / "sidecar.log", "wb")  # noqa: SIM115
    # nsenter puts the agent in the app's namespace, as network_mode: service:app does; no socket
    # is given, DOCKER_HOST points nowhere, so nothing but /proc/self/net can be read.
    env = agent_env(DOCKER_HOST="unix:///nonexistent.sock")
    agent = subprocess.Popen(
        [
            "nsenter",
            f"--net=/proc/{pid}/ns/net",
            sys.executable,
            "-m",
            "agent",
            "run",
            "--sidecar",
            "--sidecar.name=shop-web",
            "--sidecar.service=web",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )
    try:
        # The agent listens on the app's loopback: scrape it from inside the app, like a peer would.
        def scrape() -> dict[str, Series]:
            out = engine.docker(
                "exec", app, "wget", "-q", "-O", "-", f"http://127.0.0.1:{port}/metrics", check=False
            )
            return parse(out) if out else {}

        wait_for(lambda: scrape().get("container_network_receive_bytes_total"), timeout=20, what="sidecar up")
        for _ in range(3):  # some traffic into the app
            engine.docker("exec", app, "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/")

        def quiet() -> tuple[dict[str, Series], procnet.DevCounters] | None:
            """A scrape between two equal kernel readings (only eth0: the scrape crosses the app's lo)."""
            before = procnet.parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text())["eth0"]
            m = scrape()
            after = procnet.parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text())["eth0"]
            return (m, before) if before == after else None

        m, before = wait_for(quiet, timeout=30, what="the app's namespace quiet during a scrape")
        rx = m["container_network_receive_bytes_total"]
        assert [(lbl["name"], lbl["interface"]) for lbl, _ in rx] == [
            ("shop-web", "eth0")
        ]  # no host namespace
        assert rx[0][1] == before.rx_bytes
        assert one(m, "container_network_transmit_packets_total", name="shop-web") == before.tx_packets
        assert rx[0][0]["service"] == "web" and rx[0][0]["compose_service"] == "web"
        # Loopback traffic (the wget above) is the app's too, but lo is not exported by default.
        assert one(m, "dockwatch_scrape_collector_success", collector="netns") == 1
        assert one(m, "container_network_tcp_passive_opens_total", name="shop-web") >= 3
    finally:
        agent.terminate()
        assert agent.wait(timeout=20) == 0, (tmp_path / "sidecar.log").read_text()
