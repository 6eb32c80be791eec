"""Docker's timestamps: Go's RFC3339Nano, as dockerd writes them in json-file lines, in the Engine
API's log frames (`timestamps=1`) and in inspect output (0-9 fraction digits, UTC or an offset)."""

from __future__ import annotations

import calendar


class CorruptLine(ValueError):
    """Bytes that are not what Docker writes: a json-file line (garbage, invalid UTF-8, truncated,
    wrong types), a log frame without its timestamp, a time that is not RFC 3339."""


# Seconds part ("2026-11-23T08:19:30") -> epoch seconds; json-file's hot path reads it inline.
epoch_cache: dict[str, int] = {}
FRACTION_SCALE: tuple[int, ...] = tuple(int(10 ** (9 - n)) for n in range(10))  # digits -> ns multiplier


def parse_time(value: str) -> int:
    """RFC3339Nano (`2026-11-23T08:19:30.74470478Z`, 0-9 fraction digits, or an offset) → ns since epoch."""
    # The seconds part repeats for every line in a second: cache its conversion.
    head = value[:19]
    secs = epoch_cache.get(head)
    if secs is not None and value[-1] == "Z":  # the fast path: dockerd always writes UTC
        if len(value) == 20:
            return secs * 1_000_000_000
        digits = value[20:-1]
        if value[19] == "." and 0 < len(digits) <= 9 and digits.isdigit():
            return secs * 1_000_000_000 + int(digits) * FRACTION_SCALE[len(digits)]
    if secs is None:
        try:
            y, mo, d = int(head[0:4]), int(head[5:7]), int(head[8:10])
            h, mi, s = int(head[11:13]), int(head[14:16]), int(head[17:19])
        except ValueError:
            raise CorruptLine(f"bad time {value!r}") from None
        if head[4] != "-" or head[10] not in "Tt" or head[13] != ":":
            raise CorruptLine(f"bad time {value!r}")
        try:
            secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
        except (ValueError, OverflowError):  # month 13 and the like
            raise CorruptLine(f"bad time {value!r}") from None
        if len(epoch_cache) > 4096:
            epoch_cache.clear()
        epoch_cache[head] = secs
    rest = value[19:]
    frac_ns = 0
    if rest.startswith("."):
        i = 1
        while i < len(rest) and rest[i].isdigit():
            i += 1
        digits = rest[1:i]
        if not digits or len(digits) > 9:
            raise CorruptLine(f"bad time {value!r}")
        frac_ns = int(digits.ljust(9, "0"))
        rest = rest[i:]
    if rest in ("Z", "z"):
        offset = 0
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
        try:
            offset = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+" else -1)
        except ValueError:
            raise CorruptLine(f"bad time {value!r}") from None
    else:
        raise CorruptLine(f"bad time {value!r}")
    return (secs - offset) * 1_000_000_000 + frac_ns
