"""json-file parsing from lines captured from a real dockerd (tests/data/logs/sample-json.log).

The sample container printed: hello (stdout), to-stderr (stderr), escapes and HTML characters,
UTF-8, invalid UTF-8 (\\xff\\xfe), control bytes, CRLF, an empty line, a 40,000-byte line (three 16 KiB
chunks in the file) and a last line without newline.
"""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from agent.logs.jsonfile import (
    FINGERPRINT_MAX,
    MAX_RAW_LINE,
    CorruptLine,
    Entry,
    LineSplitter,
    fingerprint,
    parse_line,
    parse_time,
)
from agent.logs.partial import Joiner

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "logs" / "sample-json.log"


def entries() -> list[Entry]:
    return [parse_line(raw) for raw in SAMPLE.read_bytes().splitlines()]


def test_parse_captured_lines() -> None:
    es = entries()
    assert [(e.stream, e.data, e.complete) for e in es[:8]] == [
        ("stderr", b"to-stderr", True),
        ("stdout", b"hello", True),
        ("stdout", b'tab\there "quoted" <html> & back\\slash', True),
        ("stdout", "utf8 é€ ok".encode(), True),
        # dockerd wrote each invalid byte as the escape \ufffd; it comes back as an invalid byte
        ("stdout", b"bad \xff\xff utf8", True),
        ("stdout", b"ctl \x01\x02\x1b[31m red", True),
        ("stdout", b"crlf line\r", True),  # the copier strips only the \n
        ("stdout", b"", True),
    ]
    chunks = es[8:11]
    assert [len(e.data) for e in chunks] == [16384, 16384, 40000 - 2 * 16384]
    assert [e.complete for e in chunks] == [False, False, True]
    # Every chunk carries the first chunk's time (copier.go).
    assert len({e.time_ns for e in chunks}) == 1
    assert es[11].data == b"no newline at end" and not es[11].complete
    times = [e.time_ns for e in es]
    assert all(t > 1_700_000_000 * 10**9 for t in times)


def test_rejoin_captured_chunks() -> None:
    j: Joiner[int] = Joiner()
    out = []
    for i, e in enumerate(entries()):
        out += j.feed(e.stream, e.time_ns, e.data, e.complete, i, i + 1, f"seed{i}")
    lines = [o.line for o in out]
    assert lines[8] == b"a" * 40000 and out[8].partial is None and out[8].pos == 11
    assert len(out) == 9  # the unterminated last chunk waits for its end...
    flushed = j.flush(force=True, end=12)
    assert [(o.line, o.partial.last if o.partial else None) for o in flushed] == [
        (b"no newline at end", False)
    ]


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2026-11-23T08:19:30.744535032Z", 744535032),
        ("2026-11-23T08:19:30.74470478Z", 744704780),  # trailing zero trimmed
        ("2026-11-23T08:19:30.1Z", 100000000),
        ("2026-11-23T08:19:30Z", 0),  # RFC3339Nano drops a zero fraction with its dot
    ],
)
def test_rfc3339nano_any_fraction_digits(text: str, ns: int) -> None:
    base = calendar.timegm((2026, 11, 23, 8, 19, 30, 0, 0, 0)) * 10**9
    assert parse_time(text) == base + ns


def test_time_with_offset() -> None:
    assert parse_time("2026-11-23T09:19:30.5+01:00") == parse_time("2026-11-23T08:19:30.5Z")


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage",
        b'{"log":"x\\n","stream":"stdout"}',  # no time
        b'{"log":"x\\n","stream":"stdout","time":"yesterday"}',
        b'{"log":"x\\n","stream":"stdout","time":"2026-13-01T08:19:30.1Z"}',  # month 13
        b'{"log":"x\\n","stream":"stdout","time":"2026-11-23T08:19:3"}',
        b'{"log":"x\\n","stream":"stdout","time":"2026-11-23T08:19:30.1234567890Z"}',  # 10 digits
        b'{"log":"x\\n","stream":"stdout","time":"2026-11-23T08:19:30.1Z"',  # truncated
        b'{"log":"\xff\xfe","stream":"stdout","time":"2026-11-23T08:19:30.1Z"}',  # invalid UTF-8
        b'{"log":7,"stream":"stdout","time":"2026-11-23T08:19:30.1Z"}',
        b"[1,2,3]",
        b"\x00\x01\x02binary\x89PNG",
    ],
)
def test_corrupt_lines_raise(raw: bytes) -> None:
    with pytest.raises(CorruptLine):
        parse_line(raw)


def test_splitter_offsets_and_partial_reads() -> None:
    data = SAMPLE.read_bytes()
    s = LineSplitter()
    got = []
    for i in range(0, len(data), 777):  # arbitrary read boundaries
        got += s.feed(data[i : i + 777])
    assert [raw for raw, _ in got] == data.splitlines()
    ends = [end for _, end in got]
    assert ends[-1] == len(data)
    assert all(data[e - 1 : e] == b"\n" for e in ends)
    assert s.pending == 0


def test_splitter_skips_oversized_line_and_resyncs() -> None:
    s = LineSplitter(offset=100)
    out = s.feed(b"a" * (MAX_RAW_LINE + 10))
    assert out == [] and s.oversized == 1
    out = s.feed(b"tail-of-huge\nnext\n")
    assert out == [(b"next", 100 + MAX_RAW_LINE + 10 + len(b"tail-of-huge\nnext\n"))]


def test_fingerprint_is_first_line() -> None:
    assert fingerprint(b"") == ""
    assert fingerprint(b"half a line") == ""
    a = fingerprint(b'{"log":"a\\n"}\nmore')
    assert a == fingerprint(b'{"log":"a\\n"}\nother stuff') != fingerprint(b'{"log":"b\\n"}\n')
    long = b"x" * FINGERPRINT_MAX
    assert fingerprint(long) == fingerprint(long + b"yyy") != ""
