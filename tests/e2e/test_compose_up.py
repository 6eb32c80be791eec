"""deploy/compose.yaml and deploy/sidecar-compose.yaml brought up by the compose tool.

The compose file is resolved by the tool itself (`config`), then adapted to this engine: the
agent image is the one built from the Dockerfile, Prometheus is Debian's binary in the local
base image (no registry here), bind sources point at this engine's socket and data root, and
published ports are dropped (this engine publishes nothing; they would only hold host ports).
Grafana and the optional Alertmanager are left out: there are no such images here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.baseimage import BASE_IMAGE
from tests.e2e.harness import DEPLOY, compose_tool, http_json, rule_groups
from tests.support.agentproc import parse
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import wait_for

pytestmark = pytest.mark.docker

PROJECT = "dwtcompose"
PROMETHEUS_BIN = "/usr/bin/prometheus"


def _retarget(volume: str | dict[str, Any], sources: dict[str, str]) -> str | dict[str, Any]:
    """A volume entry (short or long syntax) with its host source replaced where listed."""
    if isinstance(volume, str):
        source, _, rest = volume.partition(":")
        return f"{sources.get(source, source)}:{rest}"
    if volume.get("type") == "bind" and volume["source"] in sources:
        return {**volume, "source": sources[volume["source"]]}
    return volume


def resolve(cmd: list[str], *files: str) -> dict[str, Any]:
    """The deploy/ files merged and interpolated by the compose tool itself (`config`)."""
    tool = cmd[: cmd.index("-p")]
    args = [a for f in files for a in ("-f", str(DEPLOY / f))]
    # The Grafana password is required by the file (Grafana itself is left out below).
    env = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "test-only"}
    res = subprocess.run(
        [*tool, *args, "config"], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    return dict(yaml.safe_load(res.stdout))


@pytest.fixture
def compose(engine: Engine, tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    tool = compose_tool()
    if tool is None:
        pytest.skip("no compose tool (docker compose plugin or Debian's docker-compose)")
    path = tmp_path / "compose.yaml"
    cmd = [*tool, "-p", PROJECT, "-f", str(path)]
    try:
        yield cmd, path
    finally:
        if path.exists():
            subprocess.run(
                [*cmd, "down", "-v", "--timeout", "2"], env=engine.env, capture_output=True, timeout=120
            )


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package is not installed")
@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.docker-sd.yaml"]])
def test_compose_up_prometheus_scrapes_the_agent(
    engine: Engine, agent_image: str, compose: tuple[list[str], Path], files: list[str]
) -> None:
    cmd, path = compose
    doc = resolve(cmd, *files)
    root = engine.docker("info", "--format", "{{.DockerRootDir}}")
    sources = {"/var/run/docker.sock": engine.socket_path, "/var/lib/docker": root}
    services = doc["services"]
    del services["grafana"]
    services.pop("alertmanager", None)  # optional (a profile), and no Alertmanager image here
    agent, prom = services["dockwatch"], services["prometheus"]
    agent["image"] = agent_image
    agent.pop("build", None)
    prom["image"] = BASE_IMAGE
    prom["entrypoint"] = [PROMETHEUS_BIN]
    prom["volumes"].append(f"{PROMETHEUS_BIN}:{PROMETHEUS_BIN}:ro")
    for svc in (agent, prom):
        svc["volumes"] = [_retarget(v, sources) for v in svc["volumes"]]
        svc.pop("ports", None)
    doc["volumes"] = {
        k: v for k, v in doc.get("volumes", {}).items() if not k.startswith(("grafana", "alertmanager"))
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    up = subprocess.run([*cmd, "up", "-d"], env=engine.env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr

    prom_id = wait_for(lambda: container(engine, "prometheus"), timeout=60, what="the Prometheus container")
    nets = engine.inspect(prom_id)["NetworkSettings"]["Networks"]
    url = f"http://{next(iter(nets.values()))['IPAddress']}:9090"

    def target() -> dict[str, Any]:
        active = http_json(f"{url}/api/v1/targets?state=active")["data"]["activeTargets"]
        mine = [t for t in active if t["labels"]["job"] == "dockwatch"]
        assert len(mine) == 1, mine
        assert mine[0]["health"] == "up", f"{mine[0]['scrapeUrl']}: {mine[0]['lastError']}"
        return dict(mine[0])

    t = wait_for(target, timeout=90, interval=1, what="Prometheus to scrape the agent")
    assert rule_groups(url), "no alerting rules loaded from grafana/alerts"
    if "compose.docker-sd.yaml" in files:
        # Found through the socket by its label; instance = the container's name.
        agent_id = container(engine, "dockwatch")
        assert t["labels"]["instance"] == engine.inspect(agent_id)["Name"].lstrip("/")
    else:
        assert t["labels"]["instance"] == "dockwatch:9105"

    # What Prometheus stored from the agent: its own container, with its compose identity.
    def own_series() -> list[dict[str, Any]]:
        expr = f'container_network_receive_bytes_total{{job="dockwatch",compose_project="{PROJECT}"}}'
        res = http_json(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}")["data"]["result"]
        return list(res)

    series = wait_for(own_series, timeout=60, interval=1, what="the project's series in Prometheus")
    assert {s["metric"]["compose_service"] for s in series} >= {"dockwatch", "prometheus"}


def test_sidecar_compose_up(engine: Engine, agent_image: str, compose: tuple[list[str], Path]) -> None:
    """deploy/sidecar-compose.yaml as the tool resolves it; the app is a busybox httpd here."""
    cmd, path = compose
    doc = resolve(cmd, "sidecar-compose.yaml")
    app, side = doc["services"]["app"], doc["services"]["dockwatch"]
    app["image"] = BUSYBOX_IMAGE
    app["command"] = ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"]
    app.pop("ports", None)
    side["image"] = agent_image
    side.pop("build", None)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    up = subprocess.run([*cmd, "up", "-d"], env=engine.env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr

    app_id = wait_for(lambda: container(engine, "app"), timeout=60, what="the app container")
    side_id = wait_for(lambda: container(engine, "dockwatch"), timeout=60, what="the sidecar container")
    assert engine.inspect(side_id)["HostConfig"]["NetworkMode"] == f"container:{engine.inspect(app_id)['Id']}"

    # The sidecar listens in the app's namespace: scrape it from inside the app.
    def eth0() -> list[tuple[dict[str, str], float]]:
        out = engine.docker(
            "exec", app_id, "wget", "-q", "-O", "-", "http://127.0.0.1:9105/metrics", check=False
        )
        rx = parse(out).get("container_network_receive_bytes_total", []) if out else []
        return [(lbl, v) for lbl, v in rx if lbl["interface"] == "eth0"]

    (labels, _), *rest = wait_for(eth0, timeout=30, what="the sidecar's eth0 series")
    assert not rest
    assert labels["name"] == "app" and labels["compose_service"] == "app"


def container(engine: Engine, service: str) -> str:
    return engine.docker(
        "ps",
        "-q",
        "--filter",
        f"label=com.docker.compose.project={PROJECT}",
        "--filter",
        f"label=com.docker.compose.service={service}",
    )
