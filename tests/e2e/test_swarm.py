"""deploy/stack.yaml on a real one-node swarm, scraped by Prometheus with the shipped swarm config.

    swarm init (the `swarm` fixture) → stack `dwt` = the agent service + the Prometheus service
    from deploy/stack.yaml (adapted as tests/e2e/swarmstack.py says) + two busybox services that
    exchange HTTP on an overlay network → Prometheus discovers the agent task and scrapes it →
    assert what it stored → stack rm, swarm leave.

Besides swarmstack.py's changes to the stack copy: the web service resolves by DNS round robin (a
service VIP needs IPVS rules this engine does not make). The three-node case is
tests/e2e/test_swarm_nodes.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import http_json, rule_groups
from tests.e2e.swarmnodes import Swarm
from tests.e2e.swarmstack import deployed, gwbridge_ip, query, shipped_stack, task_container
from tests.support.agentproc import free_port
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

STACK = "dwt"
# Bounded traffic: the client fetches a 64 KiB file this many times, then idles until removed.
FETCHES = 100
BLOB = 64 * 1024


def stack_for_test(engine: Engine, agent_image: str, agent_port: int) -> dict[str, Any]:
    """deploy/stack.yaml's agent and Prometheus, adapted to this engine, plus the traffic pair."""
    stack = shipped_stack(engine, agent_image, agent_port)
    serve = (
        f"mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/blob bs={BLOB} count=1 2>/dev/null"
        " && exec httpd -f -p 8080 -h /tmp/www"
    )
    # $$: the stack file is interpolated by `docker stack deploy`.
    fetch = (
        f"i=0; while [ $$i -lt {FETCHES} ]; do"
        " wget -q -O /dev/null http://web:8080/blob && i=$$((i+1)) || sleep 0.2; done;"
        " exec sleep 3600"
    )
    # As pid 1, httpd and sleep ignore SIGTERM: a short grace period keeps `stack rm` quick.
    busybox = {"image": BUSYBOX_IMAGE, "networks": ["traffic"], "stop_grace_period": "1s"}
    # dnsrr: `web` resolves to the task's address; a service VIP needs the engine's
    # iptables/IPVS rules, which this engine (--iptables=false) does not make.
    stack["services"]["web"] = {
        **busybox,
        "command": ["sh", "-c", serve],
        "deploy": {"endpoint_mode": "dnsrr"},
    }
    stack["services"]["client"] = {**busybox, "command": ["sh", "-c", fetch]}
    # Issue 11: one long-lived connection from a task of another service to web's task (retried,
    # bounded, until web listens), and the agent's connection tier on a short interval to see it.
    hold = "for i in $$(seq 100); do sleep 3600 | nc web 8080; sleep 0.5; done"
    stack["services"]["holder"] = {**busybox, "command": ["sh", "-c", hold]}
    stack["services"]["dockwatch"]["environment"].update(
        {"DOCKWATCH_COLLECTOR_CONNECTIONS": "true", "DOCKWATCH_COLLECTOR_CONNECTIONS_INTERVAL": "2s"}
    )
    stack["networks"]["traffic"] = {"driver": "overlay"}
    return stack


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package is not installed")
def test_global_agent_is_discovered_and_reports_overlay_traffic(
    engine: Engine, swarm: Swarm, agent_image: str, tmp_path: Path
) -> None:
    node = swarm.hostname
    stack = stack_for_test(engine, agent_image, free_port())
    with deployed(engine, stack, STACK, tmp_path):
        agent = wait_for(
            lambda: task_container(engine, f"{STACK}_dockwatch"), timeout=90, what="the agent task"
        )
        prom_task = wait_for(
            lambda: task_container(engine, f"{STACK}_prometheus"), timeout=90, what="Prometheus"
        )
        prom = f"http://{gwbridge_ip(engine, prom_task)}:9090"

        # No privileges: what swarm actually ran.
        host_config = engine.inspect(agent)["HostConfig"]
        assert host_config["Privileged"] is False
        assert not host_config["CapAdd"]
        assert host_config["CapDrop"] == ["ALL"]
        assert host_config["PidMode"] != "host"
        assert host_config["ReadonlyRootfs"] is True

        # Discovery: one target, the agent task on this node, up, instance = the node's host name.
        def agent_target() -> dict[str, Any]:
            active = http_json(f"{prom}/api/v1/targets?state=active")["data"]["activeTargets"]
            mine = [t for t in active if t["labels"].get("job") == "dockwatch"]
            assert len(mine) == 1, f"dockwatch targets: {mine}"
            # Raised, not returned: the last reason is in the timeout's traceback.
            assert mine[0]["health"] == "up", f"{mine[0]['scrapeUrl']}: {mine[0]['lastError']}"
            return dict(mine[0])

        target = wait_for(agent_target, timeout=120, interval=1, what="Prometheus to scrape the agent task")
        assert rule_groups(prom), "no alerting rules loaded from the stack's config"
        assert target["labels"]["instance"] == node
        assert target["discoveredLabels"]["__meta_dockerswarm_service_name"] == f"{STACK}_dockwatch"
        assert target["discoveredLabels"]["__meta_dockerswarm_network_name"] == "dockwatch-monitoring"

        # The busybox tasks' traffic, as Prometheus stored it: swarm identity and the overlay network.
        traffic_net = f"{STACK}_traffic"

        def web_tx() -> list[dict[str, Any]]:
            res = query(
                prom,
                f'container_network_transmit_bytes_total{{job="dockwatch",service="{STACK}_web",'
                f'network="{traffic_net}"}} > {FETCHES * BLOB}',
            )
            return res

        series = wait_for(web_tx, timeout=120, interval=1, what=f"web's transmit bytes on {traffic_net}")
        assert len(series) == 1, series
        labels = series[0]["metric"]
        assert labels["stack"] == STACK
        assert labels["task"].startswith(f"{STACK}_web.1.")
        assert labels["node"] == node
        assert labels["instance"] == node

        rx = query(
            prom,
            f'container_network_receive_bytes_total{{service="{STACK}_client",network="{traffic_net}"}}',
        )
        assert len(rx) == 1 and float(rx[0]["value"][1]) > FETCHES * BLOB, rx
        assert rx[0]["metric"]["task"].startswith(f"{STACK}_client.1.")

        # Who talks to whom across services on the overlay: holder's task holds a connection to
        # web's task (dnsrr: the task's address); both ends name the other's service.
        def edge(service: str, direction: str, peer_service: str) -> list[dict[str, Any]]:
            return query(
                prom,
                f'container_network_tcp_peer_connections{{service="{service}",direction="{direction}",'
                f'peer_service="{peer_service}",port="8080"}} >= 1',
            )

        held = wait_for(
            lambda: edge(f"{STACK}_holder", "client", f"{STACK}_web"),
            timeout=120,
            interval=1,
            what="holder → web",
        )
        assert held[0]["metric"]["peer"].startswith(f"{STACK}_web.1."), held
        served = wait_for(
            lambda: edge(f"{STACK}_web", "server", f"{STACK}_holder"),
            timeout=120,
            interval=1,
            what="web ← holder",
        )
        assert served[0]["metric"]["peer"].startswith(f"{STACK}_holder.1."), served
