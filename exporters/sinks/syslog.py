"""The `syslog` sink: Docker's syslog logging driver over asyncio, with a standards-minded variant.

By default the bytes on the wire are those of dockerd's driver (moby `daemon/logger/syslog/syslog.go`
with the RackSec/srslog formatters and framers it uses):

    ""            <PRI>Jan _2 15:04:05 TAG[PID]: MSG\\n                (no hostname: srslog's UnixFormatter)
    rfc3164       <PRI>Jan _2 15:04:05 HOST TAG[PID]: MSG\\n
    rfc5424       <PRI>1 2006-01-02T15:04:05Z07:00 HOST TAG PID TAG - MSG\\n
    rfc5424micro  <PRI>1 2006-01-02T15:04:05.000000Z07:00 HOST TAG PID TAG - MSG\\n

- PRI = facility*8 + severity, stderr as err (3) and stdout as info (6).
- Timestamps are the local time when the line is sent, as dockerd; HOST is the Docker host's name.
- APP-NAME and MSGID are both the tag, uncut.
- "LEN " octet counting (RFC 5425) only for rfc5424/rfc5424micro over tcp+tls; LF framing everywhere
  else, with newlines inside a message left as they are. Empty lines are not sent.
- PROCID: dockerd puts its own pid there, the pid of the process that sends. We are that process, so
  it is the agent's pid (os.getpid()).

`syslog-compat=false` (dockwatch's own option) sends what a syslog receiver should get instead:

- the container's own timestamp (when dockerd read the line), not the send time;
- RFC 6587 octet counting on every stream transport (tcp, tcp+tls, unix), no trailing LF anywhere
  (the frame or the datagram delimits the message), and an embedded LF written as the two bytes `\\n`;
- APP-NAME cut to 48 and MSGID to 32 characters (RFC 5424 §6), and any byte of the tag outside
  printable ASCII (a space would end the field) replaced by `_`;
- PROCID the container's main pid as the host sees it (`-`, or no `[PID]`, when unknown);
- empty lines are sent.

Docker's options, with Docker's names and checks: `syslog-address` (`udp|tcp|tcp+tls://host[:514]`,
`unix://path`, `unixgram://path`; empty = the local syslog socket /dev/log, /var/run/syslog or
/var/run/log, datagram first), `syslog-facility` (a name or 0-23, default daemon), `syslog-format`,
`syslog-tls-ca-cert`, `syslog-tls-cert`, `syslog-tls-key`, `syslog-tls-skip-verify` (present = skip,
whatever its value, as in Docker), `tag` (default `{{.ID}}`); `labels`, `labels-regex`, `env`,
`env-regex` are accepted and, as in Docker, not sent. Unlike Docker, a unix socket need not exist when
the sink starts: until it does, send() returns RETRY.

Delivery: send() returns OK once every message is handed to the kernel (syslog has no acks), RETRY when
the peer cannot be reached or the connection breaks, and never raises; the pipeline sends the batch
again after its backoff, on a new connection (exporters/sinks/upstream.py; srslog instead reconnects
and resends once at once, which the pipeline's retry makes redundant). A TLS 1.3 server that refuses
our client certificate says so only after the handshake, so those lines are lost as with Docker (the
receiver logs it). UDP cannot tell delivery from loss; a refused datagram (ICMP port unreachable: at
once on loopback, else seen on a later send) makes the batch RETRY.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from urllib.parse import urlsplit

from agent.logs.record import LogRecord
from exporters.sinks.base import Option, Outcome, Sink, parse_bool
from exporters.sinks.tag import Tag
from exporters.sinks.upstream import Address, Datagram, Stream, TlsKeys, Upstream, client_tls, host_port, why

log = logging.getLogger(__name__)

DEFAULT_PORT = 514
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
SEVERITY = {"stderr": 3, "stdout": 6}  # LOG_ERR, LOG_INFO as dockerd's Log()
LOCAL_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")  # srslog's unixSyslog()
CONNECT_TIMEOUT = 10.0
WRITE_TIMEOUT = 30.0  # a peer that stops reading must not stall the pipeline forever
APP_NAME_MAX = 48
MSGID_MAX = 32
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- options, in Docker's syntax -----------------------------------------------------------------------
def parse_address(value: str) -> Address:
    """syslog.go parseAddress: a URL with a scheme; tcp/udp hosts default to port 514."""
    if not value:
        return Address("")
    url = urlsplit(value)
    if url.scheme in ("unix", "unixgram"):
        if not url.path:
            raise ValueError("a unix socket address needs a path")
        return Address(url.scheme, path=url.path)
    if url.scheme not in ("udp", "tcp", "tcp+tls"):
        raise ValueError(f"unsupported scheme: '{url.scheme}'")
    return Address(url.scheme, *host_port(url, "localhost", DEFAULT_PORT))


def parse_facility(value: str) -> int:
    """A facility name or a number 0-23 (strconv.Atoi), as Docker's parseFacility."""
    if not value:
        return FACILITIES["daemon"]
    if value in FACILITIES:
        return FACILITIES[value]
    if re.fullmatch(r"[+-]?[0-9]+", value) and 0 <= int(value) <= 23:
        return int(value)
    raise ValueError("invalid syslog facility")


def parse_tag(value: str) -> Tag:
    """ParseLogTag with syslog's default: an empty tag means `{{.ID}}`, as in Docker."""
    return Tag(value or "{{.ID}}")


def parse_format(value: str) -> str:
    if value not in FORMATS:
        raise ValueError("Invalid syslog format (expected rfc3164, rfc5424, rfc5424micro or empty)")
    return value


# --- pure format step ----------------------------------------------------------------------------------
def _sanitize(tag: str) -> bytes:
    """RFC 5424 header fields are PRINTUSASCII: one "_" for each other character (a space would split)."""
    return "".join(c if "!" <= c <= "~" else "_" for c in tag).encode()


class SyslogFormatter:
    """Pure: a LogRecord → one framed syslog message (or None for a line Docker would not send)."""

    def __init__(
        self,
        *,
        fmt: str,
        facility: int,
        tag: Tag,
        hostname: str,
        pid: int,
        compat: bool = True,
        octet_counting: bool = False,
        tz: tzinfo | None = None,
    ) -> None:
        self.fmt = fmt
        self.facility = facility
        self.tag = tag
        self.hostname = hostname.encode()
        self.pid = pid
        self.compat = compat
        self.octet_counting = octet_counting
        self.tz = tz  # None: the host's local time zone, as Go's time.Now()
        self._stamp: tuple[int, bytes] = (-1, b"")

    def pri(self, rec: LogRecord) -> int:
        return self.facility * 8 + SEVERITY.get(rec.stream, 6)

    def timestamp(self, time_ns: int) -> bytes:
        """time.Stamp for ""/rfc3164, RFC 3339 (seconds or micro) for rfc5424*, in local time."""
        sec, nsec = divmod(time_ns, 1_000_000_000)
        if self._stamp[0] != sec:  # many lines share a second; build its text once
            t = datetime.fromtimestamp(sec, self.tz) if self.tz else datetime.fromtimestamp(sec).astimezone()
            if self.fmt in ("", "rfc3164"):
                text = f"{_MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S}"
            else:
                off = t.utcoffset() or timedelta(0)
                mins = int(off.total_seconds()) // 60
                zone = (
                    "Z"
                    if mins == 0
                    else f"{'+' if mins > 0 else '-'}{abs(mins) // 60:02d}:{abs(mins) % 60:02d}"
                )
                text = f"{t:%Y-%m-%dT%H:%M:%S}\0{zone}"  # \0 marks where a fraction goes
            self._stamp = (sec, text.encode())
        stamp = self._stamp[1]
        if self.fmt == "rfc5424micro":
            return stamp.replace(b"\0", b".%06d" % (nsec // 1000))  # Go's .000000 truncates
        return stamp.replace(b"\0", b"")

    def message(self, rec: LogRecord, now_ns: int) -> bytes | None:
        """The syslog message with its trailing LF (compat) or none (compat off), before framing."""
        if self.compat and not rec.line:
            return None  # dockerd's Log() returns early on an empty line
        text = self.tag.render(rec.container, self.hostname.decode())
        body = rec.line
        if self.compat:
            tag = text.encode()
            ts = self.timestamp(now_ns)
            pid = b"%d" % self.pid
            app = msgid = tag
            if not body.endswith(b"\n"):  # srslog appends the LF a message lacks
                body += b"\n"
        else:
            ts = self.timestamp(rec.time_ns)
            pid = b"%d" % rec.container.pid if rec.container.pid > 0 else b""
            tag = _sanitize(text) or b"-"
            app, msgid = tag[:APP_NAME_MAX], tag[:MSGID_MAX]
            body = body.replace(b"\n", b"\\n")
        pri = self.pri(rec)
        if self.fmt in ("", "rfc3164"):
            host = b"" if self.fmt == "" else self.hostname + b" "
            proc = b"[" + pid + b"]" if pid else b""
            return b"<%d>%s %s%s%s: %s" % (pri, ts, host, tag, proc, body)
        return b"<%d>1 %s %s %s %s %s - %s" % (pri, ts, self.hostname or b"-", app, pid or b"-", msgid, body)

    def frame(self, msg: bytes) -> bytes:
        return b"%d %s" % (len(msg), msg) if self.octet_counting else msg

    def encode(self, batch: Sequence[LogRecord], now_ns: int) -> list[bytes]:
        out = []
        for rec in batch:
            msg = self.message(rec, now_ns)
            if msg is not None:
                out.append(self.frame(msg))
        return out


# --- datagrams ----------------------------------------------------------------------------------------
async def send_datagrams(sock: socket.socket, msgs: Sequence[bytes]) -> None:
    """udp or unixgram: one message per datagram on the connected socket; raises on a refusal."""
    loop = asyncio.get_running_loop()
    for i, msg in enumerate(msgs):
        if i % 256 == 255:
            await asyncio.sleep(0)  # a long batch of datagrams must not hold the event loop
        try:
            try:
                sock.send(msg)  # the common case: room in the socket buffer, no await
            except BlockingIOError:
                await asyncio.wait_for(loop.sock_sendall(sock, msg), WRITE_TIMEOUT)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:  # can never go as one datagram; dockerd drops it too
                log.warning("syslog sink: dropped a %d-byte message: too large for a datagram", len(msg))
                continue
            raise
    # A refusal of any earlier datagram surfaced on the next send() above; only the last one's
    # is still pending (on loopback the ICMP port-unreachable is already here). One syscall
    # per batch, not per datagram: it was a third of the UDP path's CPU.
    if msgs:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))


# --- the sink ------------------------------------------------------------------------------------------
class SyslogSink(Sink):
    """Ships log records to a syslog receiver as Docker's syslog driver does (or, optionally, better)."""

    driver = "syslog"
    options = (
        Option(
            "syslog-address", "udp|tcp|tcp+tls://host[:514], unix://path, unixgram://path", "", parse_address
        ),
        Option("syslog-facility", "facility name or 0-23", "daemon", parse_facility),
        Option("syslog-format", '"", rfc3164, rfc5424 or rfc5424micro', "", parse_format),
        Option("syslog-tls-ca-cert", "CA bundle to verify the receiver (tcp+tls)", None),
        Option("syslog-tls-cert", "client certificate (tcp+tls)", None),
        Option("syslog-tls-key", "client key (tcp+tls)", None),
        Option("syslog-tls-skip-verify", "present: do not verify the receiver (any value, as Docker)", None),
        Option("tag", "Docker tag template: TAG, APP-NAME and MSGID", "{{.ID}}", parse_tag),
        Option("labels", "accepted, not sent (as Docker)", None),
        Option("labels-regex", "accepted, not sent (as Docker)", None),
        Option("env", "accepted, not sent (as Docker)", None),
        Option("env-regex", "accepted, not sent (as Docker)", None),
        Option(
            "syslog-compat",
            "false: container timestamps, octet counting on streams (dockwatch)",
            "true",
            parse_bool,
        ),
    )

    def __init__(
        self,
        opts: Mapping[str, str],
        *,
        name: str | None = None,
        hostname: str = "",
        clock: Callable[[], int] = time.time_ns,
        tz: tzinfo | None = None,
    ) -> None:
        super().__init__(opts, name=name, hostname=hostname)
        o = self.opts
        self.address: Address = o["syslog-address"]
        self.compat: bool = o["syslog-compat"]
        fmt: str = o["syslog-format"]
        if self.compat:
            octets = fmt.startswith("rfc5424") and self.address.scheme == "tcp+tls"
        else:
            octets = self.address.stream
        self.formatter = SyslogFormatter(
            fmt=fmt,
            facility=o["syslog-facility"],
            tag=o["tag"],
            hostname=hostname or socket.gethostname(),
            pid=os.getpid(),
            compat=self.compat,
            octet_counting=octets,
            tz=tz,
        )
        self.clock = clock
        tls = None
        if self.address.scheme == "tcp+tls":
            keys = TlsKeys("syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key")
            # Docker skips verification when the key is present, whatever its value.
            tls = client_tls(self.driver, opts, o, keys, skip_verify="syslog-tls-skip-verify" in opts)
        self.upstream = Upstream(
            self.address, Stream, tls=tls, connect_timeout=CONNECT_TIMEOUT, local_paths=LOCAL_SOCKETS
        )
        self._lock = asyncio.Lock()

    # --- I/O -------------------------------------------------------------------------------------------
    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        try:
            msgs = self.formatter.encode(batch, self.clock())
        except Exception:  # cannot be formatted now, nor on any retry
            log.exception("syslog sink %s: cannot format a batch of %d records", self.name, len(batch))
            return Outcome.FAIL
        if not msgs:
            return Outcome.OK
        async with self._lock:
            try:
                conn, _ = await self.upstream.connection()
                if isinstance(conn, Datagram):
                    await send_datagrams(conn.sock, msgs)
                else:
                    conn.write(b"".join(msgs))
                    await conn.drain(WRITE_TIMEOUT)
            except Exception as exc:  # a sink never raises into the pipeline
                self.upstream.drop()
                if isinstance(exc, OSError | TimeoutError | EOFError):
                    # The runner reports the outage (first failure, then a summary); each attempt: debug.
                    self.last_error = f"{self.address}: {why(exc)}"
                    log.debug("syslog sink %s: %s; will retry", self.name, self.last_error)
                else:
                    log.exception("syslog sink %s: unexpected error; will retry", self.name)
                return Outcome.RETRY
        return Outcome.OK

    async def close(self) -> None:
        async with self._lock:
            await self.upstream.close()
