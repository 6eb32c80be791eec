"""Cost of the connection tier (issue 11): one sweep of every namespace's socket tables.

Usage (as root, on a machine with docker.io and busybox-static; starts the tests' private
engine if none answers):

    python3 bench/connections.py 10 100 500 [--repeat 5] [--window 60]

For each N it runs N containers on one user-defined network (as compose makes them, so each
has Docker's embedded DNS listener): N/2 servers (`nc -ll -e cat`, persistent connections)
and N/2 clients each holding 4 connections to its server. Then, per N:
  - sweep CPU: CPU time of ConnectionCollector.sweep in this process (thread CPU, median and
    range of --repeat sweeps), per sweep and per namespace;
  - floor: the bare open/read/close of the files the sweep read (the kernel generating them),
    and what reading all four tables of every namespace costs (cAdvisor's tcp/udp collectors
    read them all, always);
  - peer: `nsenter -n ss -tuna` per namespace (iproute2 over sock_diag, the privileged way an
    operator lists a container's sockets), on a sample of 20 namespaces, CPU of the children;
  - agent: the real agent as a subprocess with --collector.connections on a 5 s interval for
    --window seconds once its first sweep is done, against the same agent with the tier off for
    the same window (nobody scrapes either): utime+stime from /proc/<pid>/stat; the difference
    divided by the sweeps the agent logged in the window (under load a sweep can outlast the
    interval), and the share of one core the larger of the two per-sweep figures makes at each
    candidate interval. The agent sweeps every container on the engine, other sessions' too.
The machine is shared and loaded (other sessions' tests and benchmarks on the same engine):
CPU time is what is compared, never wall time, and every figure is a median of repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from agent.connections import ConnectionCollector  # noqa: E402
from agent.docker.client import DockerClient  # noqa: E402
from agent.docker.models import Container, Network  # noqa: E402
from agent.hostfs import HostFS  # noqa: E402
from tests.support.agentproc import Agent  # noqa: E402
from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine  # noqa: E402
from tests.support.toolbox import wait_for  # noqa: E402

LABEL = "dockwatch.bench-netmap=1"
NET = "dwnmb-net"
CONNS = 4  # per client
TICK = os.sysconf("SC_CLK_TCK")
INTERVALS = (30, 60, 120)


def proc_cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def scale_to(eng: Engine, n: int) -> None:
    """n containers: n/2 servers, n/2 clients holding CONNS connections each to their server."""
    if not eng.docker("network", "ls", "-q", "--filter", f"name=^{NET}$"):
        eng.docker("network", "create", "--label", LABEL, NET)
    have = set(eng.docker("ps", "-a", "--format", "{{.Names}}", "--filter", f"label={LABEL}").split())
    pairs = [i for i in range(n // 2) if f"dwnmb-c{i}" not in have]

    def pair(i: int) -> None:
        srv = f"dwnmb-s{i}"
        if srv not in have:
            eng.docker(
                "run",
                "-d",
                "--label",
                LABEL,
                "--network",
                NET,
                "--name",
                srv,
                BUSYBOX_IMAGE,
                "nc",
                "-ll",
                "-p",
                "80",
                "-e",
                "cat",
            )
        ip = eng.docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{NET}").IPAddress}}}}', srv)
        hold = f"for i in $(seq {CONNS}); do (sleep 86400 | nc {ip} 80 >/dev/null) & done; sleep 86400"
        eng.docker(
            "run",
            "-d",
            "--label",
            LABEL,
            "--network",
            NET,
            "--name",
            f"dwnmb-c{i}",
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            hold,
        )

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(pair, pairs))


def cleanup(eng: Engine) -> None:
    eng.remove(f"label={LABEL}")
    eng.docker("network", "rm", NET, check=False)


async def inventory(eng: Engine) -> tuple[str, list[Container], list[Network]]:
    async with DockerClient(eng.host) as client:
        await client.negotiate()
        node = (await client.info()).name
        cs = []
        for cid in await client.running_container_ids():
            try:
                cs.append(await client.inspect(cid))
            except Exception:  # exited since the listing
                continue
        return node, cs, await client.networks()


def read_all(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, 65536):
            pass
    finally:
        os.close(fd)


def all_four(pids: list[int]) -> float:
    """Thread CPU of reading all four tables of every namespace, as cAdvisor's collectors do."""
    t0 = time.thread_time()
    for pid in pids:
        for f in ("tcp", "tcp6", "udp", "udp6"):
            try:
                read_all(f"/proc/{pid}/net/{f}")
            except OSError:
                continue
    return time.thread_time() - t0


def reads_only(pids: list[int]) -> float:
    """The files the sweep reads for these namespaces (sockstat decides), reads only."""
    from agent import procnet

    plan: list[str] = []
    for pid in pids:
        net = f"/proc/{pid}/net/"
        try:
            counts = procnet.parse_sockstat(Path(net + "sockstat").read_text())
            counts.update(procnet.parse_sockstat(Path(net + "sockstat6").read_text()))
        except OSError:
            continue
        plan += [net + "sockstat", net + "sockstat6"]
        tw = counts.get("TCP", {}).get("tw", 0)
        for proto, name in (("TCP", "tcp"), ("UDP", "udp"), ("TCP6", "tcp6"), ("UDP6", "udp6")):
            if counts.get(proto, {}).get("inuse", 0) or (tw and proto.startswith("TCP")):
                plan.append(net + name)
    t0 = time.thread_time()
    for p in plan:
        try:
            read_all(p)
        except OSError:
            continue
    return time.thread_time() - t0


def ss_peer(pids: list[int]) -> float:
    """CPU (children) per namespace of `nsenter -t PID -n ss -tuna`."""
    c0 = children_cpu()
    for pid in pids:
        subprocess.run(["nsenter", "-t", str(pid), "-n", "ss", "-tuna"], capture_output=True, check=False)
    return (children_cpu() - c0) / max(len(pids), 1)


SWEEP_LINE = re.compile(r"connection sweep: (\d+) namespaces, \d+ errors, ([\d.]+) s CPU")


def agent_cpu(eng: Engine, window: float, *args: str) -> tuple[float, list[float]]:
    """The agent's CPU seconds over `window` once steady, and the sweeps it logged meanwhile
    (each sweep's thread CPU, from its debug line)."""
    a = Agent(eng, *args).start(wait_ready=False)
    try:
        assert a.proc is not None
        # A loaded engine answers the first listing slowly: a longer deadline than the tests'.
        wait_for(lambda: a.get("/readyz")[0] == 200, timeout=300, what=f"agent ready ({a.log.name})")
        log = Path(a.log.name)
        if "--collector.connections" in args:  # steady state: after the first sweep
            wait_for(lambda: SWEEP_LINE.search(log.read_text()), timeout=300, what="first sweep")
        else:
            time.sleep(3)  # past the listing
        before = log.read_text()
        c0 = proc_cpu(a.proc.pid)
        time.sleep(window)  # a measurement window of the agent's CPU, not a wait for a state
        c1 = proc_cpu(a.proc.pid)
        after = log.read_text()[len(before) :]
        return c1 - c0, [float(m.group(2)) for m in SWEEP_LINE.finditer(after)]
    finally:
        a.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description="connection tier cost")
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--keep", action="store_true", help="leave the containers running")
    args = ap.parse_args()
    rows = []
    with test_engine() as eng:
        try:
            for n in args.sizes:
                scale_to(eng, n)
                node, cs, nets = asyncio.run(inventory(eng))
                tier = ConnectionCollector(HostFS(), host_netns=True)
                mine = [c for c in cs if c.name.startswith("dwnmb-")]
                # Wait for the clients' connections (bounded): the sweep's own count.
                deadline = time.monotonic() + 120
                while True:
                    res = tier.sweep(node, mine, nets)
                    held = sum(
                        v
                        for ns in res.namespaces
                        if ns.owner is not None and ns.owner.name.startswith("dwnmb-c")
                        for e, v in ns.edges.items()
                        if e.direction == "client"
                    )
                    if held >= CONNS * (n // 2) or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                # In process: the bench's own containers (+ the host), not other sessions' ones.
                cpus, walls, socks = [], [], 0
                for _ in range(args.repeat):
                    res = tier.sweep(node, mine, nets)
                    cpus.append(res.cpu)
                    walls.append(res.duration)
                socks = sum(sum(ns.states.values()) for ns in res.namespaces)
                nns = len(res.namespaces)
                pids = [c.pid for c in mine if c.pid > 0] + [1]
                reads = statistics.median(reads_only(pids) for _ in range(args.repeat))
                every = statistics.median(all_four(pids) for _ in range(args.repeat))
                peer = ss_peer([c.pid for c in mine][:20])
                on, sweeps = agent_cpu(
                    eng, args.window, "--collector.connections", "--collector.connections-interval=5s"
                )
                off, _ = agent_cpu(eng, args.window)
                # The agent's whole CPU with the tier on, less the same agent's without it, per
                # sweep it logged in the window (sweeps may take longer than the 5 s interval).
                per_sweep_agent = max(on - off, 0.0) / max(len(sweeps), 1)
                med = statistics.median(cpus)
                rows.append(
                    {
                        "N": n,
                        "containers": len(cs),
                        "ns": nns,
                        "sockets": socks,
                        "held": held,
                        "sweep": med,
                        "range": (min(cpus), max(cpus)),
                        "wall": statistics.median(walls),
                        "reads": reads,
                        "all4": every,
                        "ss": peer,
                        "agent": per_sweep_agent,
                        "agent_on": on,
                        "agent_off": off,
                        "agent_sweeps": len(sweeps),
                        "agent_sweep_thread": statistics.median(sweeps) if sweeps else 0.0,
                    }
                )
                print(rows[-1], flush=True)
        finally:
            if not args.keep:
                cleanup(eng)
    print()
    head = [
        "N",
        "containers on the engine",
        "namespaces swept",
        "sockets seen",
        "client conns held",
        "sweep CPU (median)",
        "range",
        "per namespace",
        "of which reads",
        "all 4 tables always (cAdvisor)",
        "`nsenter ss -tuna` /ns",
        "agent CPU per sweep (whole engine)",
        "agent sweeps in window",
        *(f"share of a core @ {i} s" for i in INTERVALS),
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for r in rows:
        worst = max(r["agent"], r["sweep"])
        cells = [
            str(r["N"]),
            str(r["containers"]),
            str(r["ns"]),
            str(r["sockets"]),
            str(r["held"]),
            f"{1e3 * r['sweep']:.0f} ms",
            f"{1e3 * r['range'][0]:.0f}-{1e3 * r['range'][1]:.0f} ms",
            f"{1e3 * r['sweep'] / r['ns']:.2f} ms",
            f"{1e3 * r['reads']:.0f} ms",
            f"{1e3 * r['all4']:.0f} ms",
            f"{1e3 * r['ss']:.1f} ms",
            f"{1e3 * r['agent']:.0f} ms",
            str(r["agent_sweeps"]),
            *(f"{100 * worst / i:.2f} %" for i in INTERVALS),
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
