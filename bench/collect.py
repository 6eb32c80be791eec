"""Collection cost on a real engine: N idle containers, the agent against Docker's stats API.

Usage (as root, on a machine with docker.io and busybox-static; starts the tests' private
engine if none answers):

    python3 bench/collect.py 10 100 300 [500]

For each N it starts N idle busybox containers, runs the real agent as a subprocess, and
prints per N:
  - collect CPU/ns: CPU time of one collection (process CPU: the collector's thread pool
    included; in-process NetCollector.collect), divided by the namespaces read;
  - the floor, same run: a bare open/read/close loop over the files the collector reads for
    the same namespaces (net/dev, snmp, netstat, sockstat, if_inet6, and sockstat6 + snmp6 where
    the namespace has IPv6 beyond lo), and collect ÷ floor; and the same files kept open and
    read with pread from offset 0 (the agent's default, --collector.keep-files-open), and
    collect ÷ that;
  - agent CPU/scrape: the agent process's utime+stime per /metrics request (collection,
    rendering and HTTP), from /proc/<pid>/stat over 40 scrapes; per namespace and ÷ the floor
    (the whole-scrape ratio);
  - /metrics p50/p90/p99 wall time and body size; agent RSS;
  - /metrics p50/p99 again with container churn beside it (three loops of
    `docker run --rm busybox true`), and the containers started per second meanwhile;
  - the peer, in the same run: Docker's stats API per container, stream=false (two 1 s
    collection cycles) and one-shot=true (API >= 1.41), and dockerd's CPU per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from churn import churning  # noqa: E402 - bench/ is the script dir

from agent.docker.client import DockerClient  # noqa: E402
from agent.docker.models import NotFound  # noqa: E402
from agent.hostfs import HostFS  # noqa: E402
from agent.netstats import NetCollector  # noqa: E402
from exporters.prometheus.names import MIB_FIELDS, SOCKSTAT_FIELDS  # noqa: E402
from tests.support.agentproc import Agent, parse  # noqa: E402
from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine  # noqa: E402

PREFIX = os.environ.get("DWBENCH_PREFIX") or f"dwbench-{os.getpid()}"
LABEL = f"dockwatch.bench={PREFIX}"
SCRAPES = 40
BASE_FILES = ("dev", "snmp", "netstat", "sockstat", "if_inet6")
V6_FILES = ("sockstat6", "snmp6")
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def dockerd_pid(eng: Engine) -> int:
    return int((eng.root / "dockerd.pid").read_text())


def scale_to(eng: Engine, n: int) -> None:
    have = eng.docker("ps", "-q", "--filter", f"label={LABEL}").split()
    for i in range(len(have), n):
        eng.docker("run", "-d", "--label", LABEL, "--name", f"{PREFIX}-{i}", BUSYBOX_IMAGE, "sleep", "86400")


def cleanup(eng: Engine) -> None:
    eng.remove(f"label={LABEL}")


def bare_reads(paths: list[str], rounds: int) -> float:
    """CPU s per round of open/read/close over `paths`: the kernel generating the files. CPU of
    this thread only (the collector reads in the caller's thread too): another thread of the
    bench, such as scrape_cpu.py's traffic, is not counted."""
    t0 = time.thread_time()
    for _ in range(rounds):
        for path in paths:
            try:  # other containers (not the bench's) may come and go meanwhile
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            os.read(fd, 65536)
            os.close(fd)
    return (time.thread_time() - t0) / rounds


def kept_reads(fds: list[int], rounds: int) -> float:
    """CPU s per round of pread from offset 0 of descriptors kept open: the kernel generating the
    files without the open and close (the floor of --collector.keep-files-open, agent/nsfiles.py)."""
    t0 = time.thread_time()
    for _ in range(rounds):
        for fd in fds:
            os.pread(fd, 65536, 0)
    return (time.thread_time() - t0) / rounds


async def inprocess_collect(
    eng: Engine, rounds: int = 20
) -> tuple[float, float, float, int, list[int], list[int]]:
    """CPU s per namespace for NetCollector.collect_namespaces (files kept open, the agent's
    default), for the bare open/read/close of the files it reads (the floor), and for pread of
    the same files kept open (the floor with them kept); namespaces; the pids of the namespaces
    without and with IPv6."""
    client = DockerClient(eng.host)
    try:
        await client.negotiate()
        cs = []
        for cid in await client.running_container_ids():
            with contextlib.suppress(NotFound):  # other sessions' containers come and go
                cs.append(await client.inspect(cid))
        nets = {n.id: n for n in await client.networks()}
    finally:
        await client.close()
    # As the agent reads: only the exported fields.
    col = NetCollector(HostFS(), mib_fields=MIB_FIELDS, sockstat_fields=SOCKSTAT_FIELDS)
    res = col.collect_namespaces(cs, nets)  # warm the route cache, as a running agent has
    # The floor: only open/read/close of the files the collector read, per namespace.
    v4 = [s.owner.pid if s.owner else 1 for s in res.samples if "TCP6" not in s.sockstat]
    v6 = [s.owner.pid if s.owner else 1 for s in res.samples if "TCP6" in s.sockstat]
    paths = [f"/proc/{pid}/net/{f}" for pid in v4 for f in BASE_FILES]
    paths += [f"/proc/{pid}/net/{f}" for pid in v6 for f in (*BASE_FILES, *V6_FILES)]
    fds = []
    for path in paths:
        with contextlib.suppress(OSError):  # other sessions' containers come and go
            fds.append(os.open(path, os.O_RDONLY))
    cpu = reads = kept = 0.0
    try:
        for _ in range(rounds):  # interleaved: all three see the same load
            t0 = time.thread_time()
            res = col.collect_namespaces(cs, nets)
            cpu += time.thread_time() - t0
            reads += bare_reads(paths, 1)
            kept += kept_reads(fds, 1)
    finally:
        for fd in fds:
            os.close(fd)
        col.close()
    n = max(len(res.samples), 1)
    return cpu / rounds / n, reads / rounds / n, kept / rounds / n, len(res.samples), v4, v6


def file_costs(v4: list[int], v6: list[int], rounds: int = 50) -> list[tuple[str, float, float]]:
    """Per file: the kernel's read time per namespace (µs; IPv4-only namespaces; IPv6 ones)."""
    out = []
    for f in (*BASE_FILES, *V6_FILES, "route"):
        a = bare_reads([f"/proc/{pid}/net/{f}" for pid in v4], rounds) / max(len(v4), 1)
        b = bare_reads([f"/proc/{pid}/net/{f}" for pid in v6], rounds) / max(len(v6), 1)
        out.append((f, a * 1e6, b * 1e6))
    return out


async def stats_api(eng: Engine, sample: int) -> tuple[float, float, float]:
    """Mean seconds per container for stats stream=false and one-shot=true; dockerd CPU per call."""
    client = DockerClient(eng.host, timeout=30)
    try:
        await client.negotiate()
        # Only the bench's own containers: other containers may come and go meanwhile.
        listed = await client.get_json("/containers/json", {"filters": json.dumps({"label": [LABEL]})})
        ids = [c["Id"] for c in listed][:sample]
        dpid = dockerd_pid(eng)
        out = []
        for params in ({"stream": "false"}, {"stream": "false", "one-shot": "true"}):
            c0, t0 = proc_cpu(dpid), time.perf_counter()
            for cid in ids:
                await client.get_json(f"/containers/{cid}/stats", params)
            out.append((time.perf_counter() - t0) / len(ids))
            cpu = (proc_cpu(dpid) - c0) / len(ids)
        return out[0], out[1], cpu
    finally:
        await client.close()


def scrapes_with_churn(eng: Engine, url: str, scrapes: int, loops: int = 3) -> tuple[list[float], float]:
    """/metrics wall times while `loops` workers start and remove short-lived containers back to
    back (`docker run --rm busybox true`); and the containers started per second meanwhile."""
    with churning(eng, loops, LABEL) as started:
        deadline = time.monotonic() + 120
        while sum(started) < loops:  # the churn is under way before the first timed scrape
            assert time.monotonic() < deadline, "no short-lived container started"
            time.sleep(0.05)
        walls, t0, n0 = [], time.monotonic(), sum(started)
        for _ in range(scrapes):
            w0 = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as resp:
                resp.read()
            walls.append(time.perf_counter() - w0)
        rate = (sum(started) - n0) / (time.monotonic() - t0)
    return walls, rate


def measure(eng: Engine, n: int) -> dict[str, Any]:
    scale_to(eng, n)
    ours = set(eng.docker("ps", "--format", "{{.Names}}", "--filter", f"label={LABEL}").split())

    def sees_ours(agent: Agent) -> bool:
        """Every container of this run is in /metrics (others' containers may come and go)."""
        info = agent.scrape().get("dockwatch_container_info", [])
        return ours <= {lbl["name"] for lbl, _ in info}

    per_ns_cpu, per_ns_reads, per_ns_kept, namespaces, v4, v6 = asyncio.run(inprocess_collect(eng))
    agent = Agent(eng).start()
    try:
        assert agent.proc is not None
        deadline = time.monotonic() + 120
        while not sees_ours(agent):
            assert time.monotonic() < deadline, "agent never saw every container"
        walls, size = [], 0
        c0 = proc_cpu(agent.proc.pid)
        for _ in range(SCRAPES):
            t0 = time.perf_counter()
            with urllib.request.urlopen(agent.url + "/metrics", timeout=30) as resp:
                body = resp.read()
            walls.append(time.perf_counter() - t0)
            size = len(body)
        cpu_per_scrape = (proc_cpu(agent.proc.pid) - c0) / SCRAPES
        churn_walls, churn_rate = scrapes_with_churn(eng, agent.url + "/metrics", SCRAPES)
        # The floor again, right after: the whole-scrape ratio compares the same moment's load.
        paths = [f"/proc/{pid}/net/{f}" for pid in v4 for f in BASE_FILES]
        paths += [f"/proc/{pid}/net/{f}" for pid in v6 for f in (*BASE_FILES, *V6_FILES)]
        scrape_floor = bare_reads(paths, 10) / max(namespaces, 1)
        series = sum(len(v) for v in parse(body.decode()).values())
        rss = rss_mib(agent.proc.pid)
    finally:
        agent.stop()
    # The same agent in interval mode: /metrics answers from the last collection.
    agent = Agent(eng, "--collector.interval=5s").start()
    try:
        assert agent.proc is not None
        while not sees_ours(agent):
            assert time.monotonic() < deadline + 120, "agent never saw every container"
        iwalls = []
        for _ in range(20):
            t0 = time.perf_counter()
            with urllib.request.urlopen(agent.url + "/metrics", timeout=30) as resp:
                resp.read()
            iwalls.append(time.perf_counter() - t0)
        c0, t0 = proc_cpu(agent.proc.pid), time.monotonic()
        time.sleep(10)  # idle: what collecting every 5 s costs with nobody scraping
        idle_cpu = (proc_cpu(agent.proc.pid) - c0) / (time.monotonic() - t0)
    finally:
        agent.stop()
    stream_false, one_shot, dockerd_cpu = asyncio.run(stats_api(eng, min(n, 20)))
    q = statistics.quantiles(walls, n=100, method="inclusive")
    qc = statistics.quantiles(churn_walls, n=100, method="inclusive")
    return {
        "churn_p50_ms": statistics.median(churn_walls) * 1e3,
        "churn_p99_ms": qc[98] * 1e3,
        "churn_rate": churn_rate,
        "v4": v4,
        "v6": v6,
        "v6_namespaces": len(v6),
        "scrape_floor_us_per_ns": scrape_floor * 1e6,
        "scrape_cpu_us_per_ns": cpu_per_scrape / max(namespaces, 1) * 1e6,
        "p99_ms": q[98] * 1e3,
        "n": n,
        "namespaces": namespaces,
        "collect_us_per_ns": per_ns_cpu * 1e6,
        "reads_us_per_ns": per_ns_reads * 1e6,
        "kept_us_per_ns": per_ns_kept * 1e6,
        "agent_cpu_ms_per_scrape": cpu_per_scrape * 1e3,
        "p50_ms": statistics.median(walls) * 1e3,
        "p90_ms": q[89] * 1e3,
        "size_kib": size / 1024,
        "series": series,
        "rss_mib": rss,
        "interval_p50_ms": statistics.median(iwalls) * 1e3,
        "interval_idle_cpu_pct": idle_cpu * 100,
        "stats_ms": stream_false * 1e3,
        "oneshot_ms": one_shot * 1e3,
        "dockerd_cpu_ms": dockerd_cpu * 1e3,
    }


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10, 100, 300]
    rows = []
    with test_engine() as eng:
        try:
            for n in sizes:
                rows.append(measure(eng, n))
                print(f"measured N={n}", file=sys.stderr, flush=True)
            per_file = file_costs(rows[-1]["v4"], rows[-1]["v6"]) if rows else []
        finally:
            if not os.environ.get("DWBENCH_KEEP"):  # kept for a second run with the same prefix
                cleanup(eng)
    print(
        "| N | netns (with IPv6) | collect CPU/ns | floor: bare reads/ns | collect ÷ floor "
        "| files kept open: preads/ns | collect ÷ that "
        "| agent CPU/scrape | per ns | ÷ floor | /metrics p50 | p90 | p99 "
        "| with churn: p50 | p99 | starts/s | size | series | agent RSS "
        "| interval mode p50 | interval 5s idle CPU "
        "| stats API stream=false /ctr | one-shot /ctr | dockerd CPU /call | /metrics vs stats for all N |"
    )
    print("|---:" * 25 + "|")
    for r in rows:
        # The peer's cost to get every container's network numbers once: one-shot calls x N.
        ratio = (r["oneshot_ms"] * r["n"]) / r["p50_ms"]
        print(
            f"| {r['n']} | {r['namespaces']} ({r['v6_namespaces']}) | {r['collect_us_per_ns']:.0f} µs "
            f"| {r['reads_us_per_ns']:.0f} µs | {r['collect_us_per_ns'] / r['reads_us_per_ns']:.2f}x "
            f"| {r['kept_us_per_ns']:.0f} µs | {r['collect_us_per_ns'] / r['kept_us_per_ns']:.2f}x "
            f"| {r['agent_cpu_ms_per_scrape']:.1f} ms | {r['scrape_cpu_us_per_ns']:.0f} µs "
            f"| {r['scrape_cpu_us_per_ns'] / r['scrape_floor_us_per_ns']:.2f}x "
            f"| {r['p50_ms']:.1f} ms | {r['p90_ms']:.1f} ms | {r['p99_ms']:.1f} ms "
            f"| {r['churn_p50_ms']:.1f} ms | {r['churn_p99_ms']:.1f} ms | {r['churn_rate']:.1f} "
            f"| {r['size_kib']:.0f} KiB | {r['series']} "
            f"| {r['rss_mib']:.0f} MiB | {r['interval_p50_ms']:.1f} ms | {r['interval_idle_cpu_pct']:.1f} % "
            f"| {r['stats_ms']:.0f} ms | {r['oneshot_ms']:.1f} ms "
            f"| {r['dockerd_cpu_ms']:.1f} ms | {ratio:.0f}x faster |"
        )
    if per_file:
        print()
        print(f"Kernel read time per namespace at N={rows[-1]['n']} (open/read/close, CPU):")
        print()
        print("| file | IPv4-only namespace | namespace with IPv6 |")
        print("|---|---:|---:|")
        for f, a, b in per_file:
            print(f"| net/{f} | {a:.1f} µs | {b:.1f} µs |")


if __name__ == "__main__":
    main()
