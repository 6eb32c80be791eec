"""A body as pieces: the page's parts as they are kept, written or compressed without one joined copy."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate

Piece = bytes | memoryview

SLICE = 256 * 1024


def slices(pieces: Sequence[Piece], size: int = SLICE) -> Iterator[Piece]:
    """The pieces in runs of at most `size` bytes: small ones joined (one run's copy at a time),
    big ones cut as views. A page is ~10,000 small pieces at 500 containers: a write, a drain or a
    compress call for each would cost more than the copy. The cuts are found by bisecting the
    running lengths (C loops), not by visiting each piece in Python (2 ms a scrape)."""
    ends = list(accumulate(map(len, pieces)))
    i, base = 0, 0
    while i < len(pieces):
        j = bisect_right(ends, base + size, i)  # pieces[i:j] fit in one run
        if j == i:  # pieces[i] alone is bigger than a run
            view = memoryview(pieces[i])
            for k in range(0, len(view), size):
                yield view[k : k + size]
            j = i + 1
        elif j == i + 1:
            yield pieces[i]
        else:
            yield b"".join(pieces[i:j])
        base, i = ends[j - 1], j
