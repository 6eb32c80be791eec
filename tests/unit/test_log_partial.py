"""Rejoining 16 KiB chunks, and passing their metadata through (pure)."""

from __future__ import annotations

import time

from agent.logs.partial import Joiner

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
    def run() -> list:
        j: Joiner[int] = Joiner(join=False)
        out = []
        for i, (data, last) in enumerate([(K16, False), (K16, False), (b"x", True)]):
            out += j.feed("stdout", 5, data, last, i, i + 1, "c:fp:0" if i == 0 else f"c:fp:{i}")
        return out

    a, b = run(), run()
    assert [(o.partial.ordinal, o.partial.last) for o in a] == [(1, False), (2, False), (3, True)]
    assert len({o.partial.id for o in a}) == 1 and len(a[0].partial.id) == 64
    assert [o.partial.id for o in a] == [o.partial.id for o in b]  # same id after a restart


def test_bounded_join_splits_with_metadata() -> None:
    j: Joiner[int] = Joiner(max_bytes=40000)
    out = []
    for i in range(5):
        out += j.feed("stdout", 9, K16, False, i, i + 1, f"s{i}")
    out += j.feed("stdout", 9, b"end", True, 5, 6, "s5")
    assert sum(len(o.line) for o in out) == 5 * 16384 + 3
    assert all(len(o.line) <= 40000 + 16384 for o in out)
    parts = [o.partial for o in out]
    assert all(p is not None for p in parts)
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
