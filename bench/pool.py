"""NetCollector on real /proc, by parser and reader threads: CPU per namespace and wall time per
collection of N idle containers' namespaces (in-process collect_namespaces, 10 rounds each, best
of 3) with the pure-Python parser and the C one (agent/fastproc.py), one thread and three; the
floor from the same run (a bare open/read/close of the files each namespace's collection reads);
then a cProfile of the default (where the single thread's time goes).

    python3 bench/pool.py [N=200]        (DWBENCH_KEEP=1 keeps the containers for a repeat)
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
os.environ.setdefault("DWBENCH_PREFIX", "dwpool")

import collect as bench  # noqa: E402

from agent import fastproc  # noqa: E402
from agent.docker.client import DockerClient  # noqa: E402
from agent.docker.models import Container, Network  # noqa: E402
from agent.hostfs import HostFS  # noqa: E402
from agent.netstats import NetCollector, NetnsSample  # noqa: E402
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


def floor_paths(samples: Sequence[NetnsSample]) -> list[str]:
    """The files a collection read: the base ones, and the IPv6 ones where it read them."""
    out = []
    for s in samples:
        files = (*bench.BASE_FILES, *bench.V6_FILES) if "TCP6" in s.sockstat else bench.BASE_FILES
        out += [f"/proc/{s.owner.pid if s.owner else 1}/net/{f}" for f in files]
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with test_engine() as eng:
        bench.scale_to(eng, n)
        cs, nets = asyncio.run(load(eng))
        res0 = NetCollector(HostFS(), mib_fields=MIB_FIELDS).collect_namespaces(cs, nets)
        floor = min(bench.bare_reads(floor_paths(res0.samples), 10) for _ in range(3)) / len(res0.samples)
        print(f"floor: bare reads of the files collected, {floor * 1e6:.0f} µs per namespace\n")
        print("| parser | workers | CPU per namespace | ÷ floor | wall per collection | namespaces |")
        print("|---|---:|---:|---:|---:|---:|")
        parsers = [fastproc.PYTHON] + ([fastproc.C] if fastproc.C is not None else [])
        for parser in parsers:
            for workers in (1, 2):
                col = NetCollector(HostFS(), mib_fields=MIB_FIELDS, workers=workers, parser=parser)
                res = col.collect_namespaces(cs, nets)  # warm: the ns-link memo, the route cache
                best = (float("inf"), float("inf"))
                for _ in range(3):
                    t0, w0 = time.process_time(), time.perf_counter()
                    for _ in range(10):
                        res = col.collect_namespaces(cs, nets)
                    best = min(best, ((time.process_time() - t0) / 10, (time.perf_counter() - w0) / 10))
                cpu, wall = best
                k = len(res.samples)
                print(
                    f"| {parser.name} | {workers} | {cpu / k * 1e6:.0f} µs | {cpu / k / floor:.2f}x "
                    f"| {wall * 1e3:.1f} ms | {k} |"
                )
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
