"""The fluentd sink's pure steps: Docker's record map, EventTime, each mode's wire bytes, options."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import struct
from typing import Any

import msgpack
import pytest

from agent.docker.models import Container
from agent.logs.record import LogRecord, Partial
from exporters.sinks import SINKS
from exporters.sinks.base import ExtraAttributes, SinkConfigError
from exporters.sinks.fluentd import (
    FluentdSink,
    ForwardEncoder,
    event_time,
    parse_address,
    parse_ram_in_bytes,
    password_digest,
    record_map,
    shared_key_digest,
)
from exporters.sinks.tag import Tag
from exporters.sinks.upstream import Address

CID = "3f4e9b2a1c0d" + "ab" * 26
T_NS = 1_763_884_800_123_456_789  # 2025-11-23T08:00:00.123456789Z

WEB = Container(
    id=CID,
    name="web-1",
    image="busybox",
    image_id="sha256:" + "cd" * 32,
    pid=42,
    network_mode="default",
    labels={"app": "shop", "tier": "front", "com.example.team": "core"},
    env=("PATH=/bin", "APP_ENV=prod", "tier=from-env", "NOVALUE"),
)
DB = Container(
    id="9" * 64, name="db", image="busybox", image_id="sha256:" + "ef" * 32, pid=43, network_mode="default"
)


def rec(
    line: bytes, *, c: Container = WEB, stream: str = "stdout", t: int = T_NS, p: Partial | None = None
) -> LogRecord:
    return LogRecord(container=c, stream=stream, time_ns=t, line=line, partial=p)


def encoder(**kw: Any) -> ForwardEncoder:
    ids = iter(f"chunk-{i}" for i in range(1000))
    kw.setdefault("tag", Tag("{{.ID}}"))
    kw.setdefault("extras", ExtraAttributes())
    return ForwardEncoder(chunk_id=lambda: next(ids), **kw)


def unpack(data: bytes) -> Any:
    """Exactly one msgpack object, raw (str values stay bytes) so invalid UTF-8 is visible."""
    up = msgpack.Unpacker(raw=True, strict_map_key=False)
    up.feed(data)
    objs = list(up)
    assert len(objs) == 1, f"expected one message in the frame, got {len(objs)}"
    return objs[0]


# --- record map ----------------------------------------------------------------------------------------
def test_record_map_is_dockers_for_a_complete_line() -> None:
    assert record_map(rec(b"hello world", stream="stderr"), {}) == {
        "container_id": CID,
        "container_name": "/web-1",
        "source": "stderr",
        "log": b"hello world",
    }


def test_record_map_partial_chunk_carries_dockers_partial_keys_as_strings() -> None:
    pid = "a1" * 32
    first = record_map(rec(b"x" * 16384, p=Partial(pid, 1, False)), {})
    last = record_map(rec(b"tail", p=Partial(pid, 3, True)), {})
    assert {k: first[k] for k in first if k.startswith("partial_")} == {
        "partial_message": "true",
        "partial_id": pid,
        "partial_ordinal": "1",
        "partial_last": "false",
    }
    assert last["partial_ordinal"] == "3" and last["partial_last"] == "true"
    assert all(isinstance(v, str | bytes) for v in first.values())


def test_partial_keys_win_over_extra_attributes_as_in_docker() -> None:
    # moby copies the extras first, then sets partial_*: a label named partial_id cannot spoof it
    got = record_map(rec(b"x", p=Partial("b" * 64, 2, False)), {"partial_id": "spoof", "app": "shop"})
    assert got["partial_id"] == "b" * 64 and got["app"] == "shop"


def test_extra_attributes_labels_then_env_and_env_wins() -> None:
    extras = ExtraAttributes(labels=("app", "tier", "missing"), env=("APP_ENV", "tier", "NOVALUE", "NOPE"))
    assert extras.attributes(WEB) == {"app": "shop", "tier": "from-env", "APP_ENV": "prod"}


def test_extra_attributes_regexes_are_unanchored_like_go() -> None:
    extras = ExtraAttributes(labels_regex=re.compile(r"example"), env_regex=re.compile(r"^APP_"))
    assert extras.attributes(WEB) == {"com.example.team": "core", "APP_ENV": "prod"}


# --- time ------------------------------------------------------------------------------------------------
def test_time_is_integer_seconds_without_sub_second_precision() -> None:
    assert event_time(T_NS, False) == 1_763_884_800
    assert msgpack.packb(event_time(T_NS, False)) == b"\xce" + struct.pack(">I", 1_763_884_800)


def test_event_time_is_fixext8_type0_with_big_endian_seconds_and_nanoseconds() -> None:
    wire = msgpack.packb(event_time(T_NS, True))
    assert wire == b"\xd7\x00" + struct.pack(">I", 1_763_884_800) + struct.pack(">I", 123_456_789)


# --- wire bytes per mode ------------------------------------------------------------------------------
def test_message_mode_is_dockers_four_element_array_with_empty_option() -> None:
    (frame,) = encoder(mode="Message").encode([rec(b"hello")])
    tag, t, record, option = unpack(frame.data)
    assert (tag, t, option) == (b"3f4e9b2a1c0d", 1_763_884_800, {})
    assert record[b"log"] == b"hello" and record[b"container_name"] == b"/web-1"
    assert frame.chunk is None and frame.events == 1


def test_message_mode_with_ack_has_one_chunk_per_message() -> None:
    frames = encoder(mode="Message", request_ack=True).encode([rec(b"a"), rec(b"b")])
    assert [unpack(f.data)[3] for f in frames] == [{b"chunk": b"chunk-0"}, {b"chunk": b"chunk-1"}]
    assert [f.chunk for f in frames] == ["chunk-0", "chunk-1"]


def test_invalid_utf8_goes_as_msgpack_str_with_the_raw_bytes_like_a_go_string() -> None:
    (frame,) = encoder(mode="Message").encode([rec(b"\xff\xfeok")])
    # fixstr "log", then fixstr of length 4 (0xa4) holding the raw bytes: str type, not bin (0xc4)
    assert b"\xa3log\xa4\xff\xfeok" in frame.data


def test_packed_forward_is_tag_bin_entries_and_size_option() -> None:
    enc = encoder(sub_second=True, request_ack=True)
    (frame,) = enc.encode([rec(b"one"), rec(b"two", stream="stderr", t=T_NS + 1)])
    tag, entries, option = unpack(frame.data)
    assert tag == b"3f4e9b2a1c0d" and option == {b"size": 2, b"chunk": b"chunk-0"}
    # entries must be bin (0xc4/0xc5/0xc6: bin 8/16/32) right after the 12-char fixstr tag
    assert frame.data[1 + 1 + 12] in (0xC4, 0xC5, 0xC6)
    up = msgpack.Unpacker(raw=True)
    up.feed(entries)
    got = list(up)
    assert [e[1][b"log"] for e in got] == [b"one", b"two"]
    assert got[1][0] == msgpack.ExtType(0, struct.pack(">II", 1_763_884_800, 123_456_790))
    assert got[1][1][b"source"] == b"stderr"


def test_compressed_packed_forward_is_gzip_of_the_same_entries() -> None:
    plain = encoder().encode([rec(b"one"), rec(b"two")])[0]
    gz = encoder(compress="gzip").encode([rec(b"one"), rec(b"two")])[0]
    _, entries, _ = unpack(plain.data)
    _, blob, option = unpack(gz.data)
    assert option == {b"size": 2, b"compressed": b"gzip"}
    assert blob[:2] == b"\x1f\x8b" and gzip.decompress(blob) == entries


def test_forward_mode_is_an_array_of_time_record_pairs() -> None:
    (frame,) = encoder(mode="Forward").encode([rec(b"one"), rec(b"two")])
    _, entries, option = unpack(frame.data)
    assert option == {b"size": 2}
    assert [(t, r[b"log"]) for t, r in entries] == [(1_763_884_800, b"one"), (1_763_884_800, b"two")]


def test_a_batch_is_grouped_by_tag_keeping_order_within_each_container() -> None:
    frames = encoder().encode([rec(b"w1"), rec(b"d1", c=DB), rec(b"w2"), rec(b"d2", c=DB)])
    decoded = []
    for f in frames:
        tag, entries, _ = unpack(f.data)
        up = msgpack.Unpacker(raw=True)
        up.feed(entries)
        decoded.append((tag, [r[b"log"] for _, r in up]))
    assert decoded == [(b"3f4e9b2a1c0d", [b"w1", b"w2"]), (b"999999999999", [b"d1", b"d2"])]


def test_tag_template_and_extras_apply_per_container() -> None:
    enc = encoder(tag=Tag("docker.{{.Name}}"), extras=ExtraAttributes(labels=("app",)), mode="Message")
    tag, _, record, _ = unpack(enc.encode([rec(b"x")])[0].data)
    assert tag == b"docker.web-1" and record[b"app"] == b"shop"


def test_large_batches_split_into_messages_under_the_size_limit_without_reordering() -> None:
    lines = [b"%04d" % i + b"." * 200 for i in range(100)]
    frames = encoder(max_message_size=2000, request_ack=True).encode([rec(x) for x in lines])
    assert len(frames) > 5
    got = []
    for f in frames:
        _, entries, option = unpack(f.data)
        assert len(entries) <= 2000
        up = msgpack.Unpacker(raw=True)
        up.feed(entries)
        part = [r[b"log"] for _, r in up]
        assert option[b"size"] == len(part) == f.events
        got += part
    assert got == lines
    assert len({f.chunk for f in frames}) == len(frames)


def test_default_chunk_ids_are_base64_of_128_bits_and_unique() -> None:
    enc = ForwardEncoder(tag=Tag("{{.ID}}"), extras=ExtraAttributes(), request_ack=True)
    ids = [f.chunk for f in enc.encode([rec(b"a"), rec(b"b", c=DB)])]
    assert all(id_ is not None and len(base64.b64decode(id_)) == 16 for id_ in ids)
    assert len(set(ids)) == 2


# --- handshake digests ----------------------------------------------------------------------------------
def test_shared_key_digest_is_sha512_hex_of_salt_hostname_nonce_key() -> None:
    nonce = bytes(range(16))
    want = hashlib.sha512(b"salt" + b"agent.example" + nonce + b"s3cret").hexdigest()
    assert shared_key_digest("salt", "agent.example", nonce, "s3cret") == want
    assert len(want) == 128


def test_password_digest_is_sha512_hex_of_auth_salt_username_password() -> None:
    auth = b"\x00\x01salt"
    assert password_digest(auth, "alice", "pw") == hashlib.sha512(auth + b"alicepw").hexdigest()


# --- options -----------------------------------------------------------------------------------------------
def test_registered_under_dockers_driver_name() -> None:
    assert SINKS["fluentd"] is FluentdSink


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("", Address("tcp", "127.0.0.1", 24224)),
        ("fluentd.local", Address("tcp", "fluentd.local", 24224)),
        ("tcp://10.0.0.5:5170", Address("tcp", "10.0.0.5", 5170)),
        ("tcp://:5170", Address("tcp", "127.0.0.1", 5170)),
        ("tls://logs.example:24284", Address("tls", "logs.example", 24284)),
        ("unix:///run/fluentd.sock", Address("unix", path="/run/fluentd.sock")),
    ],
)
def test_address_parses_like_docker(value: str, want: Address) -> None:
    assert parse_address(value) == want


def test_buffer_limit_uses_dockers_binary_units() -> None:
    assert [parse_ram_in_bytes(v) for v in ("1048576", "1k", "8m", "1.5KiB")] == [
        1048576,
        1024,
        8 * 2**20,
        1536,
    ]


def test_defaults_match_docker() -> None:
    s = FluentdSink({})
    assert s.address == Address("tcp", "127.0.0.1", 24224)
    assert s.opts["tag"].template == "{{.ID}}"
    assert s.opts["fluentd-sub-second-precision"] is False and s.request_ack is False
    assert s.opts["fluentd-max-retries"] == 2**31 - 1 and s.opts["fluentd-buffer-limit"] == 2**20
    assert s.encoder.mode == "PackedForward" and not s.async_connect


@pytest.mark.parametrize(
    ("opts", "key"),
    [
        ({"fluentd-address": "udp://h:1"}, "fluentd-address"),
        ({"fluentd-address": "unix://"}, "fluentd-address"),
        ({"fluentd-address": "tcp://h:70000"}, "fluentd-address"),
        ({"fluentd-address": "tcp://h:1/path"}, "fluentd-address"),
        ({"fluentd-async": "yes"}, "fluentd-async"),
        ({"fluentd-async": "true", "fluentd-async-connect": "true"}, "fluentd-async-connect"),
        ({"fluentd-async-reconnect-interval": "50ms"}, "fluentd-async-reconnect-interval"),
        ({"fluentd-async-reconnect-interval": "11s"}, "fluentd-async-reconnect-interval"),
        ({"fluentd-buffer-limit": "lots"}, "fluentd-buffer-limit"),
        ({"fluentd-retry-wait": "1 second"}, "fluentd-retry-wait"),
        ({"fluentd-max-retries": "-1"}, "fluentd-max-retries"),
        ({"fluentd-max-retries": "2147483648"}, "fluentd-max-retries"),
        ({"fluentd-sub-second-precision": "on"}, "fluentd-sub-second-precision"),
        ({"fluentd-request-ack": "1x"}, "fluentd-request-ack"),
        ({"fluentd-write-timeout": "-1s"}, "fluentd-write-timeout"),
        ({"fluentd-read-timeout": "soon"}, "fluentd-read-timeout"),
        ({"labels-regex": "("}, "labels-regex"),
        ({"env-regex": "[a-"}, "env-regex"),
        ({"tag": "{{.Nope}}"}, "tag"),
        ({"fluentd-mode": "Batch"}, "fluentd-mode"),
        ({"fluentd-compress": "zstd"}, "fluentd-compress"),
        ({"fluentd-compress": "gzip", "fluentd-mode": "Message"}, "fluentd-compress"),
        ({"fluentd-max-message-size": "big"}, "fluentd-max-message-size"),
        ({"fluentd-username": "u", "fluentd-password": "p"}, "fluentd-username"),
        ({"fluentd-shared-key": "k", "fluentd-username": "u"}, "fluentd-password"),
        ({"fluentd-tls-ca-cert": "/etc/hostname"}, "fluentd-tls-ca-cert"),
        ({"fluentd-address": "tls://h:1", "fluentd-tls-cert": "/etc/hostname"}, "fluentd-tls-key"),
        (
            {"fluentd-address": "tls://h:1", "fluentd-tls-ca-cert": "/nonexistent/ca.pem"},
            "fluentd-tls-ca-cert",
        ),
        ({"fluentd-adress": "tcp://h:1"}, "fluentd-adress"),
    ],
)
def test_invalid_options_are_refused_naming_the_key(opts: dict[str, str], key: str) -> None:
    with pytest.raises(SinkConfigError) as err:
        FluentdSink(opts)
    assert str(err.value).startswith((f"log-opt {key}=", f"log-opt {key!r}:")), str(err.value)


def test_dockers_legacy_async_connect_is_accepted() -> None:
    assert FluentdSink({"fluentd-async-connect": "true"}).async_connect
