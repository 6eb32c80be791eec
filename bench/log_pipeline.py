"""Benchmark: the log pipeline from Docker's json-file logs to each sink, against dockerd's own drivers.

    python bench/log_pipeline.py [--lines 200000] [--repeat 3]
        [--sinks json-file,fluentd,syslog-tcp,syslog-udp] [--wide]

A busybox container writes N lines (`seq N`, or 100-byte lines with --wide) and stays up; then the
`source` row runs the json-file source alone in this process (FileTail over that container's file,
reading, parsing, rejoining, batching, committing checkpoints, into a sink that only counts; CPU is
this process's), and for every sink the real agent (`python -m agent run`, a subprocess) is started
with one sink that follows only that
container. It is timed until its checkpoint reaches the end of Docker's file (polled every 10 ms
from here: scraping /metrics would charge the agent for every other container's network metrics)
and, for the network sinks, until the receiver holds every line (or, over UDP, has had nothing for
2 s), so this is a backlog read as fast as the agent can. CPU is the agent's utime+stime from /proc
minus an idle start of the agent (imports, until /readyz) measured in the same run.

The peers, in the same run and into the same receivers:
- `docker logs <id> > /dev/null` on the same container, i.e. dockerd reading the same files and
  serving them over the API (the peer of the json-file sink);
- dockerd's fluentd driver (bench/fluentd_sink.py's `dockerd`: a container running `seq N` with
  `--log-driver fluentd`, timed from the first line at the receiver to the last; `seq` even with
  --wide);
- dockerd's syslog driver, `--log-driver syslog --log-opt syslog-format=rfc5424`, over tcp and over
  udp, timed the same way.
dockerd's CPU is its own utime+stime (pid from <engine root>/dockerd.pid) over the same span.

Receivers run in their own processes: the counting Forward receiver of bench/fluentd_sink.py, and
here a counting syslog receiver per transport (TCP: complete LF-terminated lines; UDP: datagrams,
with a 32 MiB receive buffer) whose own CPU is printed so one can see it was not the bottleneck.
Rotation (`--rotation-rates 20000,50000,100000,max`, default on; `--rotation-rates ""` skips it):
one agent with the fluentd sink (ack) into the counting receiver follows containers with
`--log-opt max-size=1m --log-opt max-file=3`; each writes `--rotation-lines` numbered lines at a
target rate (`seq` in chunks of 1000 with a sleep between them; `max`: one `seq`, as fast as dockerd
takes them), while `docker logs -f` follows the same container. Printed: the rate reached (lines
over the time from the start signal to the container's exit), lines at the receiver and lines
`docker logs -f` printed, each out of those sent, and what the agent counted as missed.

Uses the tests' engine; every container made is labelled dockwatch.test=1 and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from fluentd_sink import Receiver, dockerd  # noqa: E402

from agent.docker.models import Container  # noqa: E402
from agent.logs.checkpoint import CheckpointStore  # noqa: E402
from agent.logs.delivery import SinkRunner, TailOptions  # noqa: E402
from agent.logs.sinkspec import SinkSpec  # noqa: E402
from agent.logs.tail import FileTail  # noqa: E402
from exporters.sinks.base import Outcome  # noqa: E402
from tests.support.agentproc import agent_command, free_port, parse  # noqa: E402
from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine  # noqa: E402
from tests.support.toolbox import agent_env, wait_for  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def payload(lines: int, wide: bool) -> str:
    """The shell command that writes the N lines, then keeps the container up."""
    return (f"yes {'x' * 99} | head -n {lines}" if wide else f"seq {lines}") + "; exec sleep 3600"


def make_container(engine: Engine, lines: int, wide: bool) -> str:
    name = f"dwbenchlog-{uuid.uuid4().hex[:8]}"
    # The container stays up: the agent follows running containers (and stopped ones it has a
    # checkpoint for, which these have not).
    script = payload(lines, wide)
    cid: str = engine.docker(
        "run", "-d", "--name", name, "--label", "dockwatch.test=1", BUSYBOX_IMAGE, "sh", "-c", script
    )
    log = engine.root / "data" / "containers" / cid / f"{cid}-json.log"
    wait_for(lambda: log.read_bytes().count(b"\n") >= lines, timeout=120, what="dockerd to write every line")
    return cid


# --- a counting syslog receiver, in its own process --------------------------------------------------------
def _syslog_rx_main(proto: str, port: Any, count: Any, t_first: Any, t_last: Any) -> None:
    lock = threading.Lock()

    def add(k: int) -> None:
        now = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
        with lock:
            if not t_first.value:
                t_first.value = now
            count.value += k
            t_last.value = now

    if proto == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # As root SO_RCVBUFFORCE passes net.core.rmem_max: a burst must not be lost for want of room.
        opt = getattr(socket, "SO_RCVBUFFORCE", 33)
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 32 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        sock.bind(("127.0.0.1", 0))
        port.value = sock.getsockname()[1]
        buf = bytearray(65536)
        while True:
            if sock.recv_into(buf):  # one datagram is one message
                add(1)

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port.value = srv.getsockname()[1]

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1 << 20):
                if k := data.count(b"\n"):  # complete LF-framed lines only
                    add(k)

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


class SyslogReceiver:
    """Counts syslog messages on 127.0.0.1 (tcp: LF-terminated lines; udp: datagrams)."""

    def __init__(self, proto: str) -> None:
        self.proto = proto
        self.port = mp.RawValue("i", 0)
        self.count = mp.RawValue("q", 0)
        self.t_first, self.t_last = mp.RawValue("d", 0.0), mp.RawValue("d", 0.0)
        self.proc = mp.Process(
            target=_syslog_rx_main,
            args=(proto, self.port, self.count, self.t_first, self.t_last),
            daemon=True,
        )

    def __enter__(self) -> SyslogReceiver:
        self.proc.start()
        wait_for(lambda: self.port.value, timeout=10, interval=0.01, what=f"the {self.proto} receiver")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.join(5)

    @property
    def address(self) -> str:
        return f"{self.proto}://127.0.0.1:{self.port.value}"

    def cpu(self) -> float:
        assert self.proc.pid is not None
        return cpu_seconds(self.proc.pid)

    def reset(self) -> None:
        """Between runs only: nothing is arriving (the last run waited for the end)."""
        self.count.value, self.t_first.value, self.t_last.value = 0, 0.0, 0.0

    def wait_end(
        self, n: int, timeout: float, quiet: float, on_change: Callable[[], None] | None = None
    ) -> int:
        """Until n lines are in, or (udp: lines may be lost) none came for `quiet` seconds after the first."""
        deadline = time.monotonic() + timeout
        last = -1
        while True:
            c: int = self.count.value
            if c != last:
                last = c
                if on_change is not None:
                    on_change()
            if c >= n:
                return c
            now = time.monotonic()
            if self.proto == "udp" and c and now - self.t_last.value > quiet:
                return c
            if now > deadline:
                raise TimeoutError(f"{self.proto} receiver has {c} of {n} lines")
            time.sleep(0.002)


class AgentRun:
    def __init__(self, engine: Engine, tmp: Path, sink: dict[str, Any]) -> None:
        self.port = free_port()
        self.state = tmp / ("state-" + uuid.uuid4().hex[:6])
        self.sink = sink.get("name", "")
        cfg = tmp / f"cfg-{uuid.uuid4().hex[:6]}.yml"
        cfg.write_text(json.dumps({"logs": {"sinks": [sink]}}))
        env = agent_env()  # not the shell's DOCKWATCH_* variables: the agent refuses unknown ones
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            agent_command(
                self.port,
                f"--path.docker-root={engine.root / 'data'}",
                f"--path.state={self.state}",
                f"--config={cfg}",
                "--log.level=warning",
                host=engine.host,
            ),
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                status: int = r.status
                return status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> tuple[float, float]:
        wait_for(self.ready, timeout=timeout, interval=0.01, what="agent up")
        return time.monotonic() - self.t0, cpu_seconds(self.proc.pid)

    def wait_done(self, cid: str, size: int, timeout: float) -> tuple[float, float]:
        ckpt = self.state / "logs" / self.sink / f"{cid}.json"

        def done() -> bool:
            try:
                return int(json.loads(ckpt.read_bytes())["file"]["offset"]) >= size
            except (OSError, ValueError, KeyError):
                return False

        wait_for(done, timeout=timeout, interval=0.01, what="the checkpoint at the end of the file")
        return time.monotonic() - self.t0, cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def docker_logs(engine: Engine, cid: str) -> tuple[float, float]:
    dpid = int((engine.root / "dockerd.pid").read_text())
    c0, t0 = cpu_seconds(dpid), time.monotonic()
    subprocess.run(
        ["docker", "logs", cid],
        env=engine.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.monotonic() - t0, cpu_seconds(dpid) - c0


def dockerd_syslog(srx: SyslogReceiver, eng: Engine, lines: int, wide: bool) -> tuple[float, float, int]:
    """dockerd's syslog driver (rfc5424) into `srx`; timed from the first line at the receiver."""
    dpid = int((eng.root / "dockerd.pid").read_text())
    srx.reset()
    args = [
        "--log-driver", "syslog",
        "--log-opt", f"syslog-address={srx.address}",
        "--log-opt", "syslog-format=rfc5424",
    ]  # fmt: skip
    start = threading.Thread(
        target=eng.run,
        args=(*args, BUSYBOX_IMAGE, "sh", "-c", payload(lines, wide)),
        kwargs={"name": f"dwbenchlog-peer-{uuid.uuid4().hex[:8]}"},
    )
    start.start()
    wait_for(lambda: srx.count.value, timeout=60, interval=0.001, what="dockerd's first syslog line")
    cpu0, t0, seen = cpu_seconds(dpid), time.monotonic(), srx.count.value
    cpu_at_last = [cpu0]
    got = srx.wait_end(lines, 300, 2.0, lambda: cpu_at_last.__setitem__(0, cpu_seconds(dpid)))
    wall = srx.t_last.value - t0
    start.join()
    eng.cleanup()
    sent = lines - seen  # lines dockerd sent between our two looks
    return wall * lines / sent, (cpu_at_last[0] - cpu0) * lines / sent, got


# --- the json-file source alone, in this process ----------------------------------------------------------
class _CountingSink:
    name = "count"

    def __init__(self) -> None:
        self.n = 0

    async def open(self) -> None:
        pass

    async def send(self, batch: Any) -> Outcome:
        self.n += len(batch)
        return Outcome.OK

    async def close(self) -> None:
        pass


def source_run(engine: Engine, cid: str, n: int, tmp: Path) -> tuple[float, float]:
    """FileTail over the container's json-file log into a counting sink: (wall s, CPU s) of this process
    from start to the n-th record (checkpoints written after every batch, as in the agent)."""
    raw = engine.inspect(cid)
    c = Container.from_inspect(raw)
    path = engine.root / "data" / "containers" / cid / f"{cid}-json.log"
    sink = _CountingSink()
    runner = SinkRunner(SinkSpec("count", "count"), sink)
    store = CheckpointStore(tmp / f"src-{uuid.uuid4().hex[:6]}")

    async def run() -> tuple[float, float]:
        tail = FileTail(c, runner, store, TailOptions(), path)
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        task = asyncio.create_task(tail.run())
        while sink.n < n:
            await asyncio.sleep(0.002)
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        tail.stop()
        await task
        return w1 - w0, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime

    return asyncio.run(run())


# --- rotation: delivered / sent at rising write rates, beside `docker logs -f` ----------------------------
def rotation_script(lines: int, rate: str) -> str:
    """Print `ready`, wait for /tmp/go, then lines 0..lines-1 at `rate` lines/s (`max`: one seq)."""
    wait = "echo ready; while [ ! -e /tmp/go ]; do sleep 0.01; done"
    if rate == "max":
        return f"{wait}; seq 0 {lines - 1}"
    chunk = 1000
    tick = chunk / float(rate)
    return (
        f"{wait}; i=0; while [ $i -lt {lines} ]; do seq $i $((i+{chunk}-1)); i=$((i+{chunk})); "
        f"sleep {tick:.4f}; done"
    )


def metric(run: AgentRun, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{run.port}/metrics", timeout=10) as r:
        fams = parse(r.read().decode())
    total: float = sum(v for lbl, v in fams.get(name, []) if lbl.get("sink") == run.sink)
    return total


def rotation_rows(engine: Engine, rx: Receiver, tmp: Path, lines: int, rates: list[str]) -> list[str]:
    prefix = f"dwbenchrot-{uuid.uuid4().hex[:6]}-"
    spec = {
        "name": "rot",
        "driver": "fluentd",
        "options": {
            "fluentd-address": f"tcp://127.0.0.1:{rx.port.value}",
            "fluentd-async": "true",
            "fluentd-request-ack": "true",
        },
        "include": {"name": f"^{prefix}"},
    }
    run = AgentRun(engine, tmp, spec)
    run.wait_ready(60)
    out = []
    try:
        for rate in rates:
            rx.reset()
            missed0 = metric(run, "dockwatch_log_sink_rotated_files_missed_total")
            name = f"{prefix}{uuid.uuid4().hex[:6]}"
            cid = engine.run(
                "--network", "none", "--log-opt", "max-size=1m", "--log-opt", "max-file=3",
                BUSYBOX_IMAGE, "sh", "-c", rotation_script(lines, rate), name=name,
            )  # fmt: skip
            follow = subprocess.Popen(["docker", "logs", "-f", cid], env=engine.env, stdout=subprocess.PIPE)
            followed = [0]

            def count(proc: subprocess.Popen[bytes] = follow, box: list[int] = followed) -> None:
                assert isinstance(proc.stdout, io.BufferedReader)  # stdout=PIPE, default buffering
                while data := proc.stdout.read1(1 << 20):
                    box[0] += data.count(b"\n")

            counter = threading.Thread(target=count, daemon=True)
            counter.start()
            # Both followers have the container (its `ready` line) before it writes.
            both = lambda box=followed: rx.count.value >= 1 and box[0] >= 1  # noqa: E731
            wait_for(both, timeout=60, what="both following")
            t0 = time.monotonic()
            engine.docker("exec", cid, "touch", "/tmp/go")
            engine.docker("wait", cid, timeout=600)
            wall = time.monotonic() - t0
            follow.wait(60)
            counter.join(10)
            # The agent finishes the container (it exited): until the receiver has everything, or
            # nothing came for 3 s.
            last, since = -1, time.monotonic()
            while rx.count.value < lines + 1 and time.monotonic() - since < 3:
                if rx.count.value != last:
                    last, since = rx.count.value, time.monotonic()
                time.sleep(0.05)
            got, seen = rx.count.value - 1, followed[0] - 1  # minus `ready`
            missed = metric(run, "dockwatch_log_sink_rotated_files_missed_total") - missed0
            target = "dockerd's max" if rate == "max" else f"{int(rate):,}"
            out.append(
                f"| {target} | {lines / wall:,.0f} | {got:,} / {lines:,} ({100 * got / lines:.1f}%) | "
                f"{int(missed)} | {seen:,} / {lines:,} ({100 * seen / lines:.1f}%) |"
            )
            print(f"  rotation {target}: {out[-1]}", file=sys.stderr)
            engine.docker("rm", "-f", cid, check=False)
    finally:
        run.stop()
    return out


DOCKER_LOGS = "`docker logs` (dockerd reading the same files)"
SOURCE = "dockwatch json-file source alone (read, parse, rejoin, checkpoint)"
PEERS = {  # sink -> the dockerd path it is compared with
    "source": DOCKER_LOGS,
    "json-file": DOCKER_LOGS,
    "fluentd": "dockerd fluentd driver",
    "fluentd+ack": "dockerd fluentd driver",
    "syslog-tcp": "dockerd syslog driver, tcp",
    "syslog-udp": "dockerd syslog driver, udp",
}
Row = tuple[float, float, int]  # lines/s, CPU s per 100k lines, lines at the receiver


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--sinks",
        default="source,json-file,fluentd,syslog-tcp,syslog-udp",
        help="`source`: the json-file source alone, in this process (no agent, no sink)",
    )
    ap.add_argument("--rotation-rates", default="20000,50000,100000,max")
    ap.add_argument("--rotation-lines", type=int, default=200_000)
    ap.add_argument(
        "--wide",
        action="store_true",
        help="100-byte lines instead of `seq` numbers (not for the dockerd fluentd peer: always `seq`)",
    )
    a = ap.parse_args()
    n = a.lines
    chosen = a.sinks.split(",")
    if "fluentd" in chosen:
        chosen.insert(chosen.index("fluentd") + 1, "fluentd+ack")
    rows: dict[str, list[Row]] = {}
    rx_cpu: dict[str, list[float]] = {}
    load0 = os.getloadavg()
    with (
        test_engine() as engine,
        tempfile.TemporaryDirectory() as tmpd,
        Receiver() as rx,
        SyslogReceiver("tcp") as tcp_rx,
        SyslogReceiver("udp") as udp_rx,
    ):
        tmp = Path(tmpd)
        srx = {"syslog-tcp": tcp_rx, "syslog-udp": udp_rx}
        cid = make_container(engine, n, a.wide)
        name = engine.inspect(cid)["Name"].lstrip("/")
        size = (engine.root / "data" / "containers" / cid / f"{cid}-json.log").stat().st_size
        try:
            # Idle start: the agent with a sink that matches nothing, until it serves /metrics.
            idle = AgentRun(
                engine,
                tmp,
                {
                    "name": "idle",
                    "driver": "json-file",
                    "options": {"path": str(tmp / "idle")},
                    "include": {"name": "^nothing-matches$"},
                },
            )
            idle_wall, idle_cpu = idle.wait_ready(60)
            idle.stop()
            fluentd_addr = f"tcp://127.0.0.1:{rx.port.value}"
            sinks: dict[str, Callable[[], dict[str, Any]]] = {
                "json-file": lambda: {
                    "driver": "json-file",
                    "options": {"path": str(tmp / uuid.uuid4().hex[:6])},
                },
                "fluentd": lambda: {
                    "driver": "fluentd",
                    "options": {"fluentd-address": fluentd_addr, "fluentd-async": "true"},
                },
                "fluentd+ack": lambda: {
                    "driver": "fluentd",
                    "options": {
                        "fluentd-address": fluentd_addr,
                        "fluentd-async": "true",
                        "fluentd-request-ack": "true",
                    },
                },
                "syslog-tcp": lambda: {
                    "driver": "syslog",
                    "options": {"syslog-address": tcp_rx.address, "syslog-format": "rfc5424"},
                },
                "syslog-udp": lambda: {
                    "driver": "syslog",
                    "options": {"syslog-address": udp_rx.address, "syslog-format": "rfc5424"},
                },
            }

            def agent(label: str) -> Row:
                if label == "source":
                    wall, cpu = source_run(engine, cid, n, tmp)
                    return n / wall, cpu * 100_000 / n, n
                spec = {"name": "bench", **sinks[label](), "include": {"name": f"^{name}$"}}
                got = n
                if label.startswith("fluentd"):
                    rx.reset()
                elif label in srx:
                    srx[label].reset()
                    r_cpu0 = srx[label].cpu()
                run = AgentRun(engine, tmp, spec)
                try:
                    wall, cpu = run.wait_done(cid, size, 600)
                    # The checkpoint moves once a batch is with the sink; the line is in when the
                    # receiver has it.
                    if label.startswith("fluentd"):
                        rx.wait(n, 120)
                    elif label in srx:
                        got = srx[label].wait_end(n, 120, 2.0)
                        rx_cpu.setdefault(label, []).append((srx[label].cpu() - r_cpu0) * 100_000 / n)
                        wall = max(wall, srx[label].t_last.value - run.t0)
                        cpu = cpu_seconds(run.proc.pid)
                finally:
                    run.stop()
                if wall - idle_wall < 1.0:
                    print(
                        f"  warning: {label} took under 1 s beyond the idle start; use more --lines",
                        file=sys.stderr,
                    )
                # Under 1 s beyond the idle start (warned above), lines/s says nothing: 0 prints as "-".
                lps = n / (wall - idle_wall) if wall - idle_wall >= 1.0 else 0.0
                return lps, max(0.0, cpu - idle_cpu) * 100_000 / n, got

            def peer(label: str) -> Row:
                if label == DOCKER_LOGS:
                    wall, cpu = docker_logs(engine, cid)
                    return n / wall, cpu * 100_000 / n, n
                if label.startswith("dockerd fluentd"):  # bench/fluentd_sink.py's: `seq` lines
                    wall, cpu = dockerd(rx, engine, n, [])
                    return n / wall, cpu * 100_000 / n, n
                tr = srx["syslog-udp" if label.endswith("udp") else "syslog-tcp"]
                r_cpu0 = tr.cpu()
                wall, cpu, got = dockerd_syslog(tr, engine, n, a.wide)
                rx_cpu.setdefault(label, []).append((tr.cpu() - r_cpu0) * 100_000 / n)
                return n / wall, cpu * 100_000 / n, got

            peers = list(dict.fromkeys(PEERS[s] for s in chosen))
            for i in range(a.repeat):
                for label in chosen:
                    key = SOURCE if label == "source" else f"dockwatch → {label} sink"
                    rows.setdefault(key, []).append(r := agent(label))
                    print(
                        f"  [{i + 1}] {label} sink: {r[0]:,.0f} lines/s, {r[1]:.3f}, {r[2]}", file=sys.stderr
                    )
                for label in peers:
                    rows.setdefault(label, []).append(r := peer(label))
                    print(f"  [{i + 1}] {label}: {r[0]:,.0f} lines/s, {r[1]:.3f}, {r[2]}", file=sys.stderr)
            rates = [r for r in a.rotation_rates.split(",") if r]
            rot = rotation_rows(engine, rx, tmp, a.rotation_lines, rates) if rates else []
        finally:
            engine.docker("rm", "-f", cid, check=False)
    load1 = os.getloadavg()

    def med(label: str, k: int) -> float:
        return statistics.median(v[k] for v in rows[label])

    print(
        f"{n:,} lines ({'100-byte' if a.wide else 'seq'}), median of {a.repeat}; idle agent start: "
        f"{idle_wall:.2f}s wall, {idle_cpu:.2f}s CPU (subtracted); load average "
        f"{load0[0]:.2f} at the start, {load1[0]:.2f} at the end\n"
    )
    print(
        "| path | lines/s | CPU s per 100k lines | lines per CPU-s | received / sent | "
        "compared with | lines/s vs it | CPU vs it |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for label, vals in rows.items():
        lps, cpu = med(label, 0), med(label, 1)
        got = min(v[2] for v in vals)
        lost = "" if got >= n else f" (min; {100 * (n - got) / n:.1f}% lost)"
        sink = label.removeprefix("dockwatch → ").removesuffix(" sink")
        sink = "source" if label == SOURCE else sink
        if sink in PEERS:
            p = PEERS[sink]
            vs = f"{lps / med(p, 0):.2f}x" if lps else "-"
            cmp = f"{p} | {vs} | {cpu / med(p, 1):.2f}x"
        else:
            cmp = "(peer) | | "
        per_cpu = f"{100_000 / cpu:,.0f}" if cpu else "-"
        shown = f"{lps:,.0f}" if lps else "-"
        print(f"| {label} | {shown} | {cpu:.3f} | {per_cpu} | {got:,} / {n:,}{lost} | {cmp} |")
    print()
    if rot:
        print(
            f"Rotation: max-size=1m, max-file=3, {a.rotation_lines:,} numbered lines per container; "
            "dockwatch (fluentd sink with ack) and `docker logs -f` follow the same container\n"
        )
        print("| target lines/s | reached lines/s | dockwatch delivered / sent | files counted missed | "
              "`docker logs -f` / sent |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|")
        print("\n".join(rot))
        print()
    for label, cpus in rx_cpu.items():
        print(f"syslog receiver CPU during {label}: {statistics.median(cpus):.3f} s per 100k lines (median)")


if __name__ == "__main__":
    main()
