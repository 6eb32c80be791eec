"""The `json-file` sink: Docker's json-file logging driver, byte for byte, in a directory of our own.

Each container gets `<path>/<id>/<id>-json.log`, written exactly as dockerd writes
`/var/lib/docker/containers/<id>/<id>-json.log` (moby `daemon/logger/jsonfilelog/`), so any tool that
tails Docker's files (Fluent Bit's `docker` parser, Promtail, `jq`) reads ours unchanged:

    {"log":"hello\\n","stream":"stdout","attrs":{"tag":"web"},"time":"2026-11-23T08:13:35.0123Z"}\\n

- Keys in the order log, stream, attrs, time; the first three omitted when empty.
- `log` is escaped as dockerd's `ffjsonWriteJSONBytesAsString` does: `\\"`, `\\\\`, `\\n`, `\\r`, every other
  byte below 0x20 as `\\u00XX` (so a tab is `\\u0009`, unlike encoding/json), `<>&` as `\\u003c` etc.,
  each invalid UTF-8 byte as `\\ufffd`, U+2028/U+2029 as `\\u2028`/`\\u2029`. It keeps the line's
  `\\n`, except on a 16 KiB chunk that is not the last of its line.
- `attrs` is Go's `json.Marshal` of a `map[string]string`: sorted keys, HTML-safe escaping, and (Go ≥ 1.22,
  i.e. Docker ≥ 25) `\\b`/`\\f` short escapes; older dockerd wrote `\\u0008`/`\\u000c` there.
- `time` is Go's `time.RFC3339Nano` in UTC: trailing zeros of the fraction trimmed, no dot when zero.
- One entry per 16 KiB chunk of a longer line, as dockerd: this sink declares `raw_chunks`, so the
  pipeline gives it Docker's chunks whatever `logs.join-partial` says (other sinks may get the
  rejoined line at the same time). Each chunk is escaped on its own, so a multi-byte character cut
  by Docker's chunking is `\\ufffd` on both sides of the cut, as in dockerd's file. (Through the
  Engine API, for drivers other than json-file, no chunk says whether it was a line's last: a chunk
  is written as the last, with its newline, when the next entry has another time, and without one
  when it is the container's last output.)

Options (Docker's names, syntax and checks; any other key is refused by name):

- `max-size` (go-units FromHumanSize, decimal: 10m = 10,000,000 bytes, > 0; default unlimited),
  `max-file` (≥ 1, default 1), `compress` (needs `max-file` ≥ 2 and `max-size`).
- `labels`, `labels-regex`, `env`, `env-regex`: copied into `attrs` (labels first, env wins on a clash).
- `tag`: no default; when given and not empty it is stored as `attrs.tag`.
- `path` (dockwatch's own): the directory holding the per-container directories, default
  `/var/lib/dockwatch/containers`. Files are created 0640 and directories 0750.

Rotation is dockerd's (`loggerutils/logfile.go`): before each line, if the file already holds
`>= max-size` bytes, unlink `.N-1[.gz]`, shift `.i-1` to `.i`, rename the live file to `.1` and open a new
one (with `max-file=1` the live file is unlinked and recreated). With `compress`, `.1` is gzipped to
`.1.gz` in the background — the gzip header's Extra field holding `{"lastTime":"<time of the file's
last line>"}` as dockerd writes it — and the next rotation of that container waits for it.

I/O: a batch is encoded and written in a worker thread (the event loop never waits on the disk), with
one `os.write` per run of lines between rotations. `send()` returns OK once every byte is in the
file (the kernel's page cache, as with dockerd; no fsync). A failed write truncates the file back to
where the failed write began, so no torn line is left, and returns RETRY; lines of the batch already
written (other containers, or before a rotation) are written again on the retry: at-least-once.
Files are not removed with their container: that is the operator's (or logrotate's) business.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import json
import logging
import os
import re
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from agent.docker.models import Container
from agent.logs.record import LogRecord
from exporters.sinks.base import (
    ExtraAttributes,
    Option,
    Outcome,
    Sink,
    SinkConfigError,
    extra_attribute_options,
    parse_bool,
    parse_size,
)
from exporters.sinks.tag import Tag

log = logging.getLogger(__name__)

DEFAULT_PATH = "/var/lib/dockwatch/containers"
FILE_MODE = 0o640  # dockerd's perms for the log file
DIR_MODE = 0o750
MAX_OPEN_FILES = 512  # per sink; the least recently written container's file is closed beyond this


# --- pure format step --------------------------------------------------------------------------------------
def _go_replace_one_byte(exc: UnicodeError) -> tuple[str, int]:
    """Go's utf8.DecodeRune consumes exactly one byte of an invalid sequence: one \\ufffd per byte."""
    assert isinstance(exc, UnicodeDecodeError)
    return "\\ufffd", exc.start + 1


# A pure function under a name nobody else uses; registering it twice is harmless.
codecs.register_error("dockwatch-go-fffd", _go_replace_one_byte)

# Printable bytes both escapers rewrite; the backslash first, as the later escapes add backslashes.
_PRINTABLE_ESCAPES = (
    (b"\\", b"\\\\"),
    (b'"', b'\\"'),
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
)
_CONTROL = re.compile(rb"[\x00-\x1f]")
_LOG_ESCAPES: dict[int, bytes] = {b: b"\\u%04x" % b for b in range(0x20)} | {0x0A: b"\\n", 0x0D: b"\\r"}
# encoding/json's appendString (Go ≥ 1.22) adds \t, \b, \f short forms.
_JSON_ESCAPES = _LOG_ESCAPES | {0x09: b"\\t", 0x08: b"\\b", 0x0C: b"\\f"}


_NEEDS_WORK = re.compile(rb'[\x00-\x1f"\\<>&\x80-\xff]')


def _escape(raw: bytes, table: Mapping[int, bytes]) -> bytes:
    if not _NEEDS_WORK.search(raw):  # plain printable ASCII: the common line
        return raw
    # bytes.replace per special byte (C speed) instead of one regex callback per match.
    out = raw
    for ch, esc in _PRINTABLE_ESCAPES:
        if ch in out:
            out = out.replace(ch, esc)
    if b"\n" in out:
        out = out.replace(b"\n", b"\\n")
    if _CONTROL.search(out):
        out = _CONTROL.sub(lambda m: table[m.group()[0]], out)
    if not out.isascii():
        # Escapes are ASCII and ASCII bytes never sit inside a multi-byte sequence, so decoding after
        # escaping sees the same sequences Go's loop sees.
        out = out.decode("utf-8", "dockwatch-go-fffd").encode("utf-8")
        out = out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return out


def escape_log(raw: bytes) -> bytes:
    """The body of a JSON string as dockerd's jsonlog.ffjsonWriteJSONBytesAsString writes it."""
    return _escape(raw, _LOG_ESCAPES)


def escape_json(raw: bytes) -> bytes:
    """The body of a JSON string as Go's encoding/json (HTML-safe, Go ≥ 1.22) writes it."""
    return _escape(raw, _JSON_ESCAPES)


def marshal_attrs(attrs: Mapping[str, str]) -> bytes:
    """json.Marshal(map[string]string): keys sorted bytewise (= by code point), no spaces."""
    if not attrs:
        return b""
    parts = [
        b'"%s":"%s"' % (escape_json(k.encode("utf-8", "replace")), escape_json(v.encode("utf-8", "replace")))
        for k, v in sorted(attrs.items())
    ]
    return b"{" + b",".join(parts) + b"}"


@functools.lru_cache(maxsize=256)
def _utc_second(sec: int) -> str:
    tm = time.gmtime(sec)
    if not 0 <= tm.tm_year <= 9999:  # fastTimeMarshalJSON refuses these
        raise ValueError(f"year {tm.tm_year} outside of range [0,9999]")
    return time.strftime("%Y-%m-%dT%H:%M:%S", tm)


def rfc3339nano(time_ns: int) -> str:
    """Go's t.UTC().Format(time.RFC3339Nano): fraction with trailing zeros trimmed."""
    sec, nsec = divmod(time_ns, 1_000_000_000)
    frac = f".{nsec:09d}".rstrip("0") if nsec else ""
    return _utc_second(sec) + frac + "Z"


_STREAMS = {s: b'"stream":"' + s.encode() + b'"' for s in ("stdout", "stderr")}


def format_line(rec: LogRecord, attrs_json: bytes = b"") -> bytes:
    """One line of `<id>-json.log`, newline included (jsonfilelog.marshalMessage)."""
    parts = []
    if rec.line or rec.complete:
        # the newline dockerd appends to a line that ended in one, escaped apart from the line
        parts.append(b'"log":"' + escape_log(rec.line) + (b'\\n"' if rec.complete else b'"'))
    if rec.stream:
        parts.append(_STREAMS.get(rec.stream) or b'"stream":"' + escape_log(rec.stream.encode()) + b'"')
    if attrs_json:
        parts.append(b'"attrs":' + attrs_json)
    parts.append(b'"time":"' + rfc3339nano(rec.time_ns).encode() + b'"')
    return b"{" + b",".join(parts) + b"}\n"


@dataclass(frozen=True, slots=True)
class Attrs(ExtraAttributes):
    """Docker's extra attributes plus json-file's `tag`."""

    tag: Tag | None = None

    def of(self, container: Container, hostname: str = "") -> dict[str, str]:
        """logger.Info.ExtraAttributes (labels first, env wins), then `tag` over both."""
        out = self.attributes(container)
        if self.tag is not None:
            tag = self.tag.render(container, hostname)
            if tag:
                out["tag"] = tag
        return out


class JsonFileEncoder:
    """Pure: LogRecords → dockerd's json-file lines, with `attrs` rendered once per container."""

    def __init__(self, attrs: Attrs, hostname: str = "") -> None:
        self.attrs = attrs
        self.hostname = hostname
        self._cache: dict[str, bytes] = {}

    def attrs_json(self, container: Container) -> bytes:
        got = self._cache.get(container.id)
        if got is None:
            got = marshal_attrs(self.attrs.of(container, self.hostname))
            if len(self._cache) > 4096:  # containers come and go; bound the cache
                self._cache.clear()
            self._cache[container.id] = got
        return got

    def line(self, rec: LogRecord) -> bytes:
        return format_line(rec, self.attrs_json(rec.container))


# --- options ---------------------------------------------------------------------------------------------
def parse_max_size(value: str) -> int:
    size = parse_size(value)
    if size <= 0:
        raise ValueError("max-size must be a positive number")
    return size


def parse_max_file(value: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", value):  # strconv.Atoi
        raise ValueError("expected an integer")
    n = int(value)
    if n < 1:
        raise ValueError("max-file cannot be less than 1")
    return n


def parse_tag(value: str) -> Tag | None:
    return Tag(value) if value else None


# --- files ---------------------------------------------------------------------------------------------
def gzip_with_extra(src: str, dst: str, extra: bytes, level: int = 6) -> None:
    """Gzip `src` into `dst` as Go's gzip.Writer does with Header.Extra set (mtime 0, OS 255)."""
    header = b"\x1f\x8b\x08\x04" + struct.pack("<I", 0) + b"\x00\xff" + struct.pack("<H", len(extra)) + extra
    comp = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc, size = 0, 0
    fd = os.open(dst, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, FILE_MODE)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb", closefd=False) as out:
            out.write(header)
            while chunk := fin.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
                out.write(comp.compress(chunk))
            out.write(comp.flush())
            out.write(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)
        raise
    os.close(fd)


def compress_rotated(name: str, last_time_ns: int) -> None:
    """loggerutils.compressFile: `.1` → `.1.gz`, then `.1` is removed once the copy is complete."""
    extra = json.dumps({"lastTime": rfc3339nano(last_time_ns)}, separators=(",", ":")).encode()
    try:
        gzip_with_extra(name, name + ".gz", extra)
    except FileNotFoundError:
        return
    os.unlink(name)


@dataclass
class RotatingLog:
    """One container's live file (dockerd's loggerutils.LogFile): its descriptor and dockerd's bookkeeping."""

    path: str
    capacity: int  # -1: unlimited
    max_files: int
    compress: bool
    fd: int = -1
    size: int = 0
    last_time_ns: int = 0
    compressing: Future[None] | None = None

    def open(self) -> None:
        if self.fd < 0:
            os.makedirs(os.path.dirname(self.path), mode=DIR_MODE, exist_ok=True)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            self.size = os.lseek(self.fd, 0, os.SEEK_END)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def write_lines(self, lines: Sequence[tuple[int, bytes]], pool: ThreadPoolExecutor) -> None:
        """Write (time_ns, line) pairs, rotating before a line when the file holds >= capacity bytes."""
        self.open()
        run: list[bytes] = []
        size = self.size
        for time_ns, line in lines:
            if self.capacity != -1 and size >= self.capacity:
                self._write(b"".join(run))
                run = []
                self.rotate(pool)
                size = 0
            run.append(line)
            size += len(line)
            self.last_time_ns = time_ns
        self._write(b"".join(run))

    def _write(self, data: bytes) -> None:
        start = self.size
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                self.size += n
        except OSError:
            # Leave no torn line behind: the retry writes the whole run again.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, start)
            self.size = start
            raise

    def rotate(self, pool: ThreadPoolExecutor) -> None:
        """loggerutils.LogFile.rotate: shift the chain, move the live file aside, start a new one."""
        self.wait_compression()  # dockerd's rotateMu: one rotation (with its gzip) at a time
        self.close()
        name = self.path
        if self.max_files >= 2:
            ext = ".gz" if self.compress else ""
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{name}.{self.max_files - 1}{ext}")
            for i in range(self.max_files - 1, 1, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f"{name}.{i - 1}{ext}", f"{name}.{i}{ext}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(name, name + ".1")
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        self.fd = os.open(name, os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        self.size = 0
        if self.compress and self.max_files >= 2:
            self.compressing = pool.submit(compress_rotated, name + ".1", self.last_time_ns)

    def wait_compression(self) -> None:
        if self.compressing is not None:
            try:
                self.compressing.result()
            except OSError as exc:
                log.error("json-file sink: compressing %s.1 failed: %s", self.path, exc)
            self.compressing = None


# --- the sink ------------------------------------------------------------------------------------------
class JsonFileSink(Sink):
    """Writes Docker's json-file format, with Docker's rotation, one file per container."""

    driver = "json-file"
    # Docker's file has one entry per 16 KiB chunk, each escaped on its own (a multi-byte character
    # cut by the chunking becomes \ufffd on both sides): only the chunks give the same bytes.
    raw_chunks = True
    options = (
        Option(
            "max-size", "rotate when a file holds this many bytes (10m = 10,000,000)", None, parse_max_size
        ),
        Option("max-file", "number of files kept, the live one included", "1", parse_max_file),
        Option("compress", "gzip rotated files (needs max-file >= 2 and max-size)", "false", parse_bool),
        *extra_attribute_options("to attrs"),
        Option("tag", "Docker tag template stored as attrs.tag (no default)", "", parse_tag),
        Option("path", "directory of the <id>/<id>-json.log files (dockwatch)", DEFAULT_PATH),
    )

    def __init__(self, opts: Mapping[str, str], *, name: str | None = None, hostname: str = "") -> None:
        super().__init__(opts, name=name, hostname=hostname)
        o = self.opts
        self.capacity: int = -1 if o["max-size"] is None else o["max-size"]
        self.max_files: int = o["max-file"]
        self.compress: bool = o["compress"]
        if self.compress and (self.max_files == 1 or self.capacity == -1):
            raise SinkConfigError(
                f"log-opt compress={opts.get('compress')!r} for the json-file sink: compress cannot be true "
                "when max-file is less than 2 or max-size is not set"
            )
        if not o["path"]:
            raise SinkConfigError("log-opt path='' for the json-file sink: expected a directory")
        self.path: str = o["path"]
        self.encoder = JsonFileEncoder(
            Attrs(o["labels"], o["labels-regex"], o["env"], o["env-regex"], o["tag"]), hostname
        )
        self._files: OrderedDict[str, RotatingLog] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="json-file-gzip")
        self._lock = asyncio.Lock()

    def file_path(self, container_id: str) -> str:
        return os.path.join(self.path, container_id, f"{container_id}-json.log")

    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        if not batch:
            return Outcome.OK
        async with self._lock:  # one batch at a time keeps each file's lines in order
            try:
                lines = await asyncio.to_thread(self._encode, batch)
            except Exception:  # cannot be encoded now, nor on any retry
                log.exception("json-file sink %s: cannot encode a batch of %d records", self.name, len(batch))
                return Outcome.FAIL
            try:
                await asyncio.to_thread(self._write, lines)
            except OSError as exc:  # disk full, permissions, a path in the way: may heal
                # The runner reports the outage (first failure, then a summary); each attempt: debug.
                self.last_error = str(exc)
                log.debug("json-file sink %s: %s; will retry", self.name, exc)
                return Outcome.RETRY
            except Exception:  # a sink never takes the pipeline down
                log.exception("json-file sink %s: unexpected error; will retry", self.name)
                return Outcome.RETRY
        return Outcome.OK

    def _encode(self, batch: Sequence[LogRecord]) -> dict[str, list[tuple[int, bytes]]]:
        """Pure and CPU-bound (escaping up to 16 KiB per line): runs in a worker thread."""
        by_container: dict[str, list[tuple[int, bytes]]] = {}
        for rec in batch:
            by_container.setdefault(rec.container.id, []).append((rec.time_ns, self.encoder.line(rec)))
        return by_container

    def _write(self, by_container: Mapping[str, Sequence[tuple[int, bytes]]]) -> None:
        for cid, lines in by_container.items():
            self._file(cid).write_lines(lines, self._pool)

    def _file(self, cid: str) -> RotatingLog:
        f = self._files.get(cid)
        if f is None:
            f = RotatingLog(self.file_path(cid), self.capacity, self.max_files, self.compress)
            self._files[cid] = f
            while len(self._files) > MAX_OPEN_FILES:
                _, old = self._files.popitem(last=False)
                old.wait_compression()
                old.close()
        else:
            self._files.move_to_end(cid)
        return f

    async def close(self) -> None:
        """Wait for running compressions, close every file."""
        async with self._lock:
            files = list(self._files.values())
            self._files.clear()

            def finish() -> None:
                for f in files:
                    f.wait_compression()
                    f.close()
                self._pool.shutdown(wait=True)

            await asyncio.to_thread(finish)
