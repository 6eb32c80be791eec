"""End-to-end fixtures: the agent's image (built from the Dockerfile on a locally made base), a swarm."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import AGENT_IMAGE, build_agent_image
from tests.e2e.swarmnodes import Swarm, missing_tools, swarm_on
from tests.support.engine import Engine


@pytest.fixture(scope="session")
def agent_image(engine_session: Engine) -> str:
    took = build_agent_image(engine_session)
    size = int(engine_session.docker("image", "inspect", "--format", "{{.Size}}", AGENT_IMAGE))
    print(
        f"\n{AGENT_IMAGE}: base {took['base']:.0f} s (0 = cached), build {took['build']:.0f} s, "
        f"{size / 1e6:.0f} MB"
    )
    return AGENT_IMAGE


@pytest.fixture
def swarm(engine: Engine) -> Iterator[Swarm]:
    """A swarm on the test engine for one test, the only way tests here change its swarm state.

    The engine is the manager, advertised on an underlay bridge so that `Swarm.add_nodes` can
    join extra nodes (tests/e2e/swarmnodes.py). Afterwards the engine is as it was: nodes torn
    down, swarm left, the docker_gwbridge swarm made removed. Per test, not per session: the
    engine stays in a swarm no longer than one test, whatever else shares the session or it.
    """
    if missing_tools() or os.geteuid() != 0:
        pytest.skip(f"needs root and {', '.join(missing_tools()) or 'the namespace tools'}")
    # Not under pytest's basetemp, which keeps old runs: nodes' data roots hold image layers.
    workdir = Path(tempfile.mkdtemp(prefix="dwtsw-"))
    try:
        with swarm_on(engine, workdir) as sw:
            yield sw
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
