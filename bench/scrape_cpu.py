"""Agent CPU per scrape: agent checkouts against each other on the same idle containers.

Usage (as root, on a machine with docker.io and busybox-static; starts the tests' private
engine if none answers):

    python3 bench/scrape_cpu.py [--containers 500] [--scrapes 60] [--rounds 4]
        [--variant LABEL=ROOT[,KEY=VALUE...]]... [--accept-openmetrics-gzip]

Each `--variant` is an agent checkout (e.g. `git archive` of another commit, with its C module
built) and extra environment; default: this checkout. N idle busybox containers are started
(kept for a next run with DWBENCH_PREFIX and DWBENCH_KEEP set, as bench/collect.py). Each round
starts each variant's agent in turn, waits until it tracks every container, warms it with 5
scrapes, then times `--scrapes` scrapes back to back: the agent process's CPU (utime + stime)
per scrape and the wall p50. The rounds interleave the variants, so each sees the same load.
With `--busy`, a thread of this process sends a datagram from every container's namespace every
20 ms (from a UDP socket made inside it, to a socket of this process on the host, through the
container's eth0 and its network's gateway), so every namespace's eth0 counters, snmp and netstat
change between two scrapes: no sample is kept, every one is parsed and rendered (the case of a
host whose containers all talk; the default is idle containers, the issue's bench). The
floors are then measured with the traffic going too (the kernel sums counters that other CPUs
are updating), as this thread's CPU only.
Prints per variant the median over rounds and the range, and from the same run:
  - the floor: a bare open/read/close loop over the files the agent reads for the same
    namespaces (bench/collect.py's), per scrape; and the same files kept open, read with pread
    from offset 0 (what --collector.keep-files-open does);
  - the peer: Docker's stats API, dockerd's CPU for one `one-shot` stats call per container
    times the containers (what one refresh of every container costs dockerd).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import collect  # noqa: E402 - bench/ is the script dir
from memory import Variant, parse_variant, spawn  # noqa: E402

from tests.support.agentproc import free_port, parse  # noqa: E402
from tests.support.engine import Engine, test_engine  # noqa: E402
from tests.support.toolbox import wait_for  # noqa: E402

WARM = 5
CLONE_NEWNET = 0x40000000


class Traffic(threading.Thread):
    """One datagram per namespace every `every` s, each from a UDP socket made inside the namespace
    (setns moves only this thread, and back: a socket stays in the namespace it was made in) to
    `sink`, a socket of this process in the host's namespace, at the container's gateway address.
    Its CPU is this process's, not the agent's."""

    def __init__(self, targets: list[tuple[int, str]], every: float = 0.02) -> None:
        """`targets`: (pid, gateway address) per container."""
        super().__init__(daemon=True, name="bench-traffic")
        self.targets, self.every = targets, every
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("0.0.0.0", 0))
        self.sink.setblocking(False)
        self.port = self.sink.getsockname()[1]
        self.stop_ev, self.ready = threading.Event(), threading.Event()
        self.socks: list[socket.socket] = []
        self.error: BaseException | None = None
        self.send_errors = 0
        self.received = 0

    def _enter(self, libc: ctypes.CDLL, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns {path}: {os.strerror(e)}")
        finally:
            os.close(fd)

    def run(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            home = f"/proc/self/task/{threading.get_native_id()}/ns/net"
            home_fd = os.open(home, os.O_RDONLY)
            try:
                for pid, gateway in self.targets:
                    self._enter(libc, f"/proc/{pid}/ns/net")
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.connect((gateway, self.port))
                    s.setblocking(False)
                    self.socks.append(s)
            finally:
                try:
                    if libc.setns(home_fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns back home")
                finally:
                    os.close(home_fd)
        except BaseException as exc:  # reported by the caller
            self.error = exc
            return
        finally:
            self.ready.set()
        while not self.stop_ev.wait(self.every):
            for s in self.socks:
                try:
                    s.send(b"x")
                except BlockingIOError:
                    pass
                except OSError:  # an ICMP error come back, a namespace gone: counted, not fatal
                    self.send_errors += 1
            with contextlib.suppress(BlockingIOError):
                while True:
                    self.sink.recv(16)
                    self.received += 1

    def stop(self) -> None:
        """Ends the traffic; raises if it did not go all along (the figures would not be busy)."""
        alive = self.is_alive()
        self.stop_ev.set()
        self.join(10)
        for s in self.socks:
            s.close()
        self.sink.close()
        if not alive or not self.received:
            raise SystemExit(f"--busy: the traffic stopped ({self.received} datagrams received)")
        print(f"traffic: {self.received} datagrams received, {self.send_errors} send errors", flush=True)


def start_traffic(eng: Engine) -> Traffic:
    ids = eng.docker("ps", "-q", "--filter", f"label={collect.LABEL}").split()
    # The first network's gateway (the top-level NetworkSettings.Gateway is empty on user-defined
    # networks); the bench's containers are on the default bridge.
    fmt = "{{.State.Pid}}{{range .NetworkSettings.Networks}} {{.Gateway}}{{end}}"
    out = eng.docker("inspect", "-f", fmt, *ids)
    t = Traffic([(int(pid), gws[0]) for pid, *gws in (line.split() for line in out.splitlines()) if gws])
    t.start()
    if not t.ready.wait(120):
        raise SystemExit("--busy: no traffic after 120 s of making sockets")
    if t.error is not None:
        raise SystemExit(f"--busy: cannot make traffic in the containers' namespaces: {t.error}")
    return t


def get(url: str, headers: dict[str, str]) -> bytes:
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        body: bytes = resp.read()
        return body


def one_agent(eng: Engine, v: Variant, n: int, scrapes: int, headers: dict[str, str]) -> tuple[float, float]:
    """(agent CPU s per scrape, wall p50 s) of one agent of checkout `v`."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dwscrape-") as tmp:
        log = Path(tmp) / "agent.log"
        proc = spawn(eng, v, port, Path(tmp) / "state", log)
        url = f"http://127.0.0.1:{port}/metrics"
        try:

            def tracking() -> bool:
                assert proc.poll() is None, log.read_text()
                try:
                    m = parse(get(url, {}).decode())
                except OSError:
                    return False
                return any(val >= n for _, val in m.get("dockwatch_containers_tracked", []))

            wait_for(tracking, timeout=300, interval=0.5, what=f"{v.label}'s agent to track {n} containers")
            for _ in range(WARM):
                get(url, headers)
            walls = []
            c0 = collect.proc_cpu(proc.pid)
            for _ in range(scrapes):
                w0 = time.perf_counter()
                get(url, headers)
                walls.append(time.perf_counter() - w0)
            cpu = (collect.proc_cpu(proc.pid) - c0) / scrapes
            return cpu, statistics.median(walls)
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--containers", type=int, default=500)
    ap.add_argument("--scrapes", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--variant", action="append", type=parse_variant)
    ap.add_argument(
        "--accept-openmetrics-gzip",
        action="store_true",
        help="ask as Prometheus does (OpenMetrics, gzip) instead of plain text 0.0.4",
    )
    ap.add_argument("--peer-sample", type=int, default=20, help="containers the stats API is timed on")
    ap.add_argument(
        "--busy", action="store_true", help="traffic from every container's eth0: no idle namespace"
    )
    a = ap.parse_args()
    variants: list[Variant] = a.variant or [Variant("this checkout", ROOT, {})]
    headers = (
        {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"}
        if a.accept_openmetrics_gzip
        else {}
    )
    with test_engine() as eng:
        try:
            t0 = time.monotonic()
            collect.scale_to(eng, a.containers)
            print(f"{a.containers} containers up in {time.monotonic() - t0:.0f} s", flush=True)
            traffic = start_traffic(eng) if a.busy else None
            cpu: dict[str, list[float]] = {v.label: [] for v in variants}
            p50: dict[str, list[float]] = {v.label: [] for v in variants}
            floors: list[float] = []
            kept_floors: list[float] = []
            for r in range(a.rounds):
                for v in variants:
                    c, w = one_agent(eng, v, a.containers, a.scrapes, headers)
                    cpu[v.label].append(c)
                    p50[v.label].append(w)
                    print(
                        f"round {r + 1}: {v.label}: {1000 * c:.1f} ms CPU/scrape, p50 {1000 * w:.1f} ms",
                        flush=True,
                    )
                _, reads, kept, nns, _, _ = asyncio.run(collect.inprocess_collect(eng, rounds=5))
                floors.append(reads * nns)
                kept_floors.append(kept * nns)
            if traffic is not None:
                traffic.stop()
            _, _, dockerd_per_call = asyncio.run(collect.stats_api(eng, a.peer_sample))
        finally:
            if not os.environ.get("DWBENCH_KEEP"):
                collect.cleanup(eng)
    floor = statistics.median(floors)
    fmt = "OpenMetrics + gzip" if a.accept_openmetrics_gzip else "text 0.0.4"
    kind = "busy (traffic from each)" if a.busy else "idle"
    print(f"\n{a.containers} {kind} containers, {a.scrapes} scrapes x {a.rounds} rounds, {fmt}\n")
    print("| | agent CPU per scrape (median, range) | ÷ floor | /metrics p50 (median) |")
    print("|---|---:|---:|---:|")
    for v in variants:
        m = statistics.median(cpu[v.label])
        rng = f"{1000 * min(cpu[v.label]):.1f} to {1000 * max(cpu[v.label]):.1f}"
        wall = 1000 * statistics.median(p50[v.label])
        print(f"| {v.label} | {1000 * m:.1f} ms ({rng}) | {m / floor:.2f}x | {wall:.1f} ms |")
    print(f"| floor: bare reads of the same files | {1000 * floor:.1f} ms | 1.00x | |")
    kept = statistics.median(kept_floors)
    print(f"| the same files kept open: pread from 0 | {1000 * kept:.1f} ms | {kept / floor:.2f}x | |")
    peer = dockerd_per_call * a.containers
    name = "peer: dockerd CPU, one one-shot stats call per container"
    print(f"| {name} | {1000 * peer:.0f} ms | {peer / floor:.1f}x | |")


if __name__ == "__main__":
    main()
