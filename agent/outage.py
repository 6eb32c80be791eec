"""One way to report something that keeps failing (the engine, a sink): loud once, then quiet.

    failed() ──► first failure: one line with the reason (and its fix)
             └─► while it lasts: one summary every `every` seconds (attempts, duration, last reason)
    recovered() ─► one line: back after <duration>, <attempts> failed attempts

A retry loop calls failed() on every attempt; what reaches the log is bounded by the clock, not
by the retry rate (a dead sink retried every 5 s used to log 54 lines in 4 minutes).
"""

from __future__ import annotations

import logging

from agent.clock import SYSTEM_CLOCK, Clock

SUMMARY_EVERY = 300.0  # seconds between "still failing" lines


def fmt_duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class Outage:
    """The state of one outage of one thing, and the few log lines it is worth."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        level: int = logging.WARNING,
        every: float = SUMMARY_EVERY,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.log = logger
        self.what = what  # e.g. "sink central", "the Docker engine"
        self.level = level
        self.every = every
        self.clock = clock
        self.since = 0.0  # monotonic start of the current outage; 0: none
        self.attempts = 0
        self.last_reason = ""
        self._last_line = 0.0

    @property
    def down(self) -> bool:
        return self.since > 0

    def failed(self, reason: str, first_line: str | None = None, level: int | None = None) -> None:
        """One more failed attempt. The first of an outage logs `first_line` (default: the reason)
        at `level` (default: the outage's level); later ones only feed the summary."""
        now = self.clock.monotonic()
        self.attempts += 1
        self.last_reason = reason
        if not self.down:
            self.since = self._last_line = now
            line = first_line if first_line is not None else reason
            self.log.log(self.level if level is None else level, "%s", line)
        elif now - self._last_line >= self.every:
            self._last_line = now
            self.log.log(
                self.level,
                "%s: still failing after %s (%d failed attempts); last: %s",
                self.what,
                fmt_duration(now - self.since),
                self.attempts,
                reason,
            )

    def recovered(self, line: str = "") -> bool:
        """The thing works again: one line if it was down (True), nothing otherwise."""
        if not self.down:
            return False
        took = fmt_duration(self.clock.monotonic() - self.since)
        self.log.info(
            "%s: %s after %s (%d failed attempts)", self.what, line or "working again", took, self.attempts
        )
        self.since = 0.0
        self.attempts = 0
        self.last_reason = ""
        return True
