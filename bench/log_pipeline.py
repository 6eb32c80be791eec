"""Benchmark: the log pipeline from Docker's json-file logs to a sink, against `docker logs`.

    python bench/log_pipeline.py [--lines 200000] [--repeat 3] [--sinks json-file,fluentd] [--wide]

A busybox container writes N lines (`seq N`, or 100-byte lines with --wide) and stays up; then the
real agent (`python -m agent run`, a subprocess) is started with one sink that follows only that
container. It is timed until its checkpoint reaches the end of Docker's file (polled every 10 ms
from here: scraping /metrics would charge the agent for every other container's network metrics),
so this is a backlog read as fast as the agent can. CPU is the agent's utime+stime from /proc minus
an idle start of the agent (imports, until /readyz) measured in the same run.

The peer: `docker logs <id> > /dev/null` on the same container, i.e. dockerd reading the same files
and serving them over the API (dockerd's CPU from /proc). The fluentd sink sends to the counting
Forward receiver of bench/fluentd_sink.py, in its own process. Uses the tests' engine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from agentproc import free_port  # noqa: E402
from engine import BUSYBOX_IMAGE, Engine, test_engine, wait_for  # noqa: E402
from fluentd_sink import Receiver  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def make_container(engine: Engine, lines: int, wide: bool) -> str:
    name = f"dwbenchlog-{uuid.uuid4().hex[:8]}"
    # The container stays up: the agent follows running containers (and stopped ones it has a
    # checkpoint for, which these have not).
    script = (f"yes {'x' * 99} | head -n {lines}" if wide else f"seq {lines}") + "; sleep 3600"
    cid = engine.docker(
        "run", "-d", "--name", name, "--label", "dockwatch.test=1", BUSYBOX_IMAGE, "sh", "-c", script
    )
    log = engine.root / "data" / "containers" / cid / f"{cid}-json.log"
    wait_for(lambda: log.read_bytes().count(b"\n") >= lines, timeout=120, what="dockerd to write every line")
    return cid


class AgentRun:
    def __init__(self, engine: Engine, tmp: Path, sink: dict) -> None:
        self.port = free_port()
        self.state = tmp / ("state-" + uuid.uuid4().hex[:6])
        self.sink = sink.get("name", "")
        cfg = tmp / f"cfg-{uuid.uuid4().hex[:6]}.yml"
        cfg.write_text(json.dumps({"logs": {"sinks": [sink]}}))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("DOCKER_HOST", None)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "run",
                f"--docker.host={engine.host}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--path.docker-root={engine.root / 'data'}",
                f"--path.state={self.state}",
                f"--config={cfg}",
                "--log-level=warning",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                return r.status == 200
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sinks", default="json-file,fluentd")
    ap.add_argument("--wide", action="store_true", help="100-byte lines instead of `seq` numbers")
    a = ap.parse_args()
    n = a.lines
    rows: dict[str, list[tuple[float, float]]] = {}
    with test_engine() as engine, tempfile.TemporaryDirectory() as tmpd, Receiver() as rx:
        tmp = Path(tmpd)
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
            sinks = {
                "json-file": lambda: {
                    "driver": "json-file",
                    "options": {"path": str(tmp / uuid.uuid4().hex[:6])},
                },
                "fluentd": lambda: {
                    "driver": "fluentd",
                    "options": {
                        "fluentd-address": f"tcp://127.0.0.1:{rx.port.value}",
                        "fluentd-async": "true",
                    },
                },
                "fluentd+ack": lambda: {
                    "driver": "fluentd",
                    "options": {
                        "fluentd-address": f"tcp://127.0.0.1:{rx.port.value}",
                        "fluentd-async": "true",
                        "fluentd-request-ack": "true",
                    },
                },
            }
            chosen = a.sinks.split(",")
            if "fluentd" in chosen:
                chosen.append("fluentd+ack")
            for _ in range(a.repeat):
                for label in chosen:
                    spec = {"name": "bench", **sinks[label](), "include": {"name": f"^{name}$"}}
                    run = AgentRun(engine, tmp, spec)
                    try:
                        wall, cpu = run.wait_done(cid, size, 600)
                    finally:
                        run.stop()
                    rows.setdefault(f"dockwatch → {label} sink", []).append(
                        (n / max(1e-9, wall - idle_wall), max(0.0, cpu - idle_cpu) * 100_000 / n)
                    )
                wall, cpu = docker_logs(engine, cid)
                rows.setdefault("`docker logs` (dockerd reading the same files)", []).append(
                    (n / wall, cpu * 100_000 / n)
                )
        finally:
            engine.docker("rm", "-f", cid, check=False)
    peer = statistics.median(r[0] for r in rows["`docker logs` (dockerd reading the same files)"])
    print(
        f"{n} lines ({'100-byte' if a.wide else 'seq'}), median of {a.repeat}; idle agent start: "
        f"{idle_wall:.2f}s wall, {idle_cpu:.2f}s CPU (subtracted)\n"
    )
    print("| path | lines/s | CPU s per 100k lines | lines/s vs docker logs |")
    print("|---|---:|---:|---:|")
    for label, vals in rows.items():
        lps = statistics.median(v[0] for v in vals)
        cpu = statistics.median(v[1] for v in vals)
        print(f"| {label} | {lps:,.0f} | {cpu:.3f} | {lps / peer:.2f}x |")


if __name__ == "__main__":
    main()
