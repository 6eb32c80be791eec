"""Where the agent's memory goes, part by part, in this process (no docker engine needed).

    python3 bench/memory_parts.py [--namespaces 500] [--containers 50] [--lines 10000]

Imports the checkout it lies in: to measure another commit, `git archive <commit> | tar -x -C DIR`,
copy this file to DIR/bench/ and run it there. Python heap via tracemalloc (current and peak), per part:
  - exposition: the page of one collection at N synthetic namespaces (bench/render.py's workload,
    ~20k series at 500), rendered and served once (text 0.0.4) and once as OpenMetrics: what the
    page keeps (current after) and the peak while building and serving it;
  - log shipping: C containers' json-file logs of L lines each (seq-like, written here as dockerd
    writes them), one FileTail per container and sink for 3 sinks (the agent's SinkRunner, a sink
    that counts and yields to the loop once per batch, like a network write): the peak while every
    line is shipped, and that every line arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import tracemalloc
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--namespaces", type=int, default=500)
ap.add_argument("--containers", type=int, default=50)
ap.add_argument("--lines", type=int, default=10000)
A = ap.parse_args()
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from render import workload  # noqa: E402

from agent.docker.models import Container  # noqa: E402
from agent.hostfs import HostFS  # noqa: E402
from agent.logs.checkpoint import CheckpointStore  # noqa: E402
from agent.logs.delivery import SinkRunner, TailOptions  # noqa: E402
from agent.logs.sinkspec import SinkSpec  # noqa: E402
from agent.logs.tail import FileTail  # noqa: E402
from agent.logs.watch import DirWatcher  # noqa: E402
from exporters.prometheus.render import MetricsPage, Renderer  # noqa: E402
from exporters.sinks.base import Outcome  # noqa: E402

MIB = 1 << 20


def exposition(count: int) -> tuple[float, float, int]:
    res, events, known = workload(count)
    r = Renderer()
    r.render("node-1", "nid", res, events, known, [])  # identity strings cached, as in a running agent
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    page = MetricsPage(r.render("node-1", "nid", res, events, known, []), [])
    size = len(page.body())
    page.body(openmetrics=True)
    cur, peak = tracemalloc.get_traced_memory()
    del page
    return (cur - before) / MIB, (peak - before) / MIB, size


class CountingSink:
    def __init__(self, name: str) -> None:
        self.name, self.count = name, 0

    async def open(self) -> None:
        pass

    async def send(self, batch):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)  # a network sink yields while it writes
        self.count += len(batch)
        return Outcome.OK

    async def close(self) -> None:
        pass


async def shipping(root: Path, containers: int, lines: int) -> tuple[float, int]:
    ids = [f"{i:064x}" for i in range(containers)]
    body = b"".join(
        b'{"log":"%d\\n","stream":"stdout","time":"2026-11-30T05:00:00.%09dZ"}\n' % (k, k + 1)
        for k in range(1, lines + 1)
    )
    for cid in ids:
        d = root / "containers" / cid
        d.mkdir(parents=True)
        (d / f"{cid}-json.log").write_bytes(body)
    store = CheckpointStore(root / "state")
    sinks = [CountingSink(s) for s in ("jf", "sl", "fd")]
    tails = []
    watcher = DirWatcher()  # one for all tails, as the agent's pipeline has
    for s in sinks:
        runner = SinkRunner(SinkSpec(s.name, "test"), s)
        for cid in ids:
            c = Container(id=cid, name=cid[:6], image="busybox", image_id="", pid=1, network_mode="default")
            path = HostFS(docker_root=root).container_dir(cid) / f"{cid}-json.log"
            tails.append(FileTail(c, runner, store, TailOptions(poll_interval=0.05), path, watcher=watcher))
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.create_task(t.run()) for t in tails]
    want = containers * lines
    while any(s.count < want for s in sinks):
        await asyncio.sleep(0.05)
    peak = tracemalloc.get_traced_memory()[1]
    for t in tails:
        t.stop()
    await asyncio.gather(*tasks)
    await asyncio.to_thread(watcher.close)
    return (peak - before) / MIB, min(s.count for s in sinks)


def main() -> None:
    tracemalloc.start()
    kept, peak, size = exposition(A.namespaces)
    print(f"checkout {ROOT}")
    print(
        f"exposition, {A.namespaces} namespaces ({size / 1024:.0f} KiB text): page keeps {kept:.1f} MiB, "
        f"peak {peak:.1f} MiB while building and serving"
    )
    with tempfile.TemporaryDirectory(prefix="dwmemparts-") as td:
        peak, got = asyncio.run(shipping(Path(td), A.containers, A.lines))
    print(
        f"log shipping, {A.containers} containers x {A.lines} lines x 3 sinks: peak {peak:.1f} MiB "
        f"({got} of {A.containers * A.lines} lines at every sink)"
    )


if __name__ == "__main__":
    main()
