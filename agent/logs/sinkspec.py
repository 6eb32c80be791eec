"""Sink specs: what a sink is called, its driver and options, and which containers it ships.

Include/exclude by name, image or label (regex), and the opt-out label.

A sink spec comes from `--log-sink/--log-opt` or from the `logs.sinks` list in the YAML file:

    logs:
      sinks:
        - name: central            # checkpoints and metrics are per name
          driver: fluentd          # json-file | syslog | fluentd
          options: {fluentd-address: "tcp://10.0.0.5:24224", tag: "docker.{{.Name}}"}
          include: {name: "^web"}  # every given field must match (re.search)
          exclude: {label: "^tier=debug$", image: "busybox"}   # any match excludes
          events: true             # also ship docker events (agent/logs/events.py), one JSON line each
          events-tag: docker.events   # the tag of those records (default)

`label` matches "key=value" strings. A container with the label `dockwatch.logs=false` is shipped
to no sink at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.docker.models import LOGS_OPT_OUT, Container

_FIELDS = ("name", "image", "label")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SPEC_KEYS = ("name", "driver", "options", "include", "exclude", "events", "events-tag")
EVENTS_TAG = "docker.events"


@dataclass(frozen=True, slots=True)
class Match:
    """Regexes per field; empty matches nothing (include) / excludes nothing (exclude)."""

    name: re.Pattern[str] | None = None
    image: re.Pattern[str] | None = None
    label: re.Pattern[str] | None = None

    @property
    def empty(self) -> bool:
        return self.name is None and self.image is None and self.label is None

    def hits(self, c: Container) -> list[bool]:
        out = []
        if self.name is not None:
            out.append(bool(self.name.search(c.name)))
        if self.image is not None:
            out.append(bool(self.image.search(c.image)))
        if self.label is not None:
            pat = self.label
            out.append(any(pat.search(f"{k}={v}") for k, v in c.labels.items()))
        return out


@dataclass(frozen=True, slots=True)
class SinkSpec:
    name: str
    driver: str
    options: Mapping[str, str] = field(default_factory=dict)
    include: Match = Match()
    exclude: Match = Match()
    events: bool = False  # docker events as records too; include/exclude do not apply to them
    events_tag: str = EVENTS_TAG

    def wants(self, c: Container) -> bool:
        if opted_out(c):
            return False
        if not self.include.empty and not all(self.include.hits(c)):
            return False
        return not any(self.exclude.hits(c))


def opted_out(c: Container) -> bool:
    return c.labels.get(LOGS_OPT_OUT, "").strip().lower() in ("false", "0", "no", "off")


def _match(where: str, raw: Any) -> Match:
    if raw is None:
        return Match()
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping with name, image and/or label regexes")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown (known: {', '.join(_FIELDS)})")
    pats: dict[str, re.Pattern[str]] = {}
    for k, v in raw.items():
        if not isinstance(v, str):
            raise ValueError(f"{where}.{k}: expected a regex string")
        try:
            pats[k] = re.compile(v)
        except re.error as exc:
            raise ValueError(f"{where}.{k}: {v!r} is not a regular expression ({exc})") from None
    return Match(**pats)


def parse_sinks(raw: Any, where: str = "logs.sinks") -> tuple[SinkSpec, ...]:
    """The YAML `logs.sinks` list → specs; ValueError naming the item and field at fault."""
    if raw is None:
        return ()
    if isinstance(raw, Mapping) or not isinstance(raw, list | tuple):
        raise ValueError(f"{where}: expected a list of sinks")
    out: list[SinkSpec] = []
    for i, item in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{w}: expected a mapping with name, driver, options, include, exclude")
        unknown = sorted(set(item) - set(_SPEC_KEYS))
        if unknown:
            raise ValueError(f"{w}.{unknown[0]}: unknown (known: {', '.join(_SPEC_KEYS)})")
        driver = item.get("driver")
        if not isinstance(driver, str) or not driver:
            raise ValueError(f"{w}.driver: required (json-file, syslog or fluentd)")
        name = item.get("name", driver)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{w}.name: {name!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        opts = item.get("options") or {}
        if not isinstance(opts, Mapping):
            raise ValueError(f"{w}.options: expected a mapping of log-opt keys to values")
        options = {}
        for k, v in opts.items():
            if isinstance(v, Mapping | list):
                raise ValueError(f"{w}.options.{k}: expected a string")
            # YAML turns `true` and `3` into bool/int; Docker options are strings.
            options[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
        include = _match(f"{w}.include", item.get("include"))
        exclude = _match(f"{w}.exclude", item.get("exclude"))
        events = item.get("events", False)
        if not isinstance(events, bool):
            raise ValueError(f"{w}.events: expected true or false")
        events_tag = item.get("events-tag", EVENTS_TAG)
        if not isinstance(events_tag, str) or not events_tag:
            raise ValueError(f"{w}.events-tag: expected a non-empty string")
        out.append(SinkSpec(name, driver, options, include, exclude, events, events_tag))
    names = [s.name for s in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ValueError(f"{where}: two sinks named {dup!r} (names key checkpoints and metrics)")
    return tuple(out)


def parse_log_opts(raw: Sequence[str], where: str = "--log-opt") -> dict[str, str]:
    """`KEY=VALUE` strings (as `docker run --log-opt`) → a mapping."""
    out: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{where} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def flag_sink(driver: str, log_opts: Sequence[str], events: bool, events_tag: str) -> SinkSpec:
    """The sink of `--log-sink DRIVER --log-opt K=V ...`, named after its driver."""
    return SinkSpec(driver, driver, parse_log_opts(log_opts), events=events, events_tag=events_tag)
