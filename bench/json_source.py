"""Benchmark: candidates for the json-file source's parse, block of Docker's lines → LogRecords.

    python bench/json_source.py [--lines 200000] [--repeat 5]

A file of N lines in dockerd's exact layout (`{"log":"<n>\\n","stream":"stdout","time":"<RFC3339Nano>"}`,
the fraction's trailing zeros trimmed as Go does) is cut into the 256 KiB blocks the source reads;
each candidate turns every block into LogRecords (stream, time in ns, line without its newline).
CPU time of this process, best of --repeat, per line:

- per line, json-free: `jsonfile.parse_fields` (C scanstring for `log`, one regex for the rest),
  one LogRecord each: the source's path for blocks with escapes or foreign lines;
- per line, orjson: `orjson.loads` into a dict, then the time parsed from its string;
- block, msgspec: `msgspec.json.Decoder(Struct).decode_lines` over the whole block, then the time;
- block, regex rows: `jsonfile.parse_block` (one regex `findall` per block), then per row;
- block, columns: `parse_block`, then columns through C maps (`tail.FileTail._consume_plain`).

orjson and msgspec are measured only when installed (neither is a dependency).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from itertools import accumulate, repeat
from operator import add, itemgetter, methodcaller, mul
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from agent.docker.models import Container  # noqa: E402
from agent.logs.jsonfile import ROW_EPOCH, parse_block, parse_fields, parse_time, row_time  # noqa: E402
from agent.logs.record import LogRecord  # noqa: E402

C = Container(id="ab" * 32, name="x", image="", image_id="", pid=1, network_mode="", log_driver="json-file")
STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}


def make_blocks(n: int) -> list[bytes]:
    t = 1_795_000_000 * 10**9
    out = bytearray()
    for i in range(n):
        t += 4537
        sec, ns = divmod(t, 10**9)
        frac = f".{ns:09d}".rstrip("0") if ns else ""
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + frac + "Z"
        out += b'{"log":"%d\\n","stream":"stdout","time":"%s"}\n' % (i, ts.encode())
    data = bytes(out)
    blocks, rest = [], b""
    for i in range(0, len(data), 256 * 1024):
        chunk = rest + data[i : i + 256 * 1024]
        cut = chunk.rfind(b"\n") + 1
        blocks.append(chunk[:cut])
        rest = chunk[cut:]
    return blocks


def per_line(blocks: list[bytes]) -> int:
    n = 0
    for b in blocks:
        recs = []
        for raw in b.split(b"\n")[:-1]:
            stream, ns, line, _ = parse_fields(raw)
            recs.append(LogRecord(C, stream, ns, line))
        n += len(recs)
    return n


def per_line_orjson(blocks: list[bytes]) -> int:
    import orjson

    n = 0
    for b in blocks:
        recs = []
        for raw in b.split(b"\n")[:-1]:
            d = orjson.loads(raw)
            log = d["log"].encode()
            line = log[:-1] if log[-1:] == b"\n" else log
            recs.append(LogRecord(C, d["stream"], parse_time(d["time"]), line))
        n += len(recs)
    return n


def block_msgspec(blocks: list[bytes]) -> int:
    import msgspec

    # Any where msgspec is not installed (it is no dependency); typed where it is.
    class Entry(msgspec.Struct):  # type: ignore[misc,unused-ignore]
        log: str
        stream: str
        time: str

    dec = msgspec.json.Decoder(Entry)
    n = 0
    for b in blocks:
        recs = []
        for e in dec.decode_lines(b):
            log = e.log.encode()
            recs.append(LogRecord(C, e.stream, parse_time(e.time), log[:-1] if log[-1:] == b"\n" else log))
        n += len(recs)
    return n


def block_rows(blocks: list[bytes]) -> int:
    n = 0
    for b in blocks:
        rows = parse_block(b)
        assert rows is not None
        recs = [LogRecord(C, STREAMS[s], row_time(h, f), body) for _, body, _, s, h, f in rows]
        n += len(recs)
    return n


_BODY, _STREAM, _HEAD, _FRAC = (itemgetter(k) for k in (1, 3, 4, 5))
_PAD9 = methodcaller("ljust", 9, b"0")


def block_columns(blocks: list[bytes]) -> int:
    n = 0
    for b in blocks:
        rows = parse_block(b)
        assert rows is not None
        heads = list(map(_HEAD, rows))
        for h in set(heads).difference(ROW_EPOCH):
            row_time(h, b"")
        secs = map(ROW_EPOCH.__getitem__, heads)
        times = map(add, map(mul, secs, repeat(1_000_000_000)), map(int, map(_PAD9, map(_FRAC, rows))))
        bodies = list(map(_BODY, rows))
        recs = list(map(LogRecord, repeat(C), map(STREAMS.__getitem__, map(_STREAM, rows)), times, bodies))
        list(accumulate(map(len, bodies)))
        n += len(recs)
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    blocks = make_blocks(a.lines)
    cands: list[tuple[str, Callable[[list[bytes]], int]]] = [
        ("per line: parse_fields (scanstring + regex)", per_line),
        ("per line: orjson.loads", per_line_orjson),
        ("block: msgspec decode_lines", block_msgspec),
        ("block: parse_block regex, then per row", block_rows),
        ("block: parse_block regex, then columns (the source)", block_columns),
    ]
    print(f"{a.lines:,} lines in {len(blocks)} blocks of 256 KiB; CPU per line, best of {a.repeat}\n")
    print("| candidate | µs per line | lines per CPU-s |")
    print("|---|---:|---:|")
    for label, fn in cands:
        try:
            best = float("inf")
            for _ in range(a.repeat):
                t0 = time.process_time()
                got = fn(blocks)
                best = min(best, time.process_time() - t0)
            assert got == a.lines, (label, got)
        except ImportError as exc:
            print(f"| {label} | not installed ({exc.name}) | |")
            continue
        print(f"| {label} | {best / a.lines * 1e6:.2f} | {a.lines / best:,.0f} |")


if __name__ == "__main__":
    main()
