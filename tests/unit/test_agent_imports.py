"""What `dockwatch run` loads: packages the agent process does not need stay out of its memory
(issue 14: each was MiBs of RSS; bench/RESULTS.md, "Memory ... session 9")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# aiohttp: our httpd.py and docker/http.py serve instead (~12 MiB). prometheus_client (with its
# urllib.request, http.server, email): families.py renders instead (~3.3 MiB); only `dockwatch top
# --url` parses with it. textual/rich: only the live `dockwatch top` view.
KEPT_OUT = ("aiohttp", "prometheus_client", "urllib.request", "http.server", "email", "textual", "rich")


def test_the_agent_process_does_not_import_what_it_does_not_use() -> None:
    code = "import sys, json, agent.cli, agent.app\nprint(json.dumps(list(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    loaded = set(json.loads(out))
    assert not [m for m in KEPT_OUT if m in loaded]
    assert "asyncio" in loaded and "agent.app" in loaded  # the probe did import the agent
