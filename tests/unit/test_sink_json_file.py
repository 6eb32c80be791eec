"""json-file format step: dockerd's exact line bytes from hand-built records, and option checks."""

from __future__ import annotations

import json

import pytest

from agent.docker.models import Container
from agent.logs.record import LogRecord, Partial
from exporters.sinks.base import SinkConfigError, parse_names
from exporters.sinks.json_file import (
    Attrs,
    JsonFileEncoder,
    JsonFileSink,
    escape_json,
    escape_log,
    format_line,
    marshal_attrs,
    rfc3339nano,
)
from exporters.sinks.tag import Tag

C = Container(
    id="5e" * 32,
    name="web",
    image="shop/web:1",
    image_id="sha256:" + "ab" * 32,
    pid=42,
    network_mode="default",
    labels={"app": "shop", "tier": "<front>", "env": "from-label", "com.x.a": "1", "com.x.b": "2"},
    env=("APP_ENV=prod", "env=from-env", "NOEQUALS", "EMPTY=", "X_ONE=1"),
)
T = 1_763_884_800_123_456_789  # 2025-11-23T08:00:00.123456789Z


def rec(line: bytes, stream: str = "stdout", t: int = T, partial: Partial | None = None) -> LogRecord:
    return LogRecord(C, stream, t, line, partial)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"plain", b"plain"),
        (b'"q" \\', b'\\"q\\" \\\\'),
        (b"<a>&", b"\\u003ca\\u003e\\u0026"),
        (b"\n\r", b"\\n\\r"),
        (b"\t", b"\\u0009"),  # dockerd's own escaper has no \t short form (encoding/json has)
        (b"\x00\x01\x08\x0c\x1b\x1f", b"\\u0000\\u0001\\u0008\\u000c\\u001b\\u001f"),
        (b"\x7f", b"\x7f"),  # DEL is not escaped
        ("café 🐳".encode(), "café 🐳".encode()),
        ("\u2028\u2029".encode(), b"\\u2028\\u2029"),
        ("\ufffd".encode(), "\ufffd".encode()),  # a valid U+FFFD stays raw
        (b"\xff", b"\\ufffd"),
        (b"\xe2\x82A", b"\\ufffd\\ufffdA"),  # Go: one \ufffd per byte of a truncated sequence
        (b"\xed\xa0\x80", b"\\ufffd\\ufffd\\ufffd"),  # UTF-8-encoded surrogate
        (b"\xc0\xaf", b"\\ufffd\\ufffd"),  # overlong
        (b"\xf4\x90\x80\x80", b"\\ufffd" * 4),  # above U+10FFFF
        (b"\xff<\xe2\x80\xa8", b"\\ufffd\\u003c\\u2028"),
    ],
)
def test_escape_log_like_dockerd(raw: bytes, escaped: bytes) -> None:
    assert escape_log(raw) == escaped


def test_escape_json_is_encoding_json() -> None:
    assert escape_json(b"\t\x08\x0c\x01<") == b"\\t\\b\\f\\u0001\\u003c"
    # The escaped body is valid JSON that decodes back to the text (invalid bytes as U+FFFD).
    raw = b'a\t"b"\\ <&> \xff \xe2\x80\xa8'
    assert json.loads(b'"' + escape_json(raw) + b'"') == 'a\t"b"\\ <&> \ufffd \u2028'


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (1_763_884_800_000_000_000, "2025-11-23T08:00:00Z"),
        (1_763_884_800_100_000_000, "2025-11-23T08:00:00.1Z"),
        (1_763_884_800_120_000_000, "2025-11-23T08:00:00.12Z"),
        (1_763_884_800_000_000_100, "2025-11-23T08:00:00.0000001Z"),
        (1_763_884_800_123_456_789, "2025-11-23T08:00:00.123456789Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_time_is_rfc3339nano_trimmed(ns: int, text: str) -> None:
    assert rfc3339nano(ns) == text


def test_complete_line() -> None:
    assert format_line(rec(b"hello")) == (
        b'{"log":"hello\\n","stream":"stdout","time":"2025-11-23T08:00:00.123456789Z"}\n'
    )


def test_partial_chunks_keep_newline_only_on_last() -> None:
    first = rec(b"a" * 3, partial=Partial("f" * 64, 1, False))
    last = rec(b"b", partial=Partial("f" * 64, 2, True))
    assert json.loads(format_line(first))["log"] == "aaa"
    assert json.loads(format_line(last))["log"] == "b\n"


def test_empty_fields_are_omitted_in_dockerd_order() -> None:
    # An empty non-last chunk has no "log" key; no stream no "stream"; attrs sit between stream and time.
    empty = rec(b"", stream="", partial=Partial("0" * 64, 1, False))
    assert format_line(empty) == b'{"time":"2025-11-23T08:00:00.123456789Z"}\n'
    assert format_line(rec(b"", stream="stderr", partial=Partial("0" * 64, 1, False))) == (
        b'{"stream":"stderr","time":"2025-11-23T08:00:00.123456789Z"}\n'
    )
    assert format_line(rec(b"x"), b'{"a":"b"}') == (
        b'{"log":"x\\n","stream":"stdout","attrs":{"a":"b"},"time":"2025-11-23T08:00:00.123456789Z"}\n'
    )
    # An empty complete line is "\n", so it keeps its log key.
    assert format_line(rec(b"")).startswith(b'{"log":"\\n",')


def test_attrs_labels_then_env_then_tag() -> None:
    attrs = Attrs(
        labels=parse_names("app,tier,env,missing"),
        env=parse_names("env,APP_ENV,EMPTY,NOEQUALS"),
        tag=Tag("{{.Name}}/{{.ID}}"),
    ).of(C)
    assert attrs == {
        "app": "shop",
        "tier": "<front>",
        "env": "from-env",  # env wins over the label of the same name
        "APP_ENV": "prod",
        "EMPTY": "",
        "tag": "web/5e5e5e5e5e5e",
    }
    assert marshal_attrs(attrs) == (
        b'{"APP_ENV":"prod","EMPTY":"","app":"shop","env":"from-env","tag":"web/5e5e5e5e5e5e",'
        b'"tier":"\\u003cfront\\u003e"}'
    )


def test_attrs_regexes_are_unanchored_searches() -> None:
    import re

    attrs = Attrs(labels_regex=re.compile(r"x\.a"), env_regex=re.compile("ONE")).of(C)
    assert attrs == {"com.x.a": "1", "X_ONE": "1"}
    assert marshal_attrs({}) == b""


def test_encoder_caches_attrs_per_container() -> None:
    enc = JsonFileEncoder(Attrs(tag=Tag("{{.ImageName}}")))
    line = enc.line(rec(b"x"))
    assert json.loads(line)["attrs"] == {"tag": "shop/web:1"}
    assert enc.line(rec(b"x")) == line


def test_sink_options_and_defaults() -> None:
    s = JsonFileSink({"max-size": "10m", "max-file": "3", "compress": "true", "path": "/x"})
    assert (s.capacity, s.max_files, s.compress) == (10_000_000, 3, True)
    assert s.file_path("ab") == "/x/ab/ab-json.log"
    d = JsonFileSink({})
    assert (d.capacity, d.max_files, d.compress, d.path) == (-1, 1, False, "/var/lib/dockwatch/containers")


@pytest.mark.parametrize(
    ("opts", "key"),
    [
        ({"max-size": "0"}, "max-size"),
        ({"max-size": "lots"}, "max-size"),
        ({"max-file": "0"}, "max-file"),
        ({"max-file": "2.5"}, "max-file"),
        ({"compress": "yes"}, "compress"),
        ({"compress": "true", "max-size": "1m"}, "compress"),  # max-file defaults to 1
        ({"compress": "true", "max-file": "3"}, "compress"),  # no max-size
        ({"labels-regex": "("}, "labels-regex"),
        ({"env-regex": "[a-"}, "env-regex"),
        ({"tag": "{{.Nope}}"}, "tag"),
        ({"max-files": "3"}, "max-files"),  # a typo is refused by name
        ({"path": ""}, "path"),
    ],
)
def test_invalid_options_name_the_key(opts: dict[str, str], key: str) -> None:
    with pytest.raises(SinkConfigError, match=rf"\b{key}\b"):
        JsonFileSink(opts)


def test_compress_false_needs_nothing() -> None:
    assert JsonFileSink({"compress": "false"}).compress is False


def test_the_sink_asks_for_dockers_chunks() -> None:
    """Docker's file has one entry per 16 KiB chunk: the pipeline must not rejoin them for this sink."""
    from exporters.sinks.base import Sink
    from exporters.sinks.json_file import JsonFileSink

    assert JsonFileSink.raw_chunks and not Sink.raw_chunks
