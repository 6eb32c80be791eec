"""Agent memory (RSS) at N containers with three sinks configured and shipping a burst.

    python3 bench/memory.py [--idle 500] [--writers 50] [--lines 10000] [--steady 30]

Runs on the tests' engine (started if none answers). Prints, from one run:
  - floor: `python3 -c 'import agent.app'` (every module the agent imports, no data);
  - agent idle: the real agent (`python -m agent run`, a subprocess) with the three sinks configured
    before this run's containers exist (the shared engine may hold other runs' containers: their
    count is printed), scraped every 2 s;
  - then N idle busybox containers plus W writers, each waiting for a file on a bind-mounted
    directory before it prints `seq L` (so the burst starts at one moment for all); the agent
    with the json-file, syslog (tcp, rfc5424) and fluentd sinks configured, all three following
    only this run's containers: startup (until /readyz and the first scrape), steady state
    (`--steady` s, scraped every 2 s), the shipping burst (until each sink counted W x L records
    sent, scraped every 5 s) and after it (10 s).
Per phase: VmRSS at the end, the highest VmRSS sampled (every 50 ms from /proc/<pid>/status) and
VmHWM (the kernel's own peak, so nothing between two samples is missed). The receivers (the
counting Forward receiver of bench/fluentd_sink.py and the counting syslog receiver of
bench/log_pipeline.py) run in their own processes. Every container is named with a unique prefix
and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from agentproc import free_port, parse  # noqa: E402
from engine import BUSYBOX_IMAGE, Engine, test_engine, wait_for  # noqa: E402
from fluentd_sink import Receiver  # noqa: E402
from log_pipeline import SyslogReceiver  # noqa: E402
from toolbox import agent_env  # noqa: E402

SINKS = ("jf", "sl", "fd")


def status_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0])
    return out


def floor() -> dict[str, int]:
    code = (
        "import agent.app;"
        "print({l.split(':')[0]: int(l.split()[1]) for l in open('/proc/self/status') "
        "if l.startswith(('VmRSS','VmHWM','RssAnon','RssFile'))})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=agent_env(), capture_output=True, text=True, check=True
    )
    parsed: dict[str, int] = eval(out.stdout)  # our own dict literal, printed just above
    return parsed


class Sampler(threading.Thread):
    """VmRSS every 50 ms; `mark(phase)` closes the phase before it."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.phase, self.stop_ev = pid, "startup", threading.Event()
        self.rows: list[tuple[str, int, int, int, int]] = []  # phase, end RSS, max RSS, HWM, anon
        self.peak = 0
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop_ev.wait(0.05):
            try:
                rss = status_kib(self.pid)["VmRSS"]
            except (OSError, KeyError):
                return
            with self.lock:
                self.peak = max(self.peak, rss)

    def mark(self, next_phase: str) -> None:
        s = status_kib(self.pid)
        with self.lock:
            self.rows.append((self.phase, s["VmRSS"], max(self.peak, s["VmRSS"]), s["VmHWM"], s["RssAnon"]))
            self.phase, self.peak = next_phase, 0


class AgentRun:
    def __init__(
        self, engine: Engine, tmp: Path, sinks: list[dict[str, object]], env: dict[str, str]
    ) -> None:
        self.port = free_port()
        cfg = tmp / f"cfg-{uuid.uuid4().hex[:6]}.yml"
        cfg.write_text(json.dumps({"logs": {"sinks": sinks}}))
        self.log = tmp / f"agent-{uuid.uuid4().hex[:6]}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "run",
                f"--docker.host={engine.host}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--path.docker-root={engine.root / 'data'}",
                f"--path.state={tmp / ('state-' + uuid.uuid4().hex[:6])}",
                f"--config={cfg}",
                "--log.level=warning",
            ],
            env=agent_env(**env),
            cwd=ROOT,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.sampler = Sampler(self.proc.pid)
        self.sampler.start()

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
                return r.status, r.read()
        except OSError:
            return 0, b""

    def sent(self) -> tuple[dict[str, float], int]:
        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        m = parse(body.decode())
        got = {lbl.get("sink", ""): v for lbl, v in m.get("dockwatch_log_sink_records_sent_total", [])}
        return got, len(body)

    def stop(self) -> None:
        self.sampler.stop_ev.set()
        self.proc.terminate()
        self.proc.wait(30)


def sinks_config(tmp: Path, fd_port: int, sl_port: int, prefix: str) -> list[dict[str, object]]:
    only = {"name": f"^/?{prefix}"}
    return [
        {"name": "jf", "driver": "json-file", "options": {"path": str(tmp / "jf")}, "include": only},
        {
            "name": "sl",
            "driver": "syslog",
            "options": {"syslog-address": f"tcp://127.0.0.1:{sl_port}", "syslog-format": "rfc5424"},
            "include": only,
        },
        {
            "name": "fd",
            "driver": "fluentd",
            "options": {"fluentd-address": f"tcp://127.0.0.1:{fd_port}"},
            "include": only,
        },
    ]


def scrape_for(agent: AgentRun, seconds: float, every: float) -> int:
    size, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        size = agent.sent()[1]
        time.sleep(every)
    return size


def start_containers(eng: Engine, prefix: str, idle: int, writers: int, lines: int, go: Path) -> None:
    def run(i: int) -> None:
        if i < writers:
            script = f"while [ ! -e /go/go ]; do sleep 0.2; done; seq {lines}; exec sleep 86400"
            eng.docker(
                "run", "-d", "--name", f"{prefix}w{i}", "-v", f"{go}:/go", BUSYBOX_IMAGE, "sh", "-c", script
            )
        else:
            eng.docker("run", "-d", "--name", f"{prefix}i{i}", BUSYBOX_IMAGE, "sleep", "86400")

    with ThreadPoolExecutor(4) as pool:  # dockerd serialises much of it; 4 keeps the shared engine usable
        list(pool.map(run, range(writers + idle)))


def cleanup(eng: Engine, prefix: str) -> None:
    ids = eng.docker("ps", "-aq", "--filter", f"name=^/{prefix}").split()
    for i in range(0, len(ids), 100):
        eng.docker("rm", "-f", *ids[i : i + 100], timeout=600)


def measure(
    eng: Engine,
    tmp: Path,
    cfg: list[dict[str, object]],
    env: dict[str, str],
    writers: int,
    lines: int,
    steady: float,
    go: Path,
    fd: Receiver,
    sl: SyslogReceiver,
) -> list[tuple[str, int, int, int, int]]:
    agent = AgentRun(eng, tmp, cfg, env)
    try:
        wait_for(lambda: agent.get("/readyz")[0] == 200, timeout=300, interval=0.05, what="agent ready")
        agent.sent()
        agent.sampler.mark("steady")
        size = scrape_for(agent, steady, 2.0)
        agent.sampler.mark("burst")
        if writers:
            (go / "go").touch()
            want = writers * lines
            wait_for(
                lambda: all(agent.sent()[0].get(s, 0) >= want for s in SINKS),
                timeout=1800,
                interval=5.0,
                what=f"{want} records sent by every sink",
            )
            wait_for(lambda: fd.count.value >= want, timeout=120, interval=0.1, what="the Forward receiver")
            wait_for(lambda: sl.count.value >= want, timeout=120, interval=0.1, what="the syslog receiver")
        agent.sampler.mark("after")
        scrape_for(agent, 10.0, 2.0)
        agent.sampler.mark("")
        print(f"  (exposition {size / 1024:.0f} KiB)", flush=True)
        return agent.sampler.rows
    finally:
        agent.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--writers", type=int, default=50)
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--steady", type=float, default=30.0)
    ap.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the agent (e.g. MALLOC_ARENA_MAX=2)"
    )
    ap.add_argument("--skip-idle", action="store_true", help="no 'agent idle' row")
    a = ap.parse_args()
    env = dict(kv.split("=", 1) for kv in a.env)
    prefix = f"dwmem{uuid.uuid4().hex[:6]}-"
    with test_engine() as eng:
        run(eng, a, env, prefix)


def run(eng: Engine, a: argparse.Namespace, env: dict[str, str], prefix: str) -> None:
    mib = 1024.0
    fl = floor()
    print(
        f"floor: import agent.app: VmRSS {fl['VmRSS'] / mib:.1f} MiB (anon {fl['RssAnon'] / mib:.1f})",
        flush=True,
    )
    others = len(eng.docker("ps", "-q").split())
    rows: list[tuple[str, list[tuple[str, int, int, int, int]]]] = []
    with tempfile.TemporaryDirectory(prefix="dwmem-") as td, Receiver() as fd, SyslogReceiver("tcp") as sl:
        tmp = Path(td)
        go = tmp / "go"
        go.mkdir()
        cfg = sinks_config(tmp, fd.port.value, sl.port.value, prefix)
        try:
            if not a.skip_idle:
                print(f"agent idle (0 containers of this run; {others} others on the engine)...", flush=True)
                rows.append(("idle, 0", measure(eng, tmp, cfg, env, 0, 0, 10.0, go, fd, sl)))
            t0 = time.monotonic()
            start_containers(eng, prefix, a.idle, a.writers, a.lines, go)
            print(f"started {a.idle}+{a.writers} containers in {time.monotonic() - t0:.0f} s", flush=True)
            rows.append(
                (
                    f"{a.idle}+{a.writers}",
                    measure(eng, tmp, cfg, env, a.writers, a.lines, a.steady, go, fd, sl),
                )
            )
        finally:
            cleanup(eng, prefix)
    print(f"\nenv {env or '-'}; burst: {a.writers} x {a.lines} lines to each of json-file, syslog, fluentd")
    print("| containers | phase | VmRSS at end | max VmRSS sampled | VmHWM | RssAnon at end |")
    print("|---|---|---|---|---|---|")
    print(
        f"| floor: import agent.app | - | {fl['VmRSS'] / mib:.1f} MiB | - | {fl['VmHWM'] / mib:.1f} MiB | {fl['RssAnon'] / mib:.1f} MiB |"
    )
    for label, phases in rows:
        for phase, end, peak, hwm, anon in phases:
            print(
                f"| {label} | {phase} | {end / mib:.1f} MiB | {peak / mib:.1f} MiB | {hwm / mib:.1f} MiB | {anon / mib:.1f} MiB |"
            )


if __name__ == "__main__":
    main()
