"""deploy/compose.yaml brought up by the compose tool: Prometheus scrapes the agent by its static target.

The compose file is resolved by the tool itself (`config`), then adapted to this engine: the
agent image is the one built from the Dockerfile, Prometheus is Debian's binary in the local
base image (no registry here), bind sources point at this engine's socket and data root, and
published ports are dropped (this engine publishes nothing; they would only hold host ports).
Grafana is left out: there is no Grafana image here.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from baseimage import BASE_IMAGE
from engine import Engine, wait_for
from harness import DEPLOY, compose_tool, http_json

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
    resolved = subprocess.run(
        [*cmd[: cmd.index("-f")], *(a for f in files for a in ("-f", str(DEPLOY / f))), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc = yaml.safe_load(resolved.stdout)
    root = engine.docker("info", "--format", "{{.DockerRootDir}}")
    sources = {"/var/run/docker.sock": engine.socket_path, "/var/lib/docker": root}
    services = doc["services"]
    del services["grafana"]
    agent, prom = services["dockwatch"], services["prometheus"]
    agent["image"] = agent_image
    agent.pop("build", None)
    prom["image"] = BASE_IMAGE
    prom["entrypoint"] = [PROMETHEUS_BIN]
    prom["volumes"].append(f"{PROMETHEUS_BIN}:{PROMETHEUS_BIN}:ro")
    for svc in (agent, prom):
        svc["volumes"] = [_retarget(v, sources) for v in svc["volumes"]]
        svc.pop("ports", None)
    doc["volumes"] = {k: v for k, v in doc.get("volumes", {}).items() if not k.startswith("grafana")}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    up = subprocess.run([*cmd, "up", "-d"], env=engine.env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr

    prom_id = wait_for(
        lambda: engine.docker(
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--filter",
            "label=com.docker.compose.service=prometheus",
        ),
        timeout=60,
        what="the Prometheus container",
    )
    nets = engine.inspect(prom_id)["NetworkSettings"]["Networks"]
    url = f"http://{next(iter(nets.values()))['IPAddress']}:9090"

    def target() -> dict[str, Any]:
        active = http_json(f"{url}/api/v1/targets?state=active")["data"]["activeTargets"]
        mine = [t for t in active if t["labels"]["job"] == "dockwatch"]
        assert len(mine) == 1, mine
        assert mine[0]["health"] == "up", f"{mine[0]['scrapeUrl']}: {mine[0]['lastError']}"
        return dict(mine[0])

    t = wait_for(target, timeout=90, interval=1, what="Prometheus to scrape the agent")
    if "compose.docker-sd.yaml" in files:
        # Found through the socket by its label; instance = the container's name.
        agent_id = engine.docker(
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--filter",
            "label=com.docker.compose.service=dockwatch",
        )
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
