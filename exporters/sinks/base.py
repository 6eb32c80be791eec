"""What every log sink is: Docker-named options, a pure format step, an I/O step with an outcome.

The pipeline owns batching, retry with backoff and checkpoints; a sink only says how a batch went,
with the log core's `Outcome` (the contract is agent/logs/sink.py). Network sinks connect through
exporters/sinks/upstream.py.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from agent.docker.models import Container
from agent.logs.record import LogRecord
from agent.logs.sink import Outcome as Outcome  # the core's; re-exported for the sinks


class SinkConfigError(ValueError):
    """A sink option is unknown or invalid; the message names the option and what was expected."""


@dataclass(frozen=True, slots=True)
class Option:
    """One `--log-opt` key, named as in Docker's driver, with its parser."""

    name: str
    help: str
    default: str | None = None
    parse: Callable[[str], Any] = str


def parse_options(driver: str, spec: Sequence[Option], given: Mapping[str, str]) -> dict[str, Any]:
    """Validate `given` against `spec`: unknown keys and bad values raise SinkConfigError by name."""
    known = {o.name: o for o in spec}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise SinkConfigError(
            f"log-opt {unknown[0]!r}: not an option of the {driver} sink (known: {', '.join(sorted(known))})"
        )
    out: dict[str, Any] = {}
    for opt in spec:
        raw = given.get(opt.name, opt.default)
        if raw is None:
            out[opt.name] = None
            continue
        try:
            out[opt.name] = opt.parse(raw)
        except (ValueError, TypeError) as exc:
            raise SinkConfigError(f"log-opt {opt.name}={raw!r} for the {driver} sink: {exc}") from None
    return out


# --- parsers for option values, in Docker's syntax ------------------------------------------------
def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool, which Docker uses."""
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError("expected a boolean (true or false)")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(value: str) -> int:
    """docker/go-units FromHumanSize (decimal: 10k = 10000, 10m = 10000000), as json-file's max-size."""
    m = _SIZE.match(value)
    if not m:
        raise ValueError("expected a size such as 10m or 512k")
    # FromHumanSize is decimal and ignores an "i" (10mi is still 10,000,000), unlike RAMInBytes.
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: str) -> float:
    """Go's time.ParseDuration (e.g. 1s, 500ms, 1m30s); returns seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    if value == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(value) or not value:
        raise ValueError("expected a duration such as 1s or 500ms")
    return total


def parse_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError("expected an integer") from None


def parse_regex(value: str) -> re.Pattern[str] | None:
    if not value:
        return None
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None


def parse_names(value: str) -> tuple[str, ...]:
    """Docker splits `labels`/`env` on "," and looks each name up as is (no trimming)."""
    return tuple(value.split(",")) if value else ()


def extra_attribute_options(where: str) -> tuple[Option, ...]:
    """Docker's `labels`, `labels-regex`, `env`, `env-regex`; `where` says where they end up."""
    return (
        Option("labels", f"container labels to add {where}", "", parse_names),
        Option("labels-regex", f"labels matching this regex are added {where}", "", parse_regex),
        Option("env", f"container env vars to add {where}", "", parse_names),
        Option("env-regex", f"env vars matching this regex are added {where}", "", parse_regex),
    )


@dataclass(frozen=True, slots=True)
class ExtraAttributes:
    """Docker's extra-attribute options (`labels`, `labels-regex`, `env`, `env-regex`), shared by
    the sinks that carry them (json-file's attrs, fluentd's record keys)."""

    labels: tuple[str, ...] = ()
    labels_regex: re.Pattern[str] | None = None
    env: tuple[str, ...] = ()
    env_regex: re.Pattern[str] | None = None

    @classmethod
    def from_options(cls, o: Mapping[str, Any]) -> ExtraAttributes:
        """From options parsed with extra_attribute_options()."""
        return cls(o["labels"], o["labels-regex"], o["env"], o["env-regex"])

    def attributes(self, container: Container) -> dict[str, str]:
        """logger.Info.ExtraAttributes: labels first, then env, so env wins on the same key."""
        out: dict[str, str] = {}
        for name in self.labels:
            if name in container.labels:
                out[name] = container.labels[name]
        if self.labels_regex is not None:
            # Go's MatchString is unanchored, like re.search.
            out |= {k: v for k, v in container.labels.items() if self.labels_regex.search(k)}
        env: dict[str, str] = {}
        for kv in container.env:
            k, eq, v = kv.partition("=")
            if eq:  # Docker skips entries without "=" (strings.Cut)
                env[k] = v
        for name in self.env:
            if name in env:
                out[name] = env[name]
        if self.env_regex is not None:
            out |= {k: v for k, v in env.items() if self.env_regex.search(k)}
        return out


class Sink(abc.ABC):
    """A log destination (agent.logs.sink.Sink); one file per subclass, listed in exporters.sinks.SINKS."""

    driver: ClassVar[str]  # Docker's driver name: "json-file", "syslog", "fluentd"
    options: ClassVar[Sequence[Option]]
    # True: the pipeline gives this sink Docker's 16 KiB chunks as they came (with Partial
    # metadata), whatever `logs.join-partial` says; False: rejoined lines when it is on.
    raw_chunks: ClassVar[bool] = False

    def __init__(self, opts: Mapping[str, str], *, name: str | None = None, hostname: str = "") -> None:
        self.name = name or self.driver
        self.hostname = hostname  # the Docker host's name, as Docker's drivers use os.Hostname()
        self.opts = parse_options(self.driver, self.options, opts)
        self.last_error = ""  # why the last send() returned RETRY; the pipeline reports it, rate-limited

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect or create what the sink needs; may raise, the pipeline retries."""

    @abc.abstractmethod
    async def send(self, batch: Sequence[LogRecord]) -> Outcome:
        """Deliver a batch; OK only once the peer (or file) has it."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release; called once on shutdown."""
