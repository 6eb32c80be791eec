"""The one record type between log sources and sinks."""

from __future__ import annotations

from dataclasses import dataclass

from agent.docker.models import Container


@dataclass(frozen=True, slots=True)
class Partial:
    """Docker's partial-message metadata for lines split at 16 KiB (PartialLogMetaData)."""

    id: str  # 64 hex, shared by every chunk of one line
    ordinal: int  # 1-based
    last: bool  # True on the chunk that ended with the newline


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, which cost
# about 1 us of the json-file source's ~3 us per line (bench/RESULTS_logs.md). Treat it as immutable.
@dataclass(slots=True)
class LogRecord:
    """One log line (or one 16 KiB chunk of a longer line) of one container.

    `line` never carries the trailing newline: a record with `partial is None` is a complete
    line that ended in "\\n"; a chunk of a split line has `partial` set, and only the chunk with
    `partial.last` ended in "\\n". Sinks that reproduce Docker's formats put the newline back
    where Docker's driver would.
    """

    container: Container
    stream: str  # "stdout" | "stderr"
    time_ns: int  # the container's own timestamp (Docker's copier time), ns since the epoch, UTC
    line: bytes
    partial: Partial | None = None

    @property
    def complete(self) -> bool:
        """True when this record ends a line (so a newline followed it in the container's output)."""
        return self.partial is None or self.partial.last
