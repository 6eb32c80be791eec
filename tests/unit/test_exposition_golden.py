"""The per-container families, byte for byte, against a file kept in the repo (cAdvisor keeps
metrics/testdata/prometheus_metrics the same way): any change to a name, a label, HELP/TYPE or
the order shows up in review as a diff of tests/data/exposition/netns.prom.

Update after a deliberate change: python3 -m tests.unit.test_exposition_golden --update
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from agent.inventory import Snapshot
from agent.netstats import NetCollector
from exporters.prometheus.render import Renderer
from tests.support.toolbox import ScriptedFS, captured_procfs, container

TESTS = Path(__file__).resolve().parents[1]
GOLDEN = TESTS / "data" / "exposition" / "netns.prom"
HOST_INO = 4026531833


def exposition(root: Path) -> str:
    """A bridge container with compose and swarm labels and a joiner, a host-network container,
    and the host namespace: each namespace once, from the captured /proc files."""
    web = container(
        1,
        'web"1',  # a name that needs escaping
        **{"com.docker.compose.project": "shop", "com.docker.compose.service": "web"},
    )
    joiner = container(2, "web-sidecar", f"container:{web.id}")
    hostc = container(3, "hostc", "host")
    task = container(
        4,
        "api.1.x",
        **{"com.docker.swarm.service.name": "api", "com.docker.stack.namespace": "shop"},
    )
    everyone = [web, joiner, hostc, task]
    captured_procfs(root, {1: "host", web.pid: "container", task.pid: "container"})
    links = {1: HOST_INO, web.pid: 7, joiner.pid: 7, hostc.pid: HOST_INO, task.pid: 8}
    res = NetCollector(ScriptedFS(procfs=root, links=links)).collect(
        Snapshot(containers={c.id: c for c in everyone})
    )
    assert res.errors == 0
    events = {web.id: {"start": 2, "die": 1, "oom": 1}}
    return Renderer().render("node-1", "nodeid", res, events, {web.id: web}, everyone).text()


def test_exposition_matches_the_golden_file(tmp_path: Path) -> None:
    update = "python3 -m tests.unit.test_exposition_golden --update"
    assert exposition(tmp_path) == GOLDEN.read_text(), f"the exposition changed; if meant: {update}"


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(exposition(Path(tmp)))
    print(f"wrote {GOLDEN}")
