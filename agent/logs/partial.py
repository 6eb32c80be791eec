"""Rejoin Docker's 16 KiB partial chunks into lines, or pass their metadata through (pure).

Docker's copier splits a line longer than 16 KiB into chunks; every chunk carries the first chunk's
time, and only the last one ended in "\\n" (moby `daemon/logger/copier.go`). json-file keeps no
partial id or ordinal, so in pass-through mode we derive a stable id from where the line starts
(the same id after a restart). Joining is bounded: a line of up to `max_bytes` (inclusive) is one
record; a longer one goes out as pieces of at most `max_bytes` with partial metadata; a last chunk
that never comes is flushed after `flush_after`.

Positions are opaque to the joiner (a file offset, an API timestamp): each output carries the
position a checkpoint may move to once it is delivered, which never skips the start of a line
still pending on the other stream.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from agent.logs.record import Partial

P = TypeVar("P")
MAX_LINE = 1 << 20
FLUSH_AFTER = 5.0


@dataclass(slots=True)
class Out(Generic[P]):
    """One record-to-be: what the tail wraps into a LogRecord, and its commit position."""

    stream: str
    time_ns: int
    line: bytes
    partial: Partial | None
    pos: P
    chunks: int = 1  # source entries it was made of


@dataclass(slots=True)
class _Pending(Generic[P]):
    pid: str
    time_ns: int
    start: P
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    ordinal: int = 0  # chunks already emitted (pass-through, or over max_bytes)
    chunks: int = 0
    last_seen: float = 0.0
    end: P | None = None  # position after the newest chunk
    held: bytes | None = None  # hold_last mode: the newest chunk, not yet known to be the last


class Joiner(Generic[P]):
    """Rejoins chunks per stream.

    `hold_last` is for sources where the last chunk may come without its newline (the Engine API
    over Docker's local/dual-logging cache, dockerd 20.10): in pass-through mode each chunk is
    held until the next entry shows whether it was the last, and `close()` ends a line when an
    entry with another timestamp arrives (every chunk of one line carries the first's time).
    """

    def __init__(
        self,
        *,
        join: bool = True,
        max_bytes: int = MAX_LINE,
        flush_after: float = FLUSH_AFTER,
        hold_last: bool = False,
    ) -> None:
        self.join = join
        self.hold_last = hold_last
        self.max_bytes = max_bytes
        self.flush_after = flush_after
        self._pending: dict[str, _Pending[P]] = {}

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def _commit(self, stream: str, pos: P) -> P:
        # A line still open on the other stream started earlier: do not let a checkpoint pass it.
        for s, p in self._pending.items():
            if s != stream:
                return p.start
        return pos

    def feed(
        self, stream: str, time_ns: int, data: bytes, complete: bool, start: P, end: P, seed: str
    ) -> list[Out[P]]:
        """One entry; `start`/`end` are the positions before and after it, `seed` names its start."""
        p = self._pending.get(stream)
        if p is None:
            if complete:
                return [Out(stream, time_ns, data, None, self._commit(stream, end))]
            pid = hashlib.sha256(seed.encode()).hexdigest()
            p = self._pending[stream] = _Pending(pid, time_ns, start)
        p.last_seen = time.monotonic()
        p.chunks += 1
        p.end = end
        out: list[Out[P]] = []
        if not self.join and self.hold_last:
            if p.held is not None:  # a chunk came after it: it was not the last
                p.ordinal += 1
                out.append(
                    Out(
                        stream,
                        p.time_ns,
                        p.held,
                        Partial(p.pid, p.ordinal, False),
                        self._commit(stream, start),
                    )
                )
                p.held = None
            if complete:
                p.ordinal += 1
                del self._pending[stream]
                out.append(
                    Out(stream, p.time_ns, data, Partial(p.pid, p.ordinal, True), self._commit(stream, end))
                )
            else:
                p.held = data
            return out
        if not self.join:
            p.ordinal += 1
            if complete:
                del self._pending[stream]
            out.append(
                Out(stream, p.time_ns, data, Partial(p.pid, p.ordinal, complete), self._commit(stream, end))
            )
            return out
        if p.parts and p.size + len(data) > self.max_bytes:
            # Bounded memory: a line longer than max_bytes goes out in pieces of at most max_bytes
            # with one id. The limit is inclusive: a line of exactly max_bytes stays one record,
            # though its newline comes in Docker's next chunk (an empty one).
            p.ordinal += 1
            chunks, p.chunks = p.chunks - 1, 1
            piece = b"".join(p.parts)
            p.parts.clear()
            p.size = 0
            commit = self._commit(stream, start)
            p.start = start
            out.append(Out(stream, p.time_ns, piece, Partial(p.pid, p.ordinal, False), commit, chunks))
        p.parts.append(data)
        p.size += len(data)
        if complete:
            del self._pending[stream]
            line = b"".join(p.parts)
            partial = Partial(p.pid, p.ordinal + 1, True) if p.ordinal else None
            out.append(Out(stream, p.time_ns, line, partial, self._commit(stream, end), p.chunks))
        return out

    def close(self, stream: str, time_ns: int) -> list[Out[P]]:
        """End a pending line on `stream` if the next entry carries another time: its newest chunk
        was the last one, though no newline said so."""
        p = self._pending.get(stream)
        if p is None or p.time_ns == time_ns:
            return []
        del self._pending[stream]
        assert p.end is not None
        commit = self._commit(stream, p.end)
        if not self.join:
            if p.held is None:
                return []
            return [Out(stream, p.time_ns, p.held, Partial(p.pid, p.ordinal + 1, True), commit)]
        line = b"".join(p.parts)
        partial = Partial(p.pid, p.ordinal + 1, True) if p.ordinal else None
        return [Out(stream, p.time_ns, line, partial, commit, p.chunks)]

    def flush(self, now: float | None = None, end: P | None = None, force: bool = False) -> list[Out[P]]:
        """Emit lines whose last chunk is overdue (or all, with force) as unterminated partials."""
        now = time.monotonic() if now is None else now
        out: list[Out[P]] = []
        for stream, p in list(self._pending.items()):
            if not force and now - p.last_seen < self.flush_after:
                continue
            del self._pending[stream]
            if p.held is not None:  # an unterminated last chunk stays Last=false, as in Docker
                commit = self._commit(stream, end if end is not None else p.start)
                out.append(Out(stream, p.time_ns, p.held, Partial(p.pid, p.ordinal + 1, False), commit))
            if p.parts:
                commit = self._commit(stream, end if end is not None else p.start)
                out.append(
                    Out(
                        stream,
                        p.time_ns,
                        b"".join(p.parts),
                        Partial(p.pid, p.ordinal + 1, False),
                        commit,
                        p.chunks,
                    )
                )
        return out

    def reset(self) -> None:
        self._pending.clear()
