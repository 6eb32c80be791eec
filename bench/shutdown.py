"""SIGTERM → exit of the real agent, with a log sink that is down, against Docker's stop timeout.

Usage (as root, on a machine with docker.io and busybox-static; starts the tests' private
engine if none answers):

    python3 bench/shutdown.py [R]

R times each (default 5): the agent (a subprocess) ships a logging container's lines to a fluentd
address where nothing listens; once it has retried, SIGTERM, and the wall time until it exited,
with its exit code. Rows: the floor (no sink at all), the default drain, `--logs.drain-timeout=2s`.
Docker's own budget is the peer: `docker stop` sends SIGKILL 10 s after SIGTERM.
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.support.agentproc import Agent, free_port, one  # noqa: E402
from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine  # noqa: E402
from tests.support.toolbox import wait_for  # noqa: E402


def once(eng: Engine, sink: bool, *args: str) -> tuple[float, int]:
    tmp = Path(tempfile.mkdtemp(prefix="dwbench-shutdown-"))
    prefix = f"dwbench-sd-{uuid.uuid4().hex[:6]}-"
    extra = [f"--path.state={tmp / 'state'}", *args]
    if sink:
        spec = {
            "name": "central",
            "driver": "fluentd",
            "options": {"fluentd-address": f"tcp://127.0.0.1:{free_port()}", "fluentd-async": "true"},
            "include": {"name": f"^{prefix}"},
        }
        (tmp / "c.yml").write_text(json.dumps({"logs": {"sinks": [spec]}}))
        extra.append(f"--config={tmp / 'c.yml'}")
    agent = Agent(eng, *extra).start()
    try:
        if sink:
            eng.run(BUSYBOX_IMAGE, "sh", "-c", "while true; do echo x; sleep 0.05; done", name=f"{prefix}log")
            wait_for(
                lambda: one(agent.scrape(), "dockwatch_log_sink_retries_total", sink="central") >= 1,
                timeout=60,
                what="retries",
            )
        assert agent.proc is not None
        t0 = time.monotonic()
        agent.proc.send_signal(signal.SIGTERM)
        rc = agent.proc.wait(timeout=60)
        return time.monotonic() - t0, rc
    finally:
        agent.stop()
        eng.cleanup()


def main() -> None:
    r = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with test_engine() as eng:
        print(f"SIGTERM → exit, {r} runs each; Docker SIGKILLs at 10 s")
        print("| case | p50 | max | exit codes |")
        print("|---|---:|---:|---|")
        for case, sink, args in (
            ("floor: no sink", False, ()),
            ("dead fluentd sink, default drain (5s)", True, ()),
            ("dead fluentd sink, --logs.drain-timeout=2s", True, ("--logs.drain-timeout=2s",)),
        ):
            runs = [once(eng, sink, *args) for _ in range(r)]
            secs = [s for s, _ in runs]
            codes = sorted({c for _, c in runs})
            print(f"| {case} | {statistics.median(secs):.2f} s | {max(secs):.2f} s | {codes} |")


if __name__ == "__main__":
    main()
