"""The Docker host's name for log sinks comes from the engine, not from the agent's container."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from agent import config
from agent.app import engine_hostname
from tests.support.engine import Engine

pytestmark = pytest.mark.docker


def test_engine_hostname_is_the_engines_name(engine: Engine) -> None:
    info = json.loads(engine.docker("info", "--format", "{{json .}}"))
    cfg = config.load({"docker.host": engine.host}, env={})
    assert asyncio.run(engine_hostname(cfg)) == info["Name"]


def test_node_name_wins_and_unreachable_engine_falls_back() -> None:
    assert asyncio.run(engine_hostname(config.load({"node-name": "edge-7"}, env={}))) == "edge-7"
    cfg = config.load({"docker.host": "unix:///nonexistent/docker.sock"}, env={})
    assert (
        asyncio.run(engine_hostname(cfg))
        == subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    )
