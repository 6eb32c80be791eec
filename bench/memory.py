"""Agent memory (RSS) at N containers with three sinks configured and shipping a burst.

    python3 bench/memory.py [--idle 500] [--writers 50] [--lines 10000] [--steady 30]
        [--variant LABEL=ROOT[,KEY=VALUE...]]...

Runs on the tests' engine (started if none answers). Each `--variant` is an agent checkout (e.g.
`git archive <commit> | tar -x -C DIR`) and extra environment (e.g. MALLOC_ARENA_MAX=2); all are
measured in the same run on the same containers (default: this checkout). Prints per variant:
  - floor: `python3 -c 'import agent.app'` (every module the agent imports, no data);
  - idle: the real agent (`python -m agent run`, a subprocess) with the three sinks configured
    before this run's containers exist (the shared engine may hold other runs' containers: the
    count on the engine is printed), scraped every 2 s;
  - then N idle busybox containers plus W writers, each printing `seq L` once per variant when a
    file appears on a bind-mounted directory (so a burst starts at one moment for all); the agent
    with the json-file, syslog (tcp, rfc5424) and fluentd sinks, all three following only this
    run's containers (`logs.start-at: end`, so a variant does not re-ship the bursts before it):
    startup (until /readyz and the first scrape), steady state (`--steady` s, scraped every 2 s),
    the shipping burst (until each sink counted W x L records sent and both receivers hold them,
    scraped every 5 s) and 10 s after it.
Per phase: VmRSS at the end, the highest VmRSS sampled (every 50 ms from /proc/<pid>/status),
VmHWM (the kernel's own peak, so nothing between two samples is missed) and RssAnon. The
receivers (the counting Forward receiver of bench/fluentd_sink.py and the counting syslog
receiver of bench/log_pipeline.py) run in their own processes. Every container is named with a
unique prefix and removed at the end.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from fluentd_sink import Receiver  # noqa: E402
from log_pipeline import SyslogReceiver  # noqa: E402

from tests.support.agentproc import agent_command, free_port, parse  # noqa: E402
from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine  # noqa: E402
from tests.support.toolbox import agent_env, wait_for  # noqa: E402

SINKS = ("jf", "sl", "fd")


def status_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0])
    return out


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


def spawn(
    engine: Engine, v: Variant, port: int, state: Path, log: Path, *args: str
) -> subprocess.Popen[bytes]:
    """The agent of checkout `v` on `engine`, serving on `port`, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            agent_command(
                port,
                f"--path.docker-root={engine.root / 'data'}",
                f"--path.state={state}",
                "--log.level=warning",
                *args,
                host=engine.host,
            ),
            env={**agent_env(**v.env), "PYTHONPATH": str(v.root)},
            cwd=v.root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


class AgentRun:
    def __init__(self, engine: Engine, tmp: Path, sinks: list[dict[str, object]], v: Variant) -> None:
        self.port = free_port()
        cfg = tmp / f"cfg-{uuid.uuid4().hex[:6]}.yml"
        # start-at end: a later variant does not re-ship the bursts of the ones before it.
        cfg.write_text(json.dumps({"logs": {"sinks": sinks, "start-at": "end"}}))
        self.log = tmp / f"agent-{uuid.uuid4().hex[:6]}.log"
        state = tmp / ("state-" + uuid.uuid4().hex[:6])
        self.proc = spawn(engine, v, self.port, state, self.log, f"--config={cfg}")
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


def start_containers(
    eng: Engine, prefix: str, idle: int, writers: int, lines: int, go: Path, bursts: int
) -> None:
    def run(i: int) -> None:
        if i < writers:
            script = (
                f"for k in $(seq {bursts}); do while [ ! -e /go/go$k ]; do sleep 0.2; done; seq {lines};"
                " done; exec sleep 86400"
            )
            eng.docker(
                "run", "-d", "--name", f"{prefix}w{i}", "-v", f"{go}:/go", BUSYBOX_IMAGE, "sh", "-c", script
            )
        else:
            eng.docker("run", "-d", "--name", f"{prefix}i{i}", BUSYBOX_IMAGE, "sleep", "86400")

    with ThreadPoolExecutor(4) as pool:  # dockerd serialises much of it; 4 keeps the shared engine usable
        list(pool.map(run, range(writers + idle)))


def cleanup(eng: Engine, prefix: str) -> None:
    eng.remove(f"name=^/{prefix}")


@dataclass
class Variant:
    label: str
    root: Path
    env: dict[str, str]


def parse_variant(text: str) -> Variant:
    """LABEL=ROOT[,KEY=VALUE...]: a checkout (e.g. `git archive` of another commit) and its env."""
    label, _, rest = text.partition("=")
    root, *kvs = rest.split(",")
    return Variant(label, Path(root or ROOT).resolve(), dict(kv.split("=", 1) for kv in kvs))


Row = tuple[str, int, int, int, int]


def measure(
    eng: Engine,
    tmp: Path,
    cfg: list[dict[str, object]],
    v: Variant,
    burst: tuple[int, int, int] | None,
    steady: float,
    go: Path,
    fd: Receiver,
    sl: SyslogReceiver,
) -> tuple[list[Row], str]:
    """`burst`: (trigger number, writers, lines) or None. Rows per phase, and a note."""
    agent = AgentRun(eng, tmp, cfg, v)
    try:
        wait_for(lambda: agent.get("/readyz")[0] == 200, timeout=300, interval=0.05, what="agent ready")
        agent.sent()
        agent.sampler.mark("steady")
        size = scrape_for(agent, steady, 2.0)
        engine_n = len(eng.docker("ps", "-q").split())
        agent.sampler.mark("burst")
        note = f"exposition {size / 1024:.0f} KiB, {engine_n} containers on the engine"
        if burst is not None:
            k, writers, lines = burst
            fd.reset()
            sl.reset()
            t0 = time.monotonic()
            (go / f"go{k}").touch()
            want = writers * lines
            wait_for(
                lambda: all(agent.sent()[0].get(s, 0) >= want for s in SINKS),
                timeout=1800,
                interval=5.0,
                what=f"{want} records sent by every sink",
            )
            wait_for(lambda: fd.count.value >= want, timeout=120, interval=0.1, what="the Forward receiver")
            wait_for(lambda: sl.count.value >= want, timeout=120, interval=0.1, what="the syslog receiver")
            note += f", burst shipped in {time.monotonic() - t0:.0f} s"
        agent.sampler.mark("after")
        scrape_for(agent, 10.0, 2.0)
        agent.sampler.mark("")
        return agent.sampler.rows, note
    finally:
        agent.stop()


def floor(root: Path) -> dict[str, int]:
    code = (
        "import agent.app;"
        "print({l.split(':')[0]: int(l.split()[1]) for l in open('/proc/self/status') "
        "if l.startswith(('VmRSS','VmHWM','RssAnon','RssFile'))})"
    )
    env = {**agent_env(), "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    parsed: dict[str, int] = ast.literal_eval(out.stdout)
    return parsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--writers", type=int, default=50)
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--steady", type=float, default=30.0)
    ap.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        help="LABEL=ROOT[,KEY=VALUE...]: an agent checkout and extra environment (e.g. MALLOC_ARENA_MAX=2);"
        " repeat to compare on the same containers. Default: this checkout.",
    )
    ap.add_argument("--skip-idle", action="store_true", help="no 'agent idle' rows")
    a = ap.parse_args()
    variants: list[Variant] = a.variant or [Variant("this checkout", ROOT, {})]
    prefix = f"dwmem{uuid.uuid4().hex[:6]}-"
    with test_engine() as eng:
        run(eng, a, variants, prefix)


def run(eng: Engine, a: argparse.Namespace, variants: list[Variant], prefix: str) -> None:
    mib = 1024.0
    table: list[str] = []

    def add(v: Variant, label: str, rows: list[Row], note: str) -> None:
        for phase, end, peak, hwm, anon in rows:
            table.append(
                f"| {v.label} | {label} | {phase} | {end / mib:.1f} MiB | {peak / mib:.1f} MiB | "
                f"{hwm / mib:.1f} MiB | {anon / mib:.1f} MiB |"
            )
        print(f"{v.label}, {label}: {note}", flush=True)

    for v in variants:
        fl = floor(v.root)
        table.append(
            f"| {v.label} | floor: import agent.app | - | {fl['VmRSS'] / mib:.1f} MiB | - | "
            f"{fl['VmHWM'] / mib:.1f} MiB | {fl['RssAnon'] / mib:.1f} MiB |"
        )
    with tempfile.TemporaryDirectory(prefix="dwmem-") as td, Receiver() as fd, SyslogReceiver("tcp") as sl:
        tmp = Path(td)
        go = tmp / "go"
        go.mkdir()
        cfg = sinks_config(tmp, fd.port.value, sl.port.value, prefix)
        try:
            if not a.skip_idle:
                for v in variants:
                    rows, note = measure(eng, tmp, cfg, v, None, 10.0, go, fd, sl)
                    add(v, "0 of this run", rows, note)
            t0 = time.monotonic()
            start_containers(eng, prefix, a.idle, a.writers, a.lines, go, len(variants))
            print(f"started {a.idle}+{a.writers} containers in {time.monotonic() - t0:.0f} s", flush=True)
            for k, v in enumerate(variants, 1):
                rows, note = measure(eng, tmp, cfg, v, (k, a.writers, a.lines), a.steady, go, fd, sl)
                add(v, f"{a.idle} idle + {a.writers} writers", rows, note)
        finally:
            cleanup(eng, prefix)
    print(f"\nburst: {a.writers} x {a.lines} lines, each to json-file, syslog (tcp) and fluentd")
    print("| agent | containers | phase | VmRSS at end | max VmRSS sampled | VmHWM | RssAnon at end |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
