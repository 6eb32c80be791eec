"""End-to-end helpers: the repo's paths, the agent's image build, HTTP against a target."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.baseimage import BASE_IMAGE, ensure_base_image
from tests.support.engine import Engine

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "deploy"
# Cached on the engine like the busybox image: rebuilt (from layer cache) every session.
AGENT_IMAGE = "dockwatch-test/dockwatch:e2e"


def build_agent_image(engine: Engine) -> dict[str, float]:
    """Base image (cached) + `docker build` of the repo's Dockerfile; seconds spent on each."""
    took = {"base": ensure_base_image(["docker"], engine.env, engine.root / "debootstrap.log")}
    t0 = time.monotonic()
    res = subprocess.run(
        [
            "docker",
            "build",
            "--network",
            "host",
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "-t",
            AGENT_IMAGE,
            str(REPO),
        ],
        env=engine.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if res.returncode != 0:
        raise RuntimeError(f"docker build failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    took["build"] = time.monotonic() - t0
    # The previous build's image, untagged now; its build-stage layers stay as cache.
    engine.docker("image", "prune", "-f", "--filter", "label=org.opencontainers.image.title=dockwatch")
    return took


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


def http_json(url: str, timeout: float = 5) -> Any:
    return json.loads(http_get(url, timeout))


def compose_tool() -> list[str] | None:
    """`docker compose` (v2 plugin) if it answers, else `docker-compose` (v1), else None."""
    if shutil.which("docker"):
        res = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if res.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


RULES_IN_CONTAINER = "/etc/prometheus/rules/dockwatch.rules.yml"


def rule_groups(prometheus: str) -> list[str]:
    """Names of the rule groups Prometheus loaded from grafana/alerts' file."""
    groups = http_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
    return [g["name"] for g in groups if g["file"] == RULES_IN_CONTAINER]
