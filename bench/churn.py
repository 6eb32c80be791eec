"""Interval mode under container churn: the agent's CPU while short-lived containers start and stop.

Usage (as root, on a machine with docker.io and busybox-static; starts the tests' private
engine if none answers):

    python3 bench/churn.py [--containers 300] [--loops 3] [--window 60] [--interval 15s] [--before REF]

N idle busybox containers stay up; the agent runs with `--collector.interval`. Per agent, two
windows of the same length, CPU of the agent process from /proc/<pid>/stat:
  - quiet: nothing changes (the floor: the timer's full collections alone);
  - churn: `--loops` workers each run `docker run --rm busybox true` back to back (each start and
    stop is a burst of events: create, attach, connect, start, die, disconnect, destroy).
`--before REF` also runs the agent as of that git commit (git archive), in the same run, under
the same load: the comparison with the code before a change. No scrapes are sent: interval mode
collects on its own, and a scrape would only add rendering cost to both windows alike.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from destroy import ROOT, AgentProc, extract, rss_mib  # bench/ is the script dir: destroy.py sets the path

from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine

LABEL = "dockwatch.bench.churn"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def scale_to(eng: Engine, n: int) -> None:
    have = eng.docker("ps", "-q", "--filter", f"label={LABEL}").split()
    for i in range(len(have), n):
        eng.docker("run", "-d", "--label", LABEL, "--name", f"dwchurn-{i}", BUSYBOX_IMAGE, "sleep", "86400")


def wait_ready(agent: AgentProc, n: int, deadline: float = 300) -> None:
    """Until the agent tracks at least n containers (its first full listing and collection)."""
    import urllib.request

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if agent.proc.poll() is not None:
            raise RuntimeError(f"agent exited: {Path(agent.log.name).read_text()[-500:]}")
        try:
            with urllib.request.urlopen(agent.url + "/metrics", timeout=30) as resp:
                for line in resp.read().decode().splitlines():
                    if line.startswith("dockwatch_containers_tracked ") and float(line.split()[1]) >= n:
                        return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("agent never tracked the containers")


@contextlib.contextmanager
def churning(eng: Engine, loops: int, label: str = LABEL) -> Iterator[list[int]]:
    """`loops` workers each run `docker run --rm busybox true` back to back until the block ends;
    yields the containers each has started so far (read it: it grows)."""
    stop = threading.Event()
    started = [0] * loops

    def worker(i: int) -> None:
        while not stop.is_set():
            subprocess.run(
                ["docker", "run", "--rm", "--label", label + ".short", BUSYBOX_IMAGE, "true"],
                env=eng.env,
                capture_output=True,
                timeout=120,
            )
            started[i] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(loops)]
    for t in threads:
        t.start()
    try:
        yield started
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=180)


def window(pid: int, seconds: float, churn: int, eng: Engine) -> tuple[float, int]:
    """(CPU % of one core, containers started) over `seconds`, with `churn` workers running."""
    c0, t0 = cpu_s(pid), time.monotonic()
    with churning(eng, churn) as started:
        time.sleep(seconds)  # a measurement window, not a wait for a condition
        c1, t1 = cpu_s(pid), time.monotonic()
    return 100 * (c1 - c0) / (t1 - t0), sum(started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--containers", type=int, default=300)
    ap.add_argument("--loops", type=int, default=3)
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--interval", default="15s")
    ap.add_argument("--before", help="also run the agent as of this git commit, in the same run")
    opts = ap.parse_args()
    print(
        f"{opts.containers} idle containers, --collector.interval={opts.interval}, "
        f"{opts.window:g} s windows, {opts.loops} churn loops"
    )
    print("| agent | quiet CPU | churn CPU | containers started (per s) | churn - quiet | agent RSS |")
    print("|---|---:|---:|---:|---:|---:|", flush=True)
    with test_engine() as eng, tempfile.TemporaryDirectory() as tmp:
        sources = [("this checkout", ROOT)]
        if opts.before:
            sources.append((f"before ({opts.before})", extract(opts.before, Path(tmp))))
        try:
            scale_to(eng, opts.containers)
            for label, src in sources:
                agent = AgentProc(eng, src, f"--collector.interval={opts.interval}", "--log.level=warning")
                try:
                    wait_ready(agent, opts.containers)
                    quiet, _ = window(agent.proc.pid, opts.window, 0, eng)
                    busy, n = window(agent.proc.pid, opts.window, opts.loops, eng)
                    rss = rss_mib(agent.proc.pid)
                finally:
                    agent.stop()
                print(
                    f"| {label} | {quiet:.1f} % | {busy:.1f} % | {n} ({n / opts.window:.1f}) "
                    f"| {busy - quiet:.1f} % | {rss:.0f} MiB |",
                    flush=True,
                )
        finally:
            for lbl in (LABEL, LABEL + ".short"):
                eng.remove(f"label={lbl}")


if __name__ == "__main__":
    main()
