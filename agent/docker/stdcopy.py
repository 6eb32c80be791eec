"""Pure decoders for GET /containers/{id}/logs: stdcopy frames and the timestamp prefix.

Without a TTY the engine multiplexes stdout and stderr: each frame is an 8-byte header
`[stream 1|2|3, 0, 0, 0, uint32 BE length]` and the payload (moby `api/pkg/stdcopy/stdcopy.go`).
With `timestamps=1` each message starts with RFC3339Nano (fixed 9 digits) and a space; a message
ends in "\\n" unless it is a partial chunk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.docker.timefmt import CorruptLine, parse_time

STREAMS = {0: "stdin", 1: "stdout", 2: "stderr", 3: "system"}
# Docker's frames hold one message (a 16 KiB chunk at most, plus the timestamp); a length far above
# that means we lost the framing, and growing a buffer to it would be unbounded.
MAX_FRAME = 4 << 20


class FramingError(ValueError):
    """The stream is not stdcopy-framed (or lost sync)."""


# Not frozen: one is made per log message, and a frozen dataclass's __init__ costs twice as much.
@dataclass(slots=True)
class LogFrame:
    """One message of a container's log as the engine sent it (timestamps=1)."""

    stream: str  # stdout or stderr
    time_ns: int
    message: bytes  # without its "\n"
    complete: bool  # it ended in "\n"; else a partial chunk of a longer line


@dataclass(frozen=True, slots=True)
class CorruptFrame:
    """A stdout/stderr frame whose payload does not start with a timestamp (counted as a drop)."""

    stream: str
    why: str


class StdcopyDecoder:
    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """Bytes in, complete (stream, payload) frames out; a partial frame waits for more bytes."""
        buf = self._buf
        buf += data
        out: list[tuple[str, bytes]] = []
        pos = 0
        while len(buf) - pos >= 8:
            kind, _, _, _, size = struct.unpack_from(">BBBBI", buf, pos)
            if kind not in STREAMS or buf[pos + 1 : pos + 4] != b"\0\0\0":
                raise FramingError(f"bad stdcopy header {bytes(buf[pos : pos + 8])!r}")
            if size > MAX_FRAME:
                raise FramingError(f"stdcopy frame of {size} bytes")
            if len(buf) - pos - 8 < size:
                break
            out.append((STREAMS[kind], bytes(buf[pos + 8 : pos + 8 + size])))
            pos += 8 + size
        if pos:
            del buf[:pos]
        return out

    def frames(self, data: bytes) -> list[LogFrame | CorruptFrame]:
        """Bytes in, the stdout and stderr messages they complete out, their timestamps parsed.

        stdin and system frames carry no container output and are left out."""
        out: list[LogFrame | CorruptFrame] = []
        for stream, payload in self.feed(data):
            if stream not in ("stdout", "stderr"):
                continue
            try:
                ts, msg, complete = split_timestamp(payload)
            except CorruptLine as exc:
                out.append(CorruptFrame(stream, str(exc)))
                continue
            out.append(LogFrame(stream, ts, msg, complete))
        return out


def split_timestamp(payload: bytes) -> tuple[int, bytes, bool]:
    """`<RFC3339Nano> <message>` → (time_ns, message without "\\n", complete)."""
    sp = payload.find(b" ", 0, 64)
    if sp < 0:
        raise CorruptLine("no timestamp")
    time_ns = parse_time(payload[:sp].decode("ascii", "replace"))
    msg = payload[sp + 1 :]
    complete = msg.endswith(b"\n")
    return time_ns, msg[:-1] if complete else msg, complete


def since_param(time_ns: int) -> str:
    """The API's `since` in `seconds.nanoseconds` form (inclusive: the entry at that time comes again)."""
    return f"{time_ns // 1_000_000_000}.{time_ns % 1_000_000_000:09d}"
