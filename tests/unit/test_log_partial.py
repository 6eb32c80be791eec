"""Rejoining 16 KiB chunks, and passing their metadata through (pure)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from agent.logs.partial import Joiner, Out
from agent.logs.record import Partial
from tests.support.toolbox import present

K16 = b"k" * 16384


def test_join_interleaved_streams_and_commit_positions() -> None:
    j: Joiner[int] = Joiner()
    out = j.feed("stdout", 1, K16, False, 0, 1, "s1")
    out += j.feed("stderr", 2, b"err", True, 1, 2, "s2")  # other stream completes mid-line
    out += j.feed("stdout", 1, b"end", True, 2, 3, "s3")
    assert [(o.stream, o.line, o.partial, o.pos) for o in out] == [
        # the checkpoint after "err" must not pass the start of the open stdout line
        ("stderr", b"err", None, 0),
        ("stdout", K16 + b"end", None, 3),
    ]
    assert out[1].time_ns == 1 and out[1].chunks == 2


def test_pass_through_metadata_is_stable() -> None:
    def run() -> list[Partial]:
        j: Joiner[int] = Joiner(join=False)
        out: list[Out[int]] = []
        for i, (data, last) in enumerate([(K16, False), (K16, False), (b"x", True)]):
            out += j.feed("stdout", 5, data, last, i, i + 1, "c:fp:0" if i == 0 else f"c:fp:{i}")
        return [present(o.partial) for o in out]

    a, b = run(), run()
    assert [(p.ordinal, p.last) for p in a] == [(1, False), (2, False), (3, True)]
    assert len({p.id for p in a}) == 1 and len(a[0].id) == 64
    assert [p.id for p in a] == [p.id for p in b]  # same id after a restart


def test_bounded_join_splits_with_metadata() -> None:
    j: Joiner[int] = Joiner(max_bytes=40000)
    out = []
    for i in range(5):
        out += j.feed("stdout", 9, K16, False, i, i + 1, f"s{i}")
    out += j.feed("stdout", 9, b"end", True, 5, 6, "s5")
    assert sum(len(o.line) for o in out) == 5 * 16384 + 3
    assert all(len(o.line) <= 40000 + 16384 for o in out)
    parts = [present(o.partial) for o in out]
    assert [p.ordinal for p in parts] == list(range(1, len(parts) + 1)) and parts[-1].last
    assert len({p.id for p in parts}) == 1


def test_flush_timeout() -> None:
    j: Joiner[int] = Joiner(flush_after=5.0)
    j.feed("stdout", 1, b"no newline yet", False, 0, 1, "s")
    assert j.flush(now=0.0) == []
    import time

    out = j.flush(now=time.monotonic() + 6, end=1)
    assert len(out) == 1 and out[0].line == b"no newline yet" and out[0].partial and not out[0].partial.last
    assert not j.pending


def test_hold_last_marks_the_chunk_before_a_new_time_as_last() -> None:
    """Through the Engine API the last chunk can lack its newline: the next entry's time decides."""
    j: Joiner[int] = Joiner(join=False, hold_last=True)
    out = []
    for i, (t, data) in enumerate([(1, b"a" * 16384), (1, b"b" * 16384), (1, b"c" * 10)]):
        out += j.close("stdout", t)
        out += j.feed("stdout", t, data, False, i, i + 1, "s")
    assert [(o.line[:1], o.partial.ordinal, o.partial.last) for o in out if o.partial] == [
        (b"a", 1, False),
        (b"b", 2, False),
    ]
    out = j.close("stdout", 2) + j.feed("stdout", 2, b"next", True, 3, 4, "s")
    assert [(o.line, o.partial) for o in out][1] == (b"next", None)
    last = out[0]
    assert (
        last.line == b"c" * 10
        and last.partial is not None
        and last.partial.last
        and last.partial.ordinal == 3
    )
    assert last.time_ns == 1 and last.pos == 3


def test_hold_last_join_mode_closes_the_line_on_a_new_time() -> None:
    j: Joiner[int] = Joiner(join=True, hold_last=True)
    assert j.feed("stdout", 1, b"x" * 16384, False, 0, 1, "s") == []
    assert j.feed("stdout", 1, b"yz", False, 1, 2, "s") == []
    out = j.close("stdout", 5)
    assert [(len(o.line), o.partial, o.pos, o.time_ns) for o in out] == [(16386, None, 2, 1)]
    assert j.close("stdout", 6) == []  # nothing pending any more


def test_hold_last_unterminated_chunk_flushes_as_not_last() -> None:
    j: Joiner[int] = Joiner(join=False, hold_last=True, flush_after=5.0)
    assert j.feed("stderr", 1, b"tail", False, 0, 1, "s") == []
    out = j.flush(now=time.monotonic() + 10)
    assert [(o.line, o.partial.last) for o in out if o.partial] == [(b"tail", False)]


# --- the 1 MiB limit, with the chunks Docker's copier makes (moby daemon/logger/copier.go) -------------
MIB = 1 << 20
CHUNK = 16384


def docker_chunks(n: int) -> list[tuple[bytes, bool]]:
    """A line of `n` bytes and its newline as Docker's copier cuts it: full 16 KiB buffers without a
    newline are chunks; the rest, up to the newline, is the last chunk (empty when n is a multiple of
    16 KiB). (chunk, ended in a newline), as json-file stores them."""
    line = bytes(i % 251 for i in range(n))
    full = n // CHUNK
    return [(line[i * CHUNK : (i + 1) * CHUNK], False) for i in range(full)] + [(line[full * CHUNK :], True)]


def test_docker_chunk_shapes_at_the_limit() -> None:
    assert [len(c) for c, _ in docker_chunks(MIB - 1)] == [CHUNK] * 63 + [CHUNK - 1]
    assert [len(c) for c, _ in docker_chunks(MIB)] == [CHUNK] * 64 + [0]
    assert [len(c) for c, _ in docker_chunks(MIB + 1)] == [CHUNK] * 64 + [1]


def feed_file_shape(j: Joiner[int], n: int) -> list[Out[int]]:
    out = []
    for i, (data, complete) in enumerate(docker_chunks(n)):
        out += j.feed("stdout", 7, data, complete, i, i + 1, f"c:{i}")
    return out


def feed_api_shape(j: Joiner[int], n: int) -> list[Out[int]]:
    """Through the Engine API no chunk of a split line ends in a newline, not even the last: the next
    entry, with another time, ends the line."""
    out = []
    chunks = docker_chunks(n)
    for i, (data, _) in enumerate(chunks):
        out += j.close("stdout", 7)
        out += j.feed("stdout", 7, data, False, i, i + 1, f"c:{i}")
    out += j.close("stdout", 8)
    return out


@pytest.mark.parametrize("shape", [feed_file_shape, feed_api_shape], ids=["json-file", "api"])
def test_one_mib_limit_is_inclusive(shape: Callable[[Joiner[int], int], list[Out[int]]]) -> None:
    for n in (MIB - 1, MIB):
        out = shape(Joiner(hold_last=shape is feed_api_shape), n)
        assert [(len(o.line), o.partial) for o in out] == [(n, None)], n
        assert out[0].line == bytes(i % 251 for i in range(n))
    out = shape(Joiner(hold_last=shape is feed_api_shape), MIB + 1)
    assert [(len(o.line), o.partial.ordinal, o.partial.last) for o in out if o.partial] == [
        (MIB, 1, False),
        (1, 2, True),
    ]
    assert len(out) == 2 and present(out[0].partial).id == present(out[1].partial).id
    assert out[0].line + out[1].line == bytes(i % 251 for i in range(MIB + 1))
    assert out[0].pos == 64  # the first piece commits up to the chunk that starts the second


def test_pass_through_keeps_dockers_chunks_at_the_limit() -> None:
    for n, count in ((MIB - 1, 64), (MIB, 65), (MIB + 1, 65)):
        out = feed_file_shape(Joiner(join=False), n)
        assert [len(o.line) for o in out] == [len(c) for c, _ in docker_chunks(n)]
        parts = [present(o.partial) for o in out]
        assert [p.ordinal for p in parts] == list(range(1, count + 1))
        assert [p.last for p in parts] == [False] * (count - 1) + [True]
