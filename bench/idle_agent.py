"""The real agent's CPU at rest: N idle containers, three log sinks following them, no scrapes.

    python3 bench/idle_agent.py [--containers 500] [--window 60] [--variant LABEL=ROOT[,K=V...]]...

Runs on the tests' engine (started if none answers). N busybox containers that print nothing; per
variant (an agent checkout, e.g. `git archive <commit> | tar -x -C DIR`, as bench/memory.py takes
them; default: this checkout) the real agent with the json-file, syslog (tcp) and fluentd sinks of
bench/memory.py following only these containers, once ready and 20 s settled: its utime+stime over
`--window` seconds, as % of one core. Nothing scrapes it: this is what the agent costs between
scrapes (the log readers, the directory watcher, the docker events stream). The floor is 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import memory  # noqa: E402
from collect import proc_cpu  # noqa: E402
from fluentd_sink import Receiver  # noqa: E402
from idle_tails import cpu_table  # noqa: E402
from log_pipeline import SyslogReceiver  # noqa: E402

from tests.support.engine import test_engine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=500)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--variant", action="append", default=[])
    a = ap.parse_args()
    variants = [memory.parse_variant(v) for v in a.variant or ["this checkout="]]
    prefix = f"dwidle{uuid.uuid4().hex[:6]}"
    rows = []
    with test_engine() as eng, tempfile.TemporaryDirectory(prefix="dwidle-") as td:
        tmp = Path(td)
        memory.start_containers(eng, prefix, a.containers, 0, 0, tmp, 0)
        try:
            with Receiver() as fd, SyslogReceiver("tcp") as sl:
                cfg = memory.sinks_config(tmp, fd.port.value, sl.port.value, prefix)
                for v in variants:
                    agent = memory.AgentRun(eng, tmp, cfg, v)
                    try:
                        deadline = time.monotonic() + 300
                        while agent.get("/readyz")[0] != 200:
                            assert time.monotonic() < deadline, f"{v.label}: agent not ready ({agent.log})"
                            time.sleep(0.5)
                        agent.get("/metrics")
                        time.sleep(20)  # settling: every tail opened its file and wrote its checkpoint
                        c0, w0 = proc_cpu(agent.proc.pid), time.monotonic()
                        time.sleep(a.window)  # the measurement window
                        pct = 100 * (proc_cpu(agent.proc.pid) - c0) / (time.monotonic() - w0)
                        rows.append((v.label, pct))
                    finally:
                        agent.stop()
        finally:
            memory.cleanup(eng, prefix)
    cpu_table(
        f"{a.containers} idle containers, 3 sinks following them, no scrapes, CPU over {a.window:g} s",
        "agent",
        [("floor: nothing to do", 0.0), *rows],
    )


if __name__ == "__main__":
    main()
