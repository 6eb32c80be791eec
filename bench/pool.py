"""NetCollector's reader threads on real /proc: CPU per namespace and wall time per collection of
N idle containers' namespaces (in-process collect_namespaces, 10 rounds each) with workers=1 and
workers=3, then a cProfile of workers=1 (where the single thread's time goes).

    python3 bench/pool.py [N=200]        (DWBENCH_KEEP=1 keeps the containers for a repeat)
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
os.environ.setdefault("DWBENCH_PREFIX", "dwpool")

import collect as bench  # noqa: E402

from agent.docker.client import DockerClient  # noqa: E402
from agent.docker.models import Container, Network  # noqa: E402
from agent.hostfs import HostFS  # noqa: E402
from agent.netstats import NetCollector  # noqa: E402
from exporters.prometheus.names import MIB_FIELDS  # noqa: E402
from tests.support.engine import Engine, test_engine  # noqa: E402


async def load(eng: Engine) -> tuple[list[Container], dict[str, Network]]:
    client = DockerClient(eng.host)
    try:
        await client.negotiate()
        cs = [await client.inspect(cid) for cid in await client.running_container_ids()]
        return cs, {n.id: n for n in await client.networks()}
    finally:
        await client.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with test_engine() as eng:
        bench.scale_to(eng, n)
        cs, nets = asyncio.run(load(eng))
        print("| workers | CPU per namespace | wall per collection | namespaces |\n|---:|---:|---:|---:|")
        for workers in (1, 3):
            col = NetCollector(HostFS(), mib_fields=MIB_FIELDS, workers=workers)
            res = col.collect_namespaces(cs, nets)  # warm: the ns-link memo, the route cache
            t0, w0 = time.process_time(), time.perf_counter()
            for _ in range(10):
                res = col.collect_namespaces(cs, nets)
            cpu, wall = (time.process_time() - t0) / 10, (time.perf_counter() - w0) / 10
            k = len(res.samples)
            print(f"| {workers} | {cpu / k * 1e6:.0f} µs | {wall * 1e3:.1f} ms | {k} |")
            col.close()
        col = NetCollector(HostFS(), mib_fields=MIB_FIELDS, workers=1)
        col.collect_namespaces(cs, nets)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(5):
            col.collect_namespaces(cs, nets)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        if not os.environ.get("DWBENCH_KEEP"):
            bench.cleanup(eng)


if __name__ == "__main__":
    main()
