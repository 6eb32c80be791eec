"""The json-file sink against dockerd's own json-file driver, byte for byte.

busybox containers print lines that exercise every escaping rule into dockerd's `<id>-json.log`;
each of dockerd's entries becomes a LogRecord (dockerd's time, stream and chunking, the raw bytes the
test printed), goes through our sink, and our file must equal dockerd's file exactly. Rotation is
checked the same way: dockerd's retained files (`.2.gz`, `.1.gz`, live) against ours.
"""

from __future__ import annotations

import asyncio
import codecs
import gzip
import json
import os
import struct
from pathlib import Path

import pytest

from agent.docker.models import Container
from agent.logs.record import LogRecord, Partial
from exporters.sinks.base import Outcome
from exporters.sinks.json_file import JsonFileSink
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import container, wait_for

CHUNK = 16384  # dockerd's copier buffer: longer lines arrive as partial chunks


def _go_fffd(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd", exc.start + 1


codecs.register_error("test-go-fffd", _go_fffd)


def go_text(raw: bytes) -> str:
    """What Go's decoding of raw bytes yields: one U+FFFD per invalid byte."""
    return raw.decode("utf-8", "test-go-fffd")


def printf_script(lines: list[tuple[str, bytes]]) -> str:
    """sh printing each (stream, bytes) exactly: any byte but [A-Za-z0-9] as a printf octal escape."""
    cmds = []
    for stream, data in lines:
        fmt = "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\{b:03o}" for b in data)
        cmds.append(f"printf '{fmt}'" + (" >&2" if stream == "stderr" else ""))
    return "\n".join(cmds)


ESCAPES: list[tuple[str, bytes]] = [
    ("stdout", b"plain ascii line\n"),
    ("stdout", b'html <b>&amp;</b> "quoted" back\\slash\n'),
    ("stderr", b"tab\there\tand\rcarriage return\n"),
    ("stdout", b"controls \x00\x01\x07\x08\x0b\x0c\x1b[31m\x1f\x7f end\n"),
    ("stdout", "utf-8 café ñ 日本語 🐳 \u2028 and \u2029 done\n".encode()),
    ("stderr", b"invalid \xff \xfe \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf ok\n"),
    ("stdout", "a real replacement char \ufffd stays raw\n".encode()),
    ("stdout", b"\n"),  # an empty line: dockerd writes {"log":"\n",...}
    ("stdout", b"x" * (2 * CHUNK + 1000) + b"\n"),  # split by dockerd into three chunks
    ("stderr", b"<" * CHUNK + b"\n"),  # exactly one buffer, then the newline alone
    ("stdout", b"trailing chunk without newline"),  # stays a non-last partial forever
]


def parse_time_ns(value: str) -> int:
    """RFC3339Nano (UTC, Z) → ns since the epoch."""
    from datetime import UTC, datetime

    head, _, frac = value.rstrip("Z").partition(".")
    secs = int(datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return secs * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def records_from_dockerd(
    entries: list[dict[str, str]], container: Container, printed: dict[str, bytes]
) -> list[LogRecord]:
    """dockerd's entries → LogRecords carrying the raw bytes the container printed."""
    cursor = dict.fromkeys(printed, 0)
    partial_of: dict[str, tuple[str, int]] = {}  # stream -> (partial id, last ordinal)
    out: list[LogRecord] = []
    for n, e in enumerate(entries):
        stream, text = e["stream"], e.get("log", "")
        raw = printed[stream]
        pos = cursor[stream]
        if text.endswith("\n"):
            end = raw.index(b"\n", pos)
            line, cursor[stream] = raw[pos:end], end + 1
            assert go_text(line + b"\n") == text, f"entry {n}: dockerd logged something else"
        else:
            line = raw[pos : pos + CHUNK]
            cursor[stream] = pos + len(line)
            assert go_text(line) == text, f"entry {n}: chunk differs"
        pid, ordinal = partial_of.get(stream, (f"{n:064x}", 0))
        partial = None
        if ordinal or not text.endswith("\n"):
            partial = Partial(pid, ordinal + 1, text.endswith("\n"))
            if partial.last:
                partial_of.pop(stream, None)
            else:
                partial_of[stream] = (pid, ordinal + 1)
        out.append(LogRecord(container, stream, parse_time_ns(e["time"]), line, partial))
    assert cursor == {s: len(b) for s, b in printed.items()}, "every printed byte is in dockerd's file"
    return out


def run_and_read(engine: Engine, lines: list[tuple[str, bytes]], *opts: str) -> tuple[Container, bytes]:
    """Run a container printing `lines` through dockerd's json-file driver; its file once complete."""
    cid = engine.run("--log-driver", "json-file", *opts, BUSYBOX_IMAGE, "sh", "-c", printf_script(lines))
    engine.docker("wait", cid)
    path = engine.root / "data" / "containers" / cid / f"{cid}-json.log"
    want = sum(data.count(b"\n") for _, data in lines) + sum(1 for _, d in lines if not d.endswith(b"\n"))

    def complete() -> bytes | None:
        data = path.read_bytes()
        ends = sum(1 for ln in data.splitlines() if json.loads(ln).get("log", "").endswith("\n"))
        tail = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return data if ends + (not json.loads(tail)["log"].endswith("\n")) >= want else None

    data = wait_for(complete, timeout=20, what=f"dockerd's {path.name} to hold every line")
    return Container.from_inspect(engine.inspect(cid)), data


async def through_sink(records: list[LogRecord], tmp: Path, opts: dict[str, str], batch: int = 7) -> Path:
    sink = JsonFileSink({**opts, "path": str(tmp)}, hostname=os.uname().nodename)
    try:
        for i in range(0, len(records), batch):
            assert await sink.send(records[i : i + batch]) is Outcome.OK
    finally:
        await sink.close()
    return tmp / records[0].container.id / f"{records[0].container.id}-json.log"


def printed_by_stream(lines: list[tuple[str, bytes]]) -> dict[str, bytes]:
    out = {"stdout": b"", "stderr": b""}
    for stream, data in lines:
        out[stream] += data
    return out


VARIANTS = {
    "no-options": ([], {}),
    "labels-env-tag": (
        [
            "--label",
            'app=<shop> & "co" \\ \t café \u2028',
            "--label",
            "tier=web",
            "--label",
            "APP_ENV=from-label",
            "-e",
            "APP_ENV=prod",
            "-e",
            "REGION=eu-\u65e5\u672c",
            "--log-opt",
            "labels=app,tier,APP_ENV,missing",
            "--log-opt",
            "env=APP_ENV,REGION,NOPE",
            "--log-opt",
            "tag={{.Name}}/{{.ID}}/{{.ImageName}}",
        ],
        {
            "labels": "app,tier,APP_ENV,missing",
            "env": "APP_ENV,REGION,NOPE",
            "tag": "{{.Name}}/{{.ID}}/{{.ImageName}}",
        },
    ),
    "regex": (
        [
            "--label",
            "com.example.team=<core>",
            "--label",
            "other=x",
            "-e",
            "DW_ONE=1",
            "-e",
            "DW_TWO=a&b",
            "--log-opt",
            "labels-regex=^com\\.example\\.",
            "--log-opt",
            "env-regex=^DW_",
            "--log-opt",
            "tag=static-tag",
        ],
        {"labels-regex": "^com\\.example\\.", "env-regex": "^DW_", "tag": "static-tag"},
    ),
}


@pytest.mark.docker
@pytest.mark.parametrize("variant", sorted(VARIANTS))
async def test_byte_for_byte_against_dockerd(engine: Engine, tmp_path: Path, variant: str) -> None:
    docker_opts, sink_opts = VARIANTS[variant]
    container, dockerd_bytes = run_and_read(engine, ESCAPES, *docker_opts)
    entries = [json.loads(ln) for ln in dockerd_bytes.splitlines()]
    # The test is only as strong as its input: dockerd really split, escaped and tagged.
    assert sum(1 for e in entries if not e["log"].endswith("\n")) == 4  # 2 + 1 chunks + the trailing one
    assert "\\u003c" in dockerd_bytes.decode() and "\\ufffd" in dockerd_bytes.decode()
    if sink_opts:
        assert all("attrs" in e for e in entries)
    records = records_from_dockerd(entries, container, printed_by_stream(ESCAPES))
    ours = await through_sink(records, tmp_path, sink_opts)
    assert ours.read_bytes() == dockerd_bytes
    assert ours.stat().st_mode & 0o777 == 0o640


def read_retained(base: Path) -> dict[str, bytes]:
    """File name (id replaced by "ID") → content (decompressed) of the live file and its rotations."""
    out = {}
    for p in sorted(base.parent.glob(base.name + "*")):
        data = p.read_bytes()
        out[p.name.replace(base.parent.name, "ID")] = gzip.decompress(data) if p.suffix == ".gz" else data
    return out


def gzip_header(path: Path) -> tuple[bytes, bytes]:
    """The fixed 10 header bytes and the Extra field of a gzip file (Go writes FEXTRA raw)."""
    data = path.read_bytes()
    assert data[3] & 0x04, "FEXTRA set"
    (xlen,) = struct.unpack("<H", data[10:12])
    return data[:10], data[12 : 12 + xlen]


@pytest.mark.docker
async def test_rotation_against_dockerd(engine: Engine, tmp_path: Path) -> None:
    n = 2000
    opts = {"max-size": "2k", "max-file": "3", "compress": "true"}
    cid = engine.run(
        "--log-driver",
        "json-file",
        *[a for k, v in opts.items() for a in ("--log-opt", f"{k}={v}")],
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        f"i=1; while [ $i -le {n} ]; do printf 'line %05d of the rotation test\\n' $i; i=$((i+1)); done",
    )
    engine.docker("wait", cid)
    base = engine.root / "data" / "containers" / cid / f"{cid}-json.log"

    def settled() -> bool:
        names = {p.name for p in base.parent.glob(base.name + "*")}
        last = base.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        # compression finished (no plain .1) and the last line is in
        return f"{cid}-json.log.1" not in names and f"{n:05d} of" in json.loads(last)["log"]

    wait_for(settled, timeout=30, what="dockerd to finish writing and compressing")
    theirs = read_retained(base)
    assert sorted(theirs) == ["ID-json.log", "ID-json.log.1.gz", "ID-json.log.2.gz"]

    # Lines in the retained files, oldest first, are consecutive and end with the last one printed.
    lines = [
        json.loads(ln)
        for name in ("ID-json.log.2.gz", "ID-json.log.1.gz", "ID-json.log")
        for ln in theirs[name].splitlines()
    ]
    nums = [int(e["log"].split()[1]) for e in lines]
    assert nums == list(range(nums[0], n + 1))

    container = Container.from_inspect(engine.inspect(cid))
    records = [
        LogRecord(container, e["stream"], parse_time_ns(e["time"]), e["log"].rstrip("\n").encode())
        for e in lines
    ]
    ours_base = await through_sink(records, tmp_path, opts)
    ours = read_retained(ours_base)
    assert ours == theirs  # same names, same rotation points, same bytes
    for gz in ("ID-json.log.1.gz", "ID-json.log.2.gz"):
        mine = gzip_header(ours_base.parent / gz.replace("ID", cid))
        dockerd = gzip_header(base.parent / gz.replace("ID", cid))
        assert mine == dockerd
        last_line = json.loads(theirs[gz].splitlines()[-1])
        assert json.loads(dockerd[1]) == {"lastTime": last_line["time"]}


async def test_rotation_keeps_every_line_in_retained_files(tmp_path: Path) -> None:
    """Our own rotation with a known input: names, no loss across files, sizes, Extra, max-file=1."""
    c = container(1, "rot")
    t0 = 1_763_884_800_000_000_000
    recs = [LogRecord(c, "stdout", t0 + i * 1000, b"message %04d" % i) for i in range(1000)]
    base = await through_sink(
        recs, tmp_path / "a", {"max-size": "1k", "max-file": "3", "compress": "true"}, batch=64
    )
    names = sorted(p.name for p in base.parent.iterdir())
    assert names == [base.name, base.name + ".1.gz", base.name + ".2.gz"]
    content = [gzip.decompress((base.parent / f"{base.name}.{i}.gz").read_bytes()) for i in (2, 1)] + [
        base.read_bytes()
    ]
    got = [json.loads(ln)["log"] for part in content for ln in part.splitlines()]
    first = int(got[0].split()[1])
    assert got == [f"message {i:04d}\n" for i in range(first, 1000)]
    for part in content[:-1]:
        lines = part.splitlines(keepends=True)
        # dockerd's rule: the size check runs before each write, so a file overshoots by its last line only
        assert sum(map(len, lines[:-1])) < 1000 <= sum(map(len, lines))
    _, extra = gzip_header(base.parent / f"{base.name}.1.gz")
    assert json.loads(extra)["lastTime"] == json.loads(content[1].splitlines()[-1])["time"]

    one = await through_sink(recs, tmp_path / "b", {"max-size": "1k", "max-file": "1"}, batch=64)
    assert [p.name for p in one.parent.iterdir()] == [one.name]
    assert json.loads(one.read_bytes().splitlines()[-1])["log"] == "message 0999\n"


async def test_appends_and_keeps_counting_after_reopen(tmp_path: Path) -> None:
    """A new sink on the same directory appends and rotates on the existing size, as dockerd on restart."""
    c = container(2, "re")
    recs = [LogRecord(c, "stderr", 1_763_884_800_000_000_000 + i, b"%03d" % i) for i in range(20)]
    opts = {"max-size": "1k", "max-file": "2"}
    await through_sink(recs[:10], tmp_path, opts)
    base = await through_sink(recs[10:], tmp_path, opts)
    rotated = (base.parent / (base.name + ".1")).read_bytes().splitlines(keepends=True)
    live = base.read_bytes().splitlines(keepends=True)
    assert [json.loads(ln)["log"] for ln in rotated + live] == [f"{i:03d}\n" for i in range(20)]
    # the first sink's 10 lines counted towards max-size: rotation came at the first line past 1000 bytes
    assert len(rotated) > 10 and sum(map(len, rotated[:-1])) < 1000 <= sum(map(len, rotated))


async def test_many_containers_beyond_the_open_file_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files closed for lack of descriptors reopen where they were: appended, rotated on their real size."""
    import exporters.sinks.json_file as jf

    monkeypatch.setattr(jf, "MAX_OPEN_FILES", 2)
    cs = [container(i + 1, f"c{i}") for i in range(5)]
    t0 = 1_763_884_800_000_000_000
    recs = [LogRecord(cs[i % 5], "stdout", t0 + i, b"n=%04d" % i) for i in range(200)]
    sink = JsonFileSink({"path": str(tmp_path), "max-size": "1k", "max-file": "2"})
    for i in range(0, len(recs), 3):  # small batches touch every container in turn
        assert await sink.send(recs[i : i + 3]) is Outcome.OK
    assert len(sink._files) <= 2
    await sink.close()
    for n, c in enumerate(cs):
        base = tmp_path / c.id / f"{c.id}-json.log"
        rotated = (base.parent / (base.name + ".1")).read_bytes().splitlines(keepends=True)
        live = base.read_bytes().splitlines(keepends=True)
        got = [json.loads(ln)["log"] for ln in rotated + live]
        mine = [f"n={i:04d}\n" for i in range(n, 200, 5)]
        assert got == mine[len(mine) - len(got) :]  # the newest lines, in order, none missing
        assert sum(map(len, rotated[:-1])) < 1000 <= sum(map(len, rotated))  # rotated at the real size


async def test_unwritable_directory_is_retry_not_exception(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    c = container(3, "x")
    sink = JsonFileSink({"path": str(blocker)})
    rec = LogRecord(c, "stdout", 1_763_884_800_000_000_000, b"hello")
    assert await sink.send([rec]) is Outcome.RETRY
    blocker.unlink()
    blocker.mkdir()
    assert await sink.send([rec]) is Outcome.OK
    await sink.close()
    assert (blocker / c.id / f"{c.id}-json.log").read_bytes() == (
        b'{"log":"hello\\n","stream":"stdout","time":"2025-11-23T08:00:00Z"}\n'
    )


def test_sink_is_in_the_table() -> None:
    from exporters.sinks import SINKS

    assert SINKS["json-file"] is JsonFileSink
    assert asyncio.iscoroutinefunction(JsonFileSink.send)
