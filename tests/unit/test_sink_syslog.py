"""syslog format step: Docker's exact wire layouts (and the compat-off variant) from hand-built records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path

import pytest

from agent.docker.models import Container
from agent.logs.record import LogRecord, Partial
from exporters.sinks.base import SinkConfigError
from exporters.sinks.syslog import (
    FACILITIES,
    SyslogFormatter,
    SyslogSink,
    parse_address,
    parse_facility,
)
from exporters.sinks.tag import Tag
from exporters.sinks.upstream import Address
from tests.support.toolbox import container, present

C = replace(container(1, "web"), id="5e" * 32, pid=4242)
T_REC = 1_763_884_800_123_456_789  # 2025-11-23T08:00:00.123456789Z: the container's time
T_NOW = 1_763_884_801_999_999_000  # the send time
PLUS2 = timezone(timedelta(hours=2))


def rec(
    line: bytes = b"hello", stream: str = "stdout", c: Container = C, partial: Partial | None = None
) -> LogRecord:
    return LogRecord(c, stream, T_REC, line, partial)


def fmt(
    f: str,
    *,
    compat: bool = True,
    octets: bool = False,
    tag: str = "{{.ID}}",
    facility: int = 3,
    tz: tzinfo = UTC,
) -> SyslogFormatter:
    return SyslogFormatter(
        fmt=f,
        facility=facility,
        tag=Tag(tag),
        hostname="dockerhost",
        pid=777,
        compat=compat,
        octet_counting=octets,
        tz=tz,
    )


def wire(f: SyslogFormatter, r: LogRecord) -> bytes | None:
    msg = f.message(r, T_NOW)
    return None if msg is None else f.frame(msg)


# --- Docker's layouts -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("format_", "expected"),
    [
        ("", b"<30>Nov 23 08:00:01 5e5e5e5e5e5e[777]: hello\n"),
        ("rfc3164", b"<30>Nov 23 08:00:01 dockerhost 5e5e5e5e5e5e[777]: hello\n"),
        ("rfc5424", b"<30>1 2025-11-23T08:00:01Z dockerhost 5e5e5e5e5e5e 777 5e5e5e5e5e5e - hello\n"),
        (
            "rfc5424micro",
            b"<30>1 2025-11-23T08:00:01.999999Z dockerhost 5e5e5e5e5e5e 777 5e5e5e5e5e5e - hello\n",
        ),
    ],
)
def test_docker_layouts_use_send_time(format_: str, expected: bytes) -> None:
    assert wire(fmt(format_), rec()) == expected


def test_local_time_zone_and_space_padded_day() -> None:
    # Go's time.Stamp pads the day with a space; RFC 3339 carries the offset.
    early = 1_762_041_600_000_000_000  # 2025-11-02T00:00:00Z
    f = fmt("", tz=PLUS2)
    assert f.message(rec(), early) == b"<30>Nov  2 02:00:00 5e5e5e5e5e5e[777]: hello\n"
    f = fmt("rfc5424micro", tz=timezone(timedelta(hours=-5, minutes=-30)))
    assert present(f.message(rec(), early)).startswith(b"<30>1 2025-11-01T18:30:00.000000-05:30 dockerhost ")


def test_pri_is_facility_times_eight_plus_severity() -> None:
    assert present(wire(fmt(""), rec(stream="stderr"))).startswith(b"<27>")  # daemon.err
    assert present(wire(fmt(""), rec(stream="stdout"))).startswith(b"<30>")  # daemon.info
    assert present(wire(fmt("", facility=FACILITIES["local7"]), rec(stream="stderr"))).startswith(b"<187>")
    assert present(wire(fmt("", facility=0), rec())).startswith(b"<6>")  # kern.info


def test_octet_counting_counts_the_trailing_newline() -> None:
    msg = b"<30>1 2025-11-23T08:00:01Z dockerhost 5e5e5e5e5e5e 777 5e5e5e5e5e5e - hello\n"
    assert wire(fmt("rfc5424", octets=True), rec()) == b"%d %s" % (len(msg), msg)


def test_compat_keeps_docker_quirks() -> None:
    f = fmt("rfc5424", tag="{{.Name}} with space " + "x" * 60)
    # tag uncut and unsanitised, embedded newline raw, invalid UTF-8 raw, empty line not sent
    got = wire(f, rec(b"a\nb\xff"))
    assert got == (
        b"<30>1 2025-11-23T08:00:01Z dockerhost web with space " + b"x" * 60 + b" 777 web with space "
        + b"x" * 60 + b" - a\nb\xff\n"
    )  # fmt: skip
    assert wire(f, rec(b"")) is None
    # a 16 KiB chunk is just another message, no partial marker
    assert present(wire(fmt(""), rec(b"chunk", partial=Partial("0" * 64, 1, False)))).endswith(b"]: chunk\n")


# --- the compat-off variant ------------------------------------------------------------------------------
def test_compat_off_uses_the_containers_time_and_pid() -> None:
    assert wire(fmt("", compat=False), rec()) == b"<30>Nov 23 08:00:00 5e5e5e5e5e5e[4242]: hello"
    assert wire(fmt("rfc5424micro", compat=False), rec()) == (
        b"<30>1 2025-11-23T08:00:00.123456Z dockerhost 5e5e5e5e5e5e 4242 5e5e5e5e5e5e - hello"
    )
    nopid = replace(container(1, "x"), id="ab" * 32, pid=0)
    assert (
        wire(fmt("rfc3164", compat=False), rec(c=nopid))
        == b"<30>Nov 23 08:00:00 dockerhost abababababab: hello"
    )
    assert b" abababababab - abababababab - " in present(wire(fmt("rfc5424", compat=False), rec(c=nopid)))


def test_compat_off_octets_escapes_and_limits() -> None:
    f = fmt("rfc5424", compat=False, octets=True, tag="{{.Name}} é" + "y" * 60)
    got = present(wire(f, rec(b"first\nsecond")))
    length, _, msg = got.partition(b" ")
    assert int(length) == len(msg)
    assert not msg.endswith(b"\n") and b"first\\nsecond" in msg
    header = msg.split(b" ")
    app, msgid = header[3], header[5]
    assert app == (b"web__" + b"y" * 60)[:48] and len(app) == 48  # one "_" per character
    assert msgid == app[:32]
    assert wire(f, rec(b"")) is not None  # empty lines are lines


# --- options --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("udp://127.0.0.1", Address("udp", "127.0.0.1", 514)),
        ("tcp://example.org:601", Address("tcp", "example.org", 601)),
        ("tcp+tls://[::1]:6514", Address("tcp+tls", "::1", 6514)),
        ("unix:///dev/log", Address("unix", path="/dev/log")),
        ("unixgram:///run/x.sock", Address("unixgram", path="/run/x.sock")),
        ("", Address("")),
    ],
)
def test_parse_address(value: str, address: Address) -> None:
    assert parse_address(value) == address


def test_parse_facility() -> None:
    assert parse_facility("") == 3
    assert parse_facility("local0") == 16
    assert parse_facility("23") == 23
    assert parse_facility("0") == 0
    assert parse_facility("+3") == 3  # strconv.Atoi takes a sign
    for bad in ("24", "-1", "daemons", "1.5", "+-3", "²"):
        with pytest.raises(ValueError):
            parse_facility(bad)


@pytest.mark.parametrize(
    ("opts", "key"),
    [
        ({"syslog-address": "http://x"}, "syslog-address"),
        ({"syslog-address": "udp://host:port"}, "syslog-address"),
        ({"syslog-address": "unix://"}, "syslog-address"),
        ({"syslog-facility": "nope"}, "syslog-facility"),
        ({"syslog-format": "rfc5425"}, "syslog-format"),
        ({"syslog-compat": "maybe"}, "syslog-compat"),
        ({"tag": "{{.Nope}}"}, "tag"),
        (
            {"syslog-address": "tcp+tls://h", "syslog-tls-ca-cert": "/nonexistent/ca.pem"},
            "syslog-tls-ca-cert",
        ),
        ({"max-size": "1m"}, "max-size"),
    ],
)
def test_invalid_options_name_the_key(opts: dict[str, str], key: str) -> None:
    with pytest.raises(SinkConfigError, match=rf"\b{key}\b"):
        SyslogSink(opts)


def test_cert_without_key_names_the_missing_key(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(SinkConfigError, match="syslog-tls-key"):
        SyslogSink({"syslog-address": "tcp+tls://h", "syslog-tls-cert": str(cert)})


def test_docker_accepts_and_ignores() -> None:
    # labels/env are accepted and not sent; TLS options are ignored without tcp+tls, as in Docker
    s = SyslogSink(
        {
            "syslog-address": "udp://127.0.0.1:5514",
            "labels": "a",
            "env": "B",
            "labels-regex": "(",
            "syslog-tls-skip-verify": "false",
        }
    )
    assert s.upstream.tls is None
    assert s.formatter.message(rec(), T_NOW) is not None


def test_framing_choice() -> None:
    def octets(**o: str) -> bool:
        return SyslogSink(o).formatter.octet_counting

    tls = {"syslog-address": "tcp+tls://127.0.0.1:6514", "syslog-tls-skip-verify": ""}
    assert octets(**tls, **{"syslog-format": "rfc5424"}) and octets(
        **tls, **{"syslog-format": "rfc5424micro"}
    )
    assert not octets(**tls, **{"syslog-format": "rfc3164"})
    assert not octets(**{"syslog-address": "tcp://127.0.0.1", "syslog-format": "rfc5424"})
    assert octets(**{"syslog-address": "tcp://127.0.0.1", "syslog-compat": "false"})
    assert octets(**{"syslog-address": "unix:///x", "syslog-compat": "false"})
    assert not octets(**{"syslog-address": "udp://127.0.0.1", "syslog-compat": "false"})


def test_skip_verify_is_presence() -> None:
    import ssl

    s = SyslogSink({"syslog-address": "tcp+tls://127.0.0.1", "syslog-tls-skip-verify": "false"})
    assert s.upstream.tls is not None and s.upstream.tls.verify_mode == ssl.CERT_NONE
    s = SyslogSink({"syslog-address": "tcp+tls://127.0.0.1"})
    assert s.upstream.tls is not None and s.upstream.tls.verify_mode == ssl.CERT_REQUIRED


def test_empty_tag_is_the_default_as_in_docker() -> None:
    s = SyslogSink({"tag": ""})
    assert s.formatter.tag.render(C) == "5e5e5e5e5e5e"
