"""destroy → series gone: how long a removed container's series outlive `docker rm -f`.

Usage (as root, on a machine with docker.io and busybox-static; starts the tests' private
engine if none answers):

    python3 bench/destroy.py --cycles 300 --parallel 3 [--before REF] [--interval 2s]

`--parallel` workers each run `--cycles / --parallel` cycles against the real engine, over the
Engine API: create + start a busybox container, scrape until the agent exports its series, remove
it (`DELETE /containers/{id}?force=1`, what `docker rm -f` sends), then scrape until no series of
it is left. Per agent it prints:
  - failed scrapes: /metrics answers other than 200 (sent again);
  - stale scrapes: scrapes sent after the remove returned that still held the container's series
    (and in how many cycles that happened);
  - gone after rm: from the remove returning to the first scrape that was sent and came back
    without the series, minus nothing (0 when the very first scrape after rm is clean); p50/p99/max;
  - the floor, in the same run: the same interval for a bare /events subscriber in this process
    to read the `destroy` event (the engine's own delivery; negative when it arrives first);
  - agent RSS and open fds before and after.
`--before REF` also runs the agent as of that git commit (extracted with `git archive`), in the
same run, under the same load: the comparison with the code before a change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.support.agentproc import agent_command, free_port  # noqa: E402
from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine  # noqa: E402

LABEL = "dockwatch.bench.destroy"


@dataclass
class Result:
    gone_s: list[float] = field(default_factory=list)  # per cycle: rm returned -> a clean scrape
    stale_scrapes: int = 0
    stale_cycles: int = 0
    floor_s: list[float] = field(default_factory=list)  # rm returned -> destroy read from /events
    rss_mib: tuple[float, float] = (0.0, 0.0)
    fds: tuple[int, int] = (0, 0)
    wall_s: float = 0.0
    exited: str = ""  # the agent stopped during the run: its exit code and last error line
    failed_scrapes: int = 0  # /metrics answered an error (the scrape is sent again)


class AgentExited(Exception):
    pass


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class AgentProc:
    """`python -m agent run` from a source tree (this checkout, or an extracted older commit)."""

    def __init__(self, eng: Engine, src: Path, *args: str) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="dockwatch-bench-", suffix=".log", delete=False)  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": str(src)}
        env.pop("DOCKER_HOST", None)
        self.proc = subprocess.Popen(
            agent_command(self.port, *args, host=eng.host),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=src,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def follow_destroys(eng: Engine, seen: dict[str, float], subscribed: asyncio.Event) -> None:
    """The floor: a bare /events subscriber, recording when each destroy is read."""
    conn = aiohttp.UnixConnector(path=eng.socket_path)
    params = {"filters": json.dumps({"type": ["container"], "event": ["destroy"]})}
    async with (
        aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s,
        s.get("http://docker/events", params=params) as resp,
    ):
        subscribed.set()
        async for line in resp.content:
            if line.strip():
                ev = json.loads(line)
                seen[ev["Actor"]["ID"]] = time.monotonic()


async def run_agent(eng: Engine, agent: AgentProc, cycles: int, parallel: int) -> Result:
    res = Result()
    destroys: dict[str, float] = {}
    subscribed = asyncio.Event()
    floor_task = asyncio.create_task(follow_destroys(eng, destroys, subscribed))
    await asyncio.wait_for(subscribed.wait(), 30)
    engine_http = aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=eng.socket_path), timeout=aiohttp.ClientTimeout(total=120)
    )
    agent_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def scrape() -> str:
        try:
            while True:
                async with agent_http.get(agent.url + "/metrics") as r:
                    if r.status == 200:
                        return await r.text()
                res.failed_scrapes += 1
        except aiohttp.ClientError:
            for _ in range(100):  # a stopping agent closes its port before the process exits
                if agent.proc.poll() is not None:
                    raise AgentExited from None
                await asyncio.sleep(0.1)
            raise

    deadline = time.monotonic() + 60
    while True:  # the agent is up and has listed the engine
        try:
            async with agent_http.get(agent.url + "/readyz") as r:
                if r.status == 200:
                    break
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"agent not ready; log {agent.log.name}"
        await asyncio.sleep(0.2)
    res.rss_mib = (rss_mib(agent.proc.pid), 0.0)
    res.fds = (fds(agent.proc.pid), 0)

    async def one_cycle(worker: int, i: int) -> None:
        name = f"dwbd-{worker}-{i}-{uuid.uuid4().hex[:6]}"
        body = {"Image": BUSYBOX_IMAGE, "Cmd": ["sleep", "600"], "Labels": {LABEL: "1"}}
        async with engine_http.post("http://docker/containers/create", params={"name": name}, json=body) as r:
            assert r.status == 201, await r.text()
            cid = (await r.json())["Id"]
        async with engine_http.post(f"http://docker/containers/{cid}/start") as r:
            assert r.status == 204, await r.text()
        marker = f'name="{name}"'
        t_seen = time.monotonic() + 30
        while marker not in await scrape():
            assert time.monotonic() < t_seen, f"{name} never exported"
        async with engine_http.delete(f"http://docker/containers/{cid}", params={"force": "1"}) as r:
            assert r.status == 204, await r.text()
        t_rm = time.monotonic()
        stale = 0
        while True:
            sent = time.monotonic()
            if marker not in await scrape():
                break
            stale += 1
            assert sent - t_rm < 30, f"{name}'s series still there 30 s after rm"
        res.gone_s.append(sent - t_rm if stale else 0.0)
        res.stale_scrapes += stale
        res.stale_cycles += stale > 0
        for _ in range(100):  # the floor's destroy, read by now or very soon
            if cid in destroys:
                res.floor_s.append(destroys.pop(cid) - t_rm)
                break
            await asyncio.sleep(0.01)

    async def worker(w: int, n: int) -> None:
        for i in range(n):
            if res.exited:
                return
            try:
                await one_cycle(w, i)
            except AgentExited:
                errors = [ln for ln in Path(agent.log.name).read_text().splitlines() if "Error" in ln]
                res.exited = f"rc {agent.proc.returncode}: {errors[-1] if errors else '?'}"

    t0 = time.monotonic()
    try:
        per = [cycles // parallel + (1 if w < cycles % parallel else 0) for w in range(parallel)]
        await asyncio.gather(*(worker(w, n) for w, n in enumerate(per)))
    finally:
        res.wall_s = time.monotonic() - t0
        if agent.proc.poll() is None:
            res.rss_mib = (res.rss_mib[0], rss_mib(agent.proc.pid))
            res.fds = (res.fds[0], fds(agent.proc.pid))
        floor_task.cancel()
        await asyncio.gather(floor_task, return_exceptions=True)
        await engine_http.close()
        await agent_http.close()
    return res


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def row(label: str, r: Result) -> str:
    if r.exited:
        return f"| {label} | {len(r.gone_s)} | {r.failed_scrapes} | agent exited ({r.exited}) |"
    ms = [x * 1e3 for x in r.gone_s]
    fl = [x * 1e3 for x in r.floor_s]
    return (
        f"| {label} | {len(r.gone_s)} | {r.failed_scrapes} | {r.stale_scrapes} | {r.stale_cycles} "
        f"| {statistics.median(ms):.1f} ms | {pct(ms, 99):.1f} ms | {max(ms):.1f} ms "
        f"| {statistics.median(fl):.1f} ms | {pct(fl, 99):.1f} ms "
        f"| {r.rss_mib[0]:.1f} → {r.rss_mib[1]:.1f} MiB | {r.fds[0]} → {r.fds[1]} | {r.wall_s:.0f} s |"
    )


def extract(ref: str, into: Path) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=data, check=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=300)
    ap.add_argument("--parallel", type=int, default=3)
    ap.add_argument("--before", help="also run the agent as of this git commit, in the same run")
    ap.add_argument("--interval", help="also run each agent with --collector.interval=VALUE")
    opts = ap.parse_args()
    print(
        "| agent | cycles | failed scrapes | stale scrapes | cycles with one | gone after rm p50 | p99 | max "
        "| floor: /events destroy p50 | floor p99 | agent RSS | agent fds | wall |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    with test_engine() as eng, tempfile.TemporaryDirectory() as tmp:
        sources = [("this checkout", ROOT)]
        if opts.before:
            sources.append((f"before ({opts.before})", extract(opts.before, Path(tmp))))
        modes: list[tuple[str, tuple[str, ...]]] = [("at scrape", ())]
        if opts.interval:
            modes.append((f"interval {opts.interval}", (f"--collector.interval={opts.interval}",)))
        try:
            for mode, args in modes:
                for label, src in sources:
                    agent = AgentProc(eng, src, *args)
                    try:
                        r = asyncio.run(run_agent(eng, agent, opts.cycles, opts.parallel))
                    finally:
                        agent.stop()
                    print(row(f"{label}, {mode}", r), flush=True)  # as it comes: a long run keeps its rows
        finally:
            eng.remove(f"label={LABEL}")


if __name__ == "__main__":
    main()
