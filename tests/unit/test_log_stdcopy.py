"""The stdcopy demultiplexer and the API's timestamp prefix (pure)."""

from __future__ import annotations

import struct

import pytest

from agent.docker.stdcopy import MAX_FRAME, FramingError, StdcopyDecoder, since_param, split_timestamp
from agent.docker.timefmt import parse_time


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload


def test_frames_split_anywhere() -> None:
    wire = frame(1, b"2026-11-23T08:19:30.000000001Z out\n") + frame(
        2, b"2026-11-23T08:19:30.000000002Z err\n"
    )
    wire += frame(1, b"")  # an empty frame is legal
    for step in (1, 3, 8, 9, len(wire)):
        d = StdcopyDecoder()
        out = []
        for i in range(0, len(wire), step):
            out += d.feed(wire[i : i + step])
        assert out == [
            ("stdout", b"2026-11-23T08:19:30.000000001Z out\n"),
            ("stderr", b"2026-11-23T08:19:30.000000002Z err\n"),
            ("stdout", b""),
        ]
        assert d.pending == 0


def test_bad_header_and_huge_frame_are_errors() -> None:
    with pytest.raises(FramingError):
        StdcopyDecoder().feed(b"2026-11-23T08:19:30Z raw tty text\n")
    with pytest.raises(FramingError):
        StdcopyDecoder().feed(struct.pack(">BxxxI", 1, MAX_FRAME + 1))


def test_timestamp_prefix() -> None:
    ts, msg, complete = split_timestamp(b"2026-11-23T08:19:30.123456789Z hello world\n")
    assert (ts, msg, complete) == (parse_time("2026-11-23T08:19:30.123456789Z"), b"hello world", True)
    ts, msg, complete = split_timestamp(b"2026-11-23T08:19:30.123456789Z " + b"x" * 16384)
    assert not complete and msg == b"x" * 16384


def test_since_keeps_nanoseconds() -> None:
    assert since_param(1795422222_000000007) == "1795422222.000000007"
