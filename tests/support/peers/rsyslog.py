"""A private rsyslogd for the tests, with its own config (no system config, no imklog/imjournal).

Inputs: UDP, TCP, TCP+TLS (anonymous, and one that wants a client certificate) on loopback, unix stream
and unixgram in a temp dir. Every parsed message is written as one JSON object per line: pri, facility,
severity, timestamp, hostname, syslogtag, app-name, procid, msgid, msg, rawmsg and the input that took it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.toolbox import wait_for

FIELDS = {
    "pri": "pri",
    "facility": "syslogfacility",
    "severity": "syslogseverity",
    "timestamp": "timereported",
    "hostname": "hostname",
    "syslogtag": "syslogtag",
    "appname": "app-name",
    "procid": "procid",
    "msgid": "msgid",
    "msg": "msg",
    "rawmsg": "rawmsg",
    "input": "inputname",
    "version": "protocol-version",
}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA that signed the server certificate
    cert: Path  # server certificate for 127.0.0.1 / localhost
    key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verification with it must fail


def make_certs(d: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 signed by it, a client pair, and an unrelated CA (openssl)."""
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    for ca in ("ca", "other-ca"):
        run(
            *f"req -x509 -newkey rsa:2048 -nodes -days 2 -keyout {ca}.key -out {ca}.pem".split(),
            "-subj",
            f"/CN={ca}",
        )
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        run(
            *f"req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr".split(), "-subj", f"/CN={name}"
        )
        (d / f"{name}.ext").write_text(ext + "\n")
        run(
            *f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2".split(),
            *f"-extfile {name}.ext -out {name}.pem".split(),
        )
    return TlsFiles(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "other-ca.pem",
    )


class Rsyslog:
    """rsyslogd -n with a config of its own; `messages()` reads what it parsed."""

    def __init__(self, workdir: Path, tls: TlsFiles) -> None:
        self.dir = workdir
        self.tls = tls
        self.udp = free_port(socket.SOCK_DGRAM)
        self.tcp = free_port()
        self.tls_port = free_port()
        self.mtls_port = free_port()  # TLS that also wants a client certificate signed by tls.ca
        self.unix = workdir / "stream.sock"
        self.unixgram = workdir / "dgram.sock"
        self.out = workdir / "messages.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        props = "\n".join(
            f'  property(outname="{out}" name="{name}" format="jsonf"'
            + (' dateFormat="rfc3339"' if name == "timereported" else "")
            + ")"
            for out, name in FIELDS.items()
        )
        return f"""
global(
  workDirectory="{self.dir}"
  maxMessageSize="64k"
  parser.escapeControlCharactersOnReceive="off"
  defaultNetstreamDriverCAFile="{self.tls.ca}"
  defaultNetstreamDriverCertFile="{self.tls.cert}"
  defaultNetstreamDriverKeyFile="{self.tls.key}"
)
module(load="imudp")
module(load="imptcp")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
module(load="imuxsock" sysSock.use="off")
input(type="imudp" address="127.0.0.1" port="{self.udp}")
input(type="imptcp" address="127.0.0.1" port="{self.tcp}")
input(type="imptcp" path="{self.unix}" unlink="on")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}")
input(type="imtcp" address="127.0.0.1" port="{self.mtls_port}" name="mtls"
      streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
input(type="imuxsock" socket="{self.unixgram}" useSpecialParser="off" parseHostname="on"
      ignoreTimestamp="off" useSysTimeStamp="off" ratelimit.interval="0" annotate="off")
template(name="fields" type="list" option.jsonf="on") {{
{props}
}}
action(type="omfile" file="{self.out}" template="fields")
"""

    def start(self) -> None:
        if shutil.which("rsyslogd") is None:
            raise RuntimeError("rsyslogd not found: install Debian's rsyslog and rsyslog-gnutls")
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "rsyslog.conf"
        conf.write_text(self.config())
        log = open(self.dir / "rsyslogd.log", "ab")  # noqa: SIM115 - lives as long as rsyslogd
        self.proc = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(conf), "-i", str(self.dir / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self.ready, timeout=20, what=f"rsyslogd listening (log: {log.name})")

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"rsyslogd exited: {(self.dir / 'rsyslogd.log').read_text()[-2000:]}")
        for port in (self.tcp, self.tls_port, self.mtls_port):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return self.unix.exists() and self.unixgram.exists() and self._udp_bound()

    def _udp_bound(self) -> bool:
        # imudp has no handshake: look for the bound port in the kernel's table.
        want = f"0100007F:{self.udp:04X}"
        return any(want in line for line in Path("/proc/net/udp").read_text().splitlines())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def messages(self) -> list[dict[str, Any]]:
        """Every message parsed so far; the raw bytes stay recoverable through surrogate escapes."""
        if not self.out.exists():
            return []
        return [
            json.loads(ln.decode("utf-8", "surrogateescape")) for ln in self.out.read_bytes().splitlines()
        ]

    def wait_messages(self, pred: Any, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """The messages matching pred, once there are `count` of them."""

        def enough() -> list[dict[str, Any]] | None:
            got = [m for m in self.messages() if pred(m)]
            return got if len(got) >= count else None

        return list(wait_for(enough, timeout=timeout, what=f"{count} messages in {self.out}"))


@contextlib.contextmanager
def running(workdir: Path, tls: TlsFiles) -> Any:
    peer = Rsyslog(workdir, tls)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


def epoch(ts: str) -> float:
    """rsyslog's rfc3339 timereported → seconds since the epoch."""
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
