"""Benchmark: our fluentd sink vs dockerd's own fluentd driver, into the same Forward receiver.

    python bench/fluentd_sink.py [--lines 200000] [--batch 1000] [--repeat 3]

The receiver (tests/peers/forward.py, counting only) runs in its own process, so neither side pays
for decoding. Ours: N prepared records through FluentdSink.send() in batches; CPU is this process's
CPU time. dockerd: a busybox container running `seq N` with `--log-driver fluentd`, kept alive
after `seq` (an exiting container gives dockerd's copier only 10 s to drain, then the logger is
closed and the rest is dropped); it is timed from the first line at the receiver (so `docker run`
and the container's start are left out), and CPU is dockerd's own utime+stime from /proc over the
same span. Both end when the receiver holds all N lines. Uses the tests' engine.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from agent.docker.models import Container  # noqa: E402
from agent.logs.record import LogRecord  # noqa: E402
from exporters.sinks.base import Outcome  # noqa: E402
from exporters.sinks.fluentd import FluentdSink  # noqa: E402
from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine  # noqa: E402
from tests.support.peers.forward import ForwardReceiver  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


# --- the receiver, in its own process ----------------------------------------------------------------
def _receiver_main(port: Any, count: Any, reset: Any, stop: Any) -> None:
    async def run() -> None:
        async with ForwardReceiver(keep_events=False) as rx:
            port.value = rx.port
            while not stop.is_set():
                if reset.is_set():
                    rx.count = 0
                    reset.clear()
                count.value = rx.count
                await asyncio.sleep(0.002)

    asyncio.run(run())


class Receiver:
    def __init__(self) -> None:
        self.port, self.count = mp.Value("i", 0), mp.Value("q", 0)
        self.reset_ev, self.stop_ev = mp.Event(), mp.Event()
        self.proc = mp.Process(
            target=_receiver_main, args=(self.port, self.count, self.reset_ev, self.stop_ev), daemon=True
        )

    def __enter__(self) -> Receiver:
        self.proc.start()
        deadline = time.monotonic() + 10
        while not self.port.value:
            if time.monotonic() > deadline:
                raise TimeoutError("receiver did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_ev.set()
        self.proc.join(5)

    def reset(self) -> None:
        self.reset_ev.set()
        deadline = time.monotonic() + 5
        while self.reset_ev.is_set() or self.count.value:
            if time.monotonic() > deadline:
                raise TimeoutError("receiver did not reset")
            time.sleep(0.001)

    def wait(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count.value < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver has {self.count.value} of {n} lines")
            time.sleep(0.001)


# --- the two sides ----------------------------------------------------------------------------------------
def ours(rx: Receiver, lines: int, batch: int, opts: dict[str, str]) -> tuple[float, float]:
    c = Container(
        id="b" * 64, name="bench", image="busybox", image_id="sha256:" + "0" * 64, pid=1, network_mode=""
    )
    t0 = time.time_ns()
    recs = [LogRecord(c, "stdout", t0 + i, b"%d" % i) for i in range(1, lines + 1)]
    batches = [recs[i : i + batch] for i in range(0, lines, batch)]
    sink = FluentdSink({"fluentd-address": f"tcp://127.0.0.1:{rx.port.value}", **opts})

    async def run() -> None:
        await sink.open()
        for b in batches:
            if await sink.send(b) is not Outcome.OK:
                raise RuntimeError("send did not return OK")
        await sink.close()

    rx.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    cpu = time.process_time() - cpu  # the receiver waits below cost us nothing measurable
    rx.wait(lines, 120)
    return time.perf_counter() - wall, cpu


def dockerd_cpu(eng: Engine) -> float:
    pid = int((eng.root / "dockerd.pid").read_text())
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime


def dockerd(rx: Receiver, eng: Engine, lines: int, opts: list[str]) -> tuple[float, float]:
    """Timed from the first line at the receiver, so `docker run` and container start are excluded."""
    rx.reset()
    args = ["--log-driver", "fluentd", "--log-opt", f"fluentd-address=tcp://127.0.0.1:{rx.port.value}", *opts]
    start = threading.Thread(
        target=eng.run, args=(*args, BUSYBOX_IMAGE, "sh", "-c", f"seq {lines}; exec sleep 3600")
    )
    start.start()
    rx.wait(1, 60)
    cpu0, wall, seen = dockerd_cpu(eng), time.perf_counter(), rx.count.value
    rx.wait(lines, 300)
    wall = time.perf_counter() - wall
    cpu = dockerd_cpu(eng) - cpu0
    start.join()
    eng.cleanup()
    return wall * lines / (lines - seen), cpu * lines / (lines - seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000, help="records per send() for our sink")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown")
    args = ap.parse_args()
    n = args.lines

    rows: list[tuple[str, Callable[[], tuple[float, float]]]] = []
    with test_engine() as eng, Receiver() as rx:
        for name, opts in (
            ("dockwatch PackedForward", {}),
            ("dockwatch PackedForward + ack", {"fluentd-request-ack": "true"}),
            (
                "dockwatch CompressedPackedForward + ack",
                {"fluentd-request-ack": "true", "fluentd-compress": "gzip"},
            ),
            ("dockwatch Message mode (Docker's format)", {"fluentd-mode": "Message"}),
        ):
            rows.append((name, functools.partial(ours, rx, n, args.batch, opts)))
        for name, dopts in (
            ("dockerd fluentd driver", []),
            ("dockerd fluentd driver, cache-disabled", ["--log-opt", "cache-disabled=true"]),
            ("dockerd fluentd driver + ack, cache-disabled",
             ["--log-opt", "cache-disabled=true", "--log-opt", "fluentd-request-ack=true"]),
        ):  # fmt: skip
            rows.append((name, functools.partial(dockerd, rx, eng, n, dopts)))

        results: list[tuple[str, float, float]] = []
        for name, fn in rows:
            runs = [fn() for _ in range(args.repeat)]
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            results.append((name, n / wall, cpu * 100_000 / n))
            print(f"  {name}: {n / wall:,.0f} lines/s, {cpu * 100_000 / n:.3f} CPU-s/100k", file=sys.stderr)

    base = next(r for r in results if r[0] == "dockerd fluentd driver")
    print(f"\n{n:,} lines per run, median of {args.repeat}; our sink sends batches of {args.batch}\n")
    print("| path | lines/s | CPU s per 100k lines | lines/s vs dockerd |")
    print("|---|---:|---:|---:|")
    for name, rate, cpu100k in results:
        print(f"| {name} | {rate:,.0f} | {cpu100k:.3f} | {rate / base[1]:.1f}x |")


if __name__ == "__main__":
    main()
