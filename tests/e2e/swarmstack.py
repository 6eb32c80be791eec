"""deploy/stack.yaml's agent and Prometheus, adapted to the test engine; deploy and query helpers.

What the copy changes, and why: images (no registry here); bind-mount sources (this engine's
socket and data root are not /var/run/docker.sock and /var/lib/docker; extra nodes of
tests/e2e/swarmnodes.py have their own at the same paths); the agent's port (the engine reserves
published ports on 0.0.0.0 of this shared machine, so a free one is used, as published and listen
port alike); Grafana is left out (no image). The test engine runs with --iptables=false
--userland-proxy=false, so no port it publishes answers: Prometheus runs in the swarm as the
stack has it, scrapes the agents on the overlay network they share (the shipped config's
choice), and tests reach Prometheus through its docker_gwbridge address, which the host routes to.
Prometheus is Debian's /usr/bin/prometheus in the local base image, with the stack's flags and
the shipped deploy/prometheus/prometheus-swarm.yml as its config.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.baseimage import BASE_IMAGE
from tests.e2e.harness import DEPLOY, http_json
from tests.support.engine import Engine
from tests.support.toolbox import wait_for

PROMETHEUS_BIN = "/usr/bin/prometheus"


def _bind(volume: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    if volume.get("type") == "bind" and volume["source"] in sources:
        return {**volume, "source": sources[volume["source"]]}
    return volume


def shipped_stack(engine: Engine, agent_image: str, agent_port: int) -> dict[str, Any]:
    """The stack file's agent and Prometheus services, networks, volumes and their configs."""
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
    return {
        "version": doc["version"],
        "services": {"dockwatch": agent, "prometheus": prom},
        "networks": copy.deepcopy(doc["networks"]),
        "volumes": copy.deepcopy(doc["volumes"]),
        "configs": {k: v for k, v in configs.items() if k.startswith("prometheus")},
    }


@contextlib.contextmanager
def deployed(engine: Engine, stack: dict[str, Any], name: str, tmp_path: Path) -> Iterator[None]:
    """`docker stack deploy` the stack; on exit remove it and wait until the manager's part is gone."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    res = subprocess.run(
        ["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(path), name],
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
        engine.docker("stack", "rm", name, check=False)
        ns = f"label=com.docker.stack.namespace={name}"
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
            engine.docker("volume", "rm", f"{name}_{vol}", check=False)


def task_container(engine: Engine, service: str) -> str:
    """Id of the running container of `service` (full name) on this engine, if one runs."""
    return engine.docker(
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        f"label=com.docker.swarm.service.name={service}",
        "--filter",
        "status=running",
    )


def gwbridge_ip(engine: Engine, container: str) -> str:
    cid = engine.inspect(container)["Id"]
    net = engine.inspect("docker_gwbridge")
    return str(net["Containers"][cid]["IPv4Address"].split("/")[0])


def query(prom: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query (at `at`, Unix seconds, if given); its result list."""
    params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    data = http_json(f"{prom}/api/v1/query?{urllib.parse.urlencode(params)}")
    assert data["status"] == "success", data
    if data["data"]["resultType"] == "scalar":
        return [{"metric": {}, "value": data["data"]["result"]}]
    return list(data["data"]["result"])


def targets(prom: str, job: str = "dockwatch") -> list[dict[str, Any]]:
    active = http_json(f"{prom}/api/v1/targets?state=active")["data"]["activeTargets"]
    return [t for t in active if t["labels"].get("job") == job]
