"""Pure parts of the engine client: the events stream decoder, event normalisation, models."""

from __future__ import annotations

import json

from agent.docker.client import Event, JsonLinesDecoder
from agent.docker.models import Container, parse_engine_time


def test_decoder_reassembles_split_objects() -> None:
    msgs = [{"Type": "container", "Action": "start", "Actor": {"ID": "x" * 64}}, {"Type": "network"}]
    raw = b"".join(json.dumps(m).encode() + b"\n" for m in msgs)
    d = JsonLinesDecoder()
    got = []
    for i in range(len(raw)):  # one byte at a time: the worst chunking a socket can give
        got.extend(d.feed(raw[i : i + 1]))
    assert got == msgs


def test_decoder_skips_garbage_and_keeps_going() -> None:
    d = JsonLinesDecoder()
    assert d.feed(b'not json\n{"Type":"a"}\n[1,2]\n') == [{"Type": "a"}]
    assert d.skipped == 1


def test_decoder_bounds_an_endless_line() -> None:
    d = JsonLinesDecoder()
    d.feed(b"x" * (JsonLinesDecoder.MAX_LINE + 10))
    assert d.skipped == 1
    assert d.feed(b'\n{"ok":1}\n') == [{"ok": 1}]


def test_event_actions_are_bounded() -> None:
    ev = Event.from_api(
        {"Type": "container", "Action": "health_status: healthy", "Actor": {"ID": "abc"}, "timeNano": 5}
    )
    assert (ev.type, ev.action, ev.actor_id, ev.time_nano) == ("container", "health_status", "abc", 5)
    assert (
        Event.from_api({"Type": "container", "Action": "exec_start: sh -c 'echo hi'"}).action == "exec_start"
    )


def test_container_from_inspect_minimal_and_shared_modes() -> None:
    raw = {
        "Id": "a" * 64,
        "Name": "/web",
        "Config": {"Image": "nginx:1", "Labels": None, "Env": ["A=1", "B=x=y"]},
        "HostConfig": {"NetworkMode": "container:" + "b" * 64, "LogConfig": {"Type": "json-file"}},
        "State": {"Pid": 42, "Health": {"Status": "healthy"}},
        "NetworkSettings": {"Networks": {}},
    }
    c = Container.from_inspect(raw)
    assert c.name == "web" and c.pid == 42 and c.labels == {} and c.health == "healthy"
    assert c.joins == "b" * 64 and not c.host_network
    assert c.env_map == {"A": "1", "B": "x=y"}


def test_parse_engine_time_nanoseconds() -> None:
    t = parse_engine_time("2026-11-23T07:43:31.108033652Z")
    assert t is not None and t.microsecond == 108033
    assert parse_engine_time("0001-01-01T00:00:00Z") is None
