"""deploy/stack.yaml on a real one-node swarm, scraped by Prometheus with the shipped swarm config.

    swarm init → stack `dwt` = the agent service + the Prometheus service from deploy/stack.yaml
    (Prometheus = Debian's /usr/bin/prometheus in the local base image, same flags, same swarm
    config) + two busybox services that exchange HTTP on an overlay network
    → Prometheus discovers the agent task and scrapes it → assert what it stored → stack rm,
    swarm leave.

What the copy of the stack file changes, and why: images (no registry here); bind-mount
sources (this engine's socket and data root are not /var/run/docker.sock and /var/lib/docker);
the agent's port (the engine reserves published ports on 0.0.0.0 of this shared machine, so a
free one is used, as published and listen port alike); the web service resolves by DNS round
robin (a service VIP needs IPVS rules this engine does not make); Grafana is left out (no
image). The test engine runs with --iptables=false --userland-proxy=false, so no published port
answers: Prometheus therefore runs in the swarm as the stack has it, scrapes the agent on the
overlay network they share (the shipped config's choice), and the test reaches Prometheus
through its docker_gwbridge address, which the host routes to.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agentproc import free_port
from baseimage import BASE_IMAGE
from engine import BUSYBOX_IMAGE, Engine, wait_for
from harness import DEPLOY, http_json, rule_groups

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

STACK = "dwt"
PROMETHEUS_BIN = "/usr/bin/prometheus"
# Bounded traffic: the client fetches a 64 KiB file this many times, then idles until removed.
FETCHES = 100
BLOB = 64 * 1024


@pytest.fixture
def swarm(engine: Engine) -> Iterator[str]:
    """A one-node swarm on the test engine for this test only; yields the node's host name."""
    state = engine.docker("info", "--format", "{{.Swarm.LocalNodeState}}")
    if state != "inactive":
        pytest.fail(f"the test engine is already in a swarm ({state}): another test did not leave it")
    had_gwbridge = bool(engine.docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$"))
    engine.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield engine.docker("node", "inspect", "self", "--format", "{{.Description.Hostname}}")
    finally:
        engine.docker("swarm", "leave", "--force", check=False)
        if not had_gwbridge:  # swarm made it; leaving does not remove it
            engine.docker("network", "rm", "docker_gwbridge", check=False)


def _bind(volume: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    if volume.get("type") == "bind" and volume["source"] in sources:
        return {**volume, "source": sources[volume["source"]]}
    return volume


def stack_for_test(engine: Engine, agent_image: str, agent_port: int) -> dict[str, Any]:
    """deploy/stack.yaml's agent and Prometheus, adapted to this engine, plus the traffic pair."""
    doc = yaml.safe_load((DEPLOY / "stack.yaml").read_text())
    root = engine.docker("info", "--format", "{{.DockerRootDir}}")
    sources = {
        "/var/run/docker.sock": engine.socket_path,
        "/var/lib/docker": root,
    }
    agent = copy.deepcopy(doc["services"]["dockwatch"])
    agent["image"] = agent_image
    agent["volumes"] = [_bind(v, sources) for v in agent["volumes"]]
    # Discovery gives the overlay target the *published* port, so both move together.
    for p in agent["ports"]:
        if p["target"] == 9105:
            p["target"] = p["published"] = agent_port
    agent["environment"] = {"DOCKWATCH_WEB_LISTEN_ADDRESS": f":{agent_port}"}

    prom = copy.deepcopy(doc["services"]["prometheus"])
    prom["image"] = BASE_IMAGE
    prom["entrypoint"] = [PROMETHEUS_BIN]
    prom["volumes"] = [_bind(v, sources) for v in prom["volumes"]]
    prom["volumes"].append(
        {"type": "bind", "source": PROMETHEUS_BIN, "target": PROMETHEUS_BIN, "read_only": True}
    )
    prom.pop("ports", None)  # nothing is published on this engine; reached via docker_gwbridge

    configs = copy.deepcopy(doc["configs"])
    for c in configs.values():
        c["file"] = str((DEPLOY / c["file"]).resolve())
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
    return {
        "version": doc["version"],
        "services": {
            "dockwatch": agent,
            "prometheus": prom,
            # dnsrr: `web` resolves to the task's address; a service VIP needs the engine's
            # iptables/IPVS rules, which this engine (--iptables=false) does not make.
            "web": {**busybox, "command": ["sh", "-c", serve], "deploy": {"endpoint_mode": "dnsrr"}},
            "client": {**busybox, "command": ["sh", "-c", fetch]},
        },
        "networks": {**doc["networks"], "traffic": {"driver": "overlay"}},
        "volumes": doc["volumes"],
        "configs": {k: v for k, v in configs.items() if k.startswith("prometheus")},
    }


@contextlib.contextmanager
def deployed(engine: Engine, stack: dict[str, Any], tmp_path: Path) -> Iterator[None]:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    res = subprocess.run(
        ["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(path), STACK],
        env=engine.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert res.returncode == 0, res.stderr
        # The CLI drops keys swarm cannot do with only a warning (e.g. privileged, cap_add on old
        # engines): none of ours may be among them.
        assert "Ignoring unsupported options" not in res.stdout + res.stderr, res.stdout + res.stderr
        yield
    finally:
        engine.docker("stack", "rm", STACK, check=False)
        ns = f"label=com.docker.stack.namespace={STACK}"
        wait_for(
            lambda: (
                not engine.docker("ps", "-aq", "--filter", ns)
                and not engine.docker("network", "ls", "-q", "--filter", ns)
            ),
            timeout=120,
            interval=0.5,
            what="the stack's containers and networks to go",
        )
        for vol in stack.get("volumes", {}):
            engine.docker("volume", "rm", f"{STACK}_{vol}", check=False)


def task_container(engine: Engine, service: str) -> str:
    """Id of the running container of a one-task service of the stack."""
    return engine.docker(
        "ps",
        "-q",
        "--filter",
        f"label=com.docker.swarm.service.name={STACK}_{service}",
        "--filter",
        "status=running",
    )


def gwbridge_ip(engine: Engine, container: str) -> str:
    cid = engine.inspect(container)["Id"]
    net = engine.inspect("docker_gwbridge")
    return str(net["Containers"][cid]["IPv4Address"].split("/")[0])


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    data = http_json(f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert data["status"] == "success", data
    return list(data["data"]["result"])


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package is not installed")
def test_global_agent_is_discovered_and_reports_overlay_traffic(
    engine: Engine, swarm: str, agent_image: str, tmp_path: Path
) -> None:
    node = swarm
    stack = stack_for_test(engine, agent_image, free_port())
    with deployed(engine, stack, tmp_path):
        agent = wait_for(lambda: task_container(engine, "dockwatch"), timeout=90, what="the agent task")
        prom_task = wait_for(lambda: task_container(engine, "prometheus"), timeout=90, what="Prometheus")
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
