"""End-to-end fixtures: the agent's image, built from the Dockerfile on a locally made base."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from engine import Engine
from harness import AGENT_IMAGE, build_agent_image


@pytest.fixture(scope="session")
def agent_image(engine_session: Engine) -> str:
    took = build_agent_image(engine_session)
    size = int(engine_session.docker("image", "inspect", "--format", "{{.Size}}", AGENT_IMAGE))
    print(
        f"\n{AGENT_IMAGE}: base {took['base']:.0f} s (0 = cached), build {took['build']:.0f} s, "
        f"{size / 1e6:.0f} MB"
    )
    return AGENT_IMAGE
