"""Pure parsing of Docker's json-file log format (moby `daemon/logger/jsonfilelog`).

One line per entry: `{"log":"…","stream":"stdout","attrs":{…},"time":"…"}\\n`. `log` keeps its
trailing newline except on a 16 KiB partial chunk; `time` is Go's RFC3339Nano (UTC, trailing zeros
trimmed, so 0-9 fraction digits). No I/O here: `tail.py` reads the files and feeds these.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from agent.docker.timefmt import FRACTION_SCALE as _SCALE
from agent.docker.timefmt import CorruptLine as CorruptLine
from agent.docker.timefmt import epoch_cache as _epoch_cache
from agent.docker.timefmt import parse_time as parse_time

# A json-file line holds at most one 16 KiB chunk, escaped (x6 at worst) plus keys and attrs;
# anything longer without a newline is not Docker's, so the splitter drops it rather than grow.
MAX_RAW_LINE = 1 << 20
FINGERPRINT_MAX = 4096


@dataclass(frozen=True, slots=True)
class Entry:
    """One parsed json-file line: one complete line, or one chunk of a split line."""

    stream: str
    time_ns: int
    data: bytes  # without the trailing newline
    complete: bool  # the `log` value ended in "\n"


# The C string scanner json.loads uses (typeshed does not declare it).
_scanstring: Callable[[str, int], tuple[str, int]] = vars(json.decoder)["scanstring"]
_decoder = json.JSONDecoder()
# What follows `"log":"…"` in dockerd's lines: keys in the order log, stream, attrs, time.
_TAIL = re.compile(
    r',"stream":"(\w+)"(?:,"attrs":.*)?,"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z"\}'
)


# Go's encoder writes each invalid UTF-8 byte as the escape \ufffd and a real U+FFFD raw, so the
# escape in Docker's file means "an invalid byte was here". We turn it back into an invalid byte
# (0xFF, via the lone surrogate \udcff and surrogateescape): every sink then treats it as the
# binary data it was, and json-file writes \ufffd again, byte for byte as dockerd did. An even
# run of backslashes before it is escaped backslashes, not an escape.
_FFFD_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\ufffd")


def _utf8(log: str) -> bytes:
    try:
        return log.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A lone surrogate escape (\ud800) is valid JSON but not UTF-8; keep the line.
        return log.encode("utf-8", "surrogatepass")


def parse_line(raw: bytes) -> Entry:
    """One json-file line (without its newline) → Entry; CorruptLine if it is not one."""
    return Entry(*parse_fields(raw))


def parse_fields(raw: bytes) -> tuple[str, int, bytes, bool]:
    """parse_line as a tuple (stream, time_ns, data, complete): the hot path, no object per line."""
    if b"\\ufffd" in raw:  # rare: only lines that had invalid bytes
        raw = _FFFD_ESCAPE.sub(rb"\1\\udcff", raw)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise CorruptLine("not UTF-8") from None
    if text.startswith('{"log":"'):
        # dockerd's own layout (UTC time): scan the log string in C, match the rest with one regex;
        # anything else goes through the JSON decoder.
        try:
            log, end = _scanstring(text, 8)
        except ValueError:
            raise CorruptLine("not JSON") from None
        m = _TAIL.fullmatch(text, end)
        if m is not None:
            stream, head, frac = m.groups()
            secs = _epoch_cache.get(head)
            if secs is not None:
                ns = secs * 1_000_000_000 + (int(frac) * _SCALE[len(frac)] if frac else 0)
            else:
                ns = parse_time(text[m.start(2) : m.end(3) if frac else m.end(2)] + "Z")
            data = _utf8(log)
            if data.endswith(b"\n"):
                return stream, ns, data[:-1], True
            return stream, ns, data, False
    try:
        obj = _decoder.decode(text)
    except ValueError:
        raise CorruptLine("not JSON") from None
    if not isinstance(obj, dict):
        raise CorruptLine("not a JSON object")
    log = obj.get("log", "")
    stream = obj.get("stream", "")
    ts = obj.get("time")
    if not isinstance(log, str) or not isinstance(stream, str) or not isinstance(ts, str):
        raise CorruptLine("log/stream/time of the wrong type")
    data = _utf8(log)
    complete = data.endswith(b"\n")
    if complete:
        data = data[:-1]
    return stream or "stdout", parse_time(ts), data, complete


# One whole line in dockerd's own layout (keys log, stream, [attrs,] time; UTC time), for a whole block
# of lines in one C pass: (line, log body still escaped, `\\n` if the log ended with a newline, stream,
# time up to the seconds, fraction digits). The body loop is the unrolled `[^"\\]*(\\.[^"\\]*)*`, lazy on
# escapes so that a final `\\n` escape lands in its own group.
_BLOCK_LINE = re.compile(
    rb'^(\{"log":"([^"\\\n]*(?:\\.[^"\\\n]*)*?)(\\n)?","stream":"(stdout|stderr)"(?:,"attrs":\{[^\n]*?\})?'
    rb',"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z"\}\n)',
    re.M,
)
Row = tuple[bytes, bytes, bytes, bytes, bytes, bytes]
# A Row's seconds part → epoch seconds (filled by row_time; the tail reads it inline on its hot path),
# and fraction digits → ns multiplier.
ROW_EPOCH: dict[bytes, int] = {}
FRACTION_SCALE = _SCALE


def parse_block(block: bytes) -> list[Row] | None:
    """Every line of `block` (whole lines, each ending in a newline) as a Row, in one regex pass; None
    when any line is not in dockerd's layout or the block is not UTF-8 (then parse line by line).

    The hot path of the json-file source: no str, no dict and no object of ours per line.
    """
    if not block.isascii():
        try:
            block.decode()
        except UnicodeDecodeError:
            return None
    rows: list[Row] = _BLOCK_LINE.findall(block)
    # Anchored at line starts and ending at a newline, each match is one whole line: as many matches
    # as newlines means every line matched.
    return rows if len(rows) == block.count(b"\n") else None


def row_time(head: bytes, frac: bytes) -> int:
    """A Row's time (seconds part and fraction digits) → ns since the epoch."""
    secs = ROW_EPOCH.get(head)
    if secs is None:
        secs = parse_time(head.decode() + "Z") // 1_000_000_000
        if len(ROW_EPOCH) > 4096:
            ROW_EPOCH.clear()
        ROW_EPOCH[head] = secs
    return secs * 1_000_000_000 + int(frac) * _SCALE[len(frac)] if frac else secs * 1_000_000_000


def unescape(body: bytes) -> bytes:
    """A Row's log body that holds escapes → its bytes (CorruptLine if the escapes are not JSON)."""
    if b"\\ufffd" in body:
        body = _FFFD_ESCAPE.sub(rb"\1\\udcff", body)
    try:
        text, _ = _scanstring(body.decode() + '"', 0)
    except ValueError:
        raise CorruptLine("not JSON") from None
    return _utf8(text)


class LineSplitter:
    """Bytes in, whole lines out (with their end offsets, or as one block); bounded: an over-long
    line is skipped and counted."""

    def __init__(self, offset: int = 0) -> None:
        self._buf = bytearray()
        self.offset = offset  # file offset of the first byte of _buf
        self._skipping = False
        self.oversized = 0

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[bytes, int]]:
        buf = self._buf
        if buf:
            data = bytes(buf) + data
            buf.clear()
        parts = data.split(b"\n")  # in C; the last part is the unterminated rest
        rest = parts.pop()
        out: list[tuple[bytes, int]] = []
        off = self.offset
        for i, line in enumerate(parts):
            off += len(line) + 1
            if i == 0 and self._skipping:  # the end of an over-long line we are dropping
                self._skipping = False
                continue
            out.append((line, off))
        self.offset = off
        if len(rest) > MAX_RAW_LINE:
            self.offset += len(rest)
            if not self._skipping:
                self.oversized += 1
            self._skipping = True
        elif rest:
            buf += rest
        return out

    def feed_block(self, data: bytes) -> tuple[bytes, int]:
        """Bytes in, (the whole lines among them as one block, the file offset of its first byte) out."""
        buf = self._buf
        if buf:
            data = bytes(buf) + data
            buf.clear()
        start = self.offset
        if self._skipping:  # the end of an over-long line we are dropping
            nl = data.find(b"\n")
            if nl < 0:
                self.offset += len(data)
                return b"", self.offset
            self._skipping = False
            data = data[nl + 1 :]
            start += nl + 1
        cut = data.rfind(b"\n") + 1
        block = data[:cut] if cut < len(data) else data
        self.offset = start + cut
        rest = len(data) - cut
        if rest > MAX_RAW_LINE:
            self.offset += rest
            self.oversized += 1
            self._skipping = True
        elif rest:
            buf += data[cut:]
        return block, start


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*$", re.IGNORECASE)


def docker_size(value: str) -> int:
    """json-file's `max-size` as dockerd reads it (go-units FromHumanSize: decimal, 1m = 1,000,000);
    0 when unset or not a size. (exporters/sinks/base.parse_size is the sinks' own, validating copy.)"""
    m = _SIZE.match(value or "")
    if not m:
        return 0
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def fingerprint(head: bytes) -> str:
    """Identity of a log file by its first line (unique: it holds a nanosecond time); "" if not yet known.

    Survives rename and gzip (`.1` → `.1.gz`), unlike the inode.
    """
    nl = head.find(b"\n", 0, FINGERPRINT_MAX)
    if nl >= 0:
        return hashlib.sha256(head[: nl + 1]).hexdigest()[:32]
    if len(head) >= FINGERPRINT_MAX:  # a first line longer than that: its prefix is as stable
        return hashlib.sha256(head[:FINGERPRINT_MAX]).hexdigest()[:32]
    return ""
