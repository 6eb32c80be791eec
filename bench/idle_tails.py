"""CPU of idle json-file readers: N containers x 3 sinks whose files exist and are not written to.

    python3 bench/idle_tails.py [--containers 500] [--window 10]

In this process, no engine: the agent's FileTails over files written here as dockerd writes them,
one DirWatcher for all (as the pipeline has), a sink that only counts. Once every tail has read
its file and committed, the process's CPU over `--window` seconds, for:
  - floor: the same number of asyncio tasks blocked on an event (what waiting costs at all);
  - polled: the readers as before (a look every 0.25 s, the watcher's rescan every 1 s);
  - now: the defaults (TailOptions.idle_interval, DirWatcher.rescan_interval).
There is no peer: dockerd's own drivers push lines, they do not wait for them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from agent.docker.models import Container  # noqa: E402
from agent.hostfs import HostFS  # noqa: E402
from agent.logs.checkpoint import CheckpointStore  # noqa: E402
from agent.logs.delivery import SinkRunner, TailOptions  # noqa: E402
from agent.logs.record import LogRecord  # noqa: E402
from agent.logs.sinkspec import SinkSpec  # noqa: E402
from agent.logs.tail import FileTail  # noqa: E402
from agent.logs.watch import RESCAN_INTERVAL, DirWatcher  # noqa: E402
from exporters.sinks.base import Outcome  # noqa: E402

LINE = b'{"log":"x\\n","stream":"stdout","time":"2026-11-30T05:00:00.000000001Z"}\n'


class CountingSink:
    def __init__(self, name: str) -> None:
        self.name, self.count = name, 0

    async def open(self) -> None:
        pass

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        self.count += len(batch)
        return Outcome.OK

    async def close(self) -> None:
        pass


async def cpu_over(window: float) -> float:
    c0, w0 = time.process_time(), time.monotonic()
    await asyncio.sleep(window)  # the measurement window itself
    return 100 * (time.process_time() - c0) / (time.monotonic() - w0)


async def floor(n: int, window: float) -> float:
    ev = asyncio.Event()
    tasks = [asyncio.create_task(ev.wait()) for _ in range(n)]
    pct = await cpu_over(window)
    ev.set()
    await asyncio.gather(*tasks)
    return pct


async def tails(root: Path, containers: int, window: float, opts: TailOptions, rescan: float) -> float:
    ids = [f"{i:064x}" for i in range(containers)]
    for cid in ids:
        d = root / "containers" / cid
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{cid}-json.log").write_bytes(LINE)
    store = CheckpointStore(root / "state")
    watcher = DirWatcher(rescan_interval=rescan)
    sinks = [CountingSink(s) for s in ("jf", "sl", "fd")]
    all_tails = []
    for s in sinks:
        runner = SinkRunner(SinkSpec(s.name, "test"), s)
        for cid in ids:
            c = Container(id=cid, name=cid[:6], image="busybox", image_id="", pid=1, network_mode="default")
            path = HostFS(docker_root=root).container_dir(cid) / f"{cid}-json.log"
            all_tails.append(FileTail(c, runner, store, opts, path, watcher=watcher))
    tasks = [asyncio.create_task(t.run()) for t in all_tails]
    deadline = time.monotonic() + 120
    while any(s.count < containers for s in sinks) or any(t._waiting is False for t in all_tails):
        assert time.monotonic() < deadline, "the tails never all went idle"
        await asyncio.sleep(0.1)
    pct = await cpu_over(window)
    for t in all_tails:
        t.stop()
    await asyncio.gather(*tasks)
    await asyncio.to_thread(watcher.close)
    return pct


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=500)
    ap.add_argument("--window", type=float, default=10.0)
    a = ap.parse_args()
    n = a.containers * 3
    rows = [("floor: tasks blocked on an event", asyncio.run(floor(n, a.window)))]
    polled = TailOptions(poll_interval=0.25, idle_interval=0.25)
    with tempfile.TemporaryDirectory(prefix="dwidle-") as td:
        rows.append(
            (
                "polled: a look every 0.25 s, rescan 1 s",
                asyncio.run(tails(Path(td), a.containers, a.window, polled, 1.0)),
            )
        )
    with tempfile.TemporaryDirectory(prefix="dwidle-") as td:
        now = TailOptions()
        rows.append(
            (
                f"now: fallback {now.idle_interval:g} s, rescan {RESCAN_INTERVAL:g} s",
                asyncio.run(tails(Path(td), a.containers, a.window, now, RESCAN_INTERVAL)),
            )
        )
    cpu_table(
        f"{a.containers} containers x 3 sinks = {n} idle readers, CPU over {a.window:g} s", "readers", rows
    )


def cpu_table(title: str, what: str, rows: list[tuple[str, float]]) -> None:
    """The results as a markdown table (also bench/idle_agent.py's)."""
    print(title)
    print(f"| {what} | % of a core |")
    print("|---|---:|")
    for label, pct in rows:
        print(f"| {label} | {pct:.1f} |")


if __name__ == "__main__":
    main()
