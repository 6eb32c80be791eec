"""The sink contract the log core owns: what a sink is, what it answers, why records are dropped,
and the stats snapshot the pipeline hands to whoever renders them (exporters/prometheus).

    records ──► Sink.send(batch) ──► Outcome.OK     the checkpoint advances past the batch
                                 └─► Outcome.RETRY  same batch again after backoff (peer down, timeout);
                                                    why in `last_error`: the runner logs it, not the sink
                                 └─► Outcome.FAIL   the batch can never go (e.g. rejected): counted, skipped

Sinks live in exporters/ (agent/ does not import them) and implement `Sink`; the core retries,
batches and counts (fluent-bit's FLB_OK / FLB_RETRY / FLB_ERROR, Vector's component spec).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.logs.record import LogRecord


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"


class Sink(Protocol):
    """What the core needs of a sink. Optional attributes it reads with getattr: `raw_chunks`
    (True: Docker's 16 KiB chunks as they came, whatever `logs.join-partial` says) and
    `last_error` (why the last send() returned RETRY)."""

    name: str

    async def open(self) -> None: ...

    async def send(self, batch: Sequence[LogRecord]) -> Outcome: ...

    async def close(self) -> None: ...


class DropReason(enum.StrEnum):
    """Every reason a record is never delivered: the `reason` label of records_dropped_total."""

    CORRUPT = "corrupt"  # an unparsable json-file line or API frame
    REJECTED = "rejected"  # the sink answered FAIL
    ROTATED = "rotated"  # let go unread over the held-file bound (agent/logs/README.md "Rotation")
    EVENTS_OVERFLOW = "events_overflow"  # docker events: queue full (sink down), or unsent at exit


# Reported (at 0 until it happens) for every sink; EVENTS_OVERFLOW only for sinks that ship events.
LOG_DROP_REASONS = (DropReason.CORRUPT, DropReason.REJECTED, DropReason.ROTATED)


@dataclass(frozen=True, slots=True)
class SinkSnapshot:
    """One sink's numbers at one moment: plain values, safe to read in a scrape thread."""

    name: str
    sent: int
    bytes: int
    retries: int
    dropped: Mapping[str, int]  # every reason that applies to this sink, 0 included
    files_missed: int
    bytes_missed: int
    backlog_bytes: int
    lag: float
    last_success: float
    containers: int  # tails of this sink now


@dataclass(frozen=True, slots=True)
class PipelineSnapshot:
    sinks: tuple[SinkSnapshot, ...]
    unreadable: Mapping[str, int]  # reason → containers whose logs cannot be read


class Snapshotter(Protocol):
    def snapshot(self) -> PipelineSnapshot: ...
