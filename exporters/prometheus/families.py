"""The agent's own metric families (self-metrics, log pipeline, network map, process) and their text.

The same shapes and the same bytes as prometheus_client's metric families and its two
generate_latest functions (tests/unit/test_families.py renders the same families with both), without
importing it in the agent: its package imports an HTTP server, wsgiref, urllib.request and email,
~3.3 MiB of the agent's RSS for what is here (issue 14, bench/RESULTS.md). prometheus_client stays
the reference the tests hold this to, and `dockwatch top`'s parser.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None = None
    exemplar: Any = None


class Metric:
    """One family: name (counters without `_total`), HELP text, type, unit, samples."""

    __slots__ = ("documentation", "name", "samples", "type", "unit")

    def __init__(self, name: str, documentation: str, typ: str, unit: str = "") -> None:
        self.name = name
        self.documentation = documentation
        self.type = typ
        self.unit = unit
        self.samples: list[Sample] = []


class _Family(Metric):
    __slots__ = ("_labelnames",)
    TYPE = ""
    SUFFIX = ""

    def __init__(
        self, name: str, documentation: str, value: float | None = None, labels: Sequence[str] | None = None
    ) -> None:
        super().__init__(name.removesuffix(self.SUFFIX) if self.SUFFIX else name, documentation, self.TYPE)
        self._labelnames = tuple(labels or ())
        if value is not None:
            self.add_metric((), value)

    def add_metric(self, labels: Sequence[str], value: float, timestamp: float | None = None) -> None:
        labelled = dict(zip(self._labelnames, labels, strict=True))
        self.samples.append(Sample(self.name + self.SUFFIX, labelled, value, timestamp))


class GaugeMetricFamily(_Family):
    __slots__ = ()
    TYPE = "gauge"


class CounterMetricFamily(_Family):
    __slots__ = ()
    TYPE = "counter"
    SUFFIX = "_total"


class Family(Protocol):
    """What the text generators read of a family: ours, or prometheus_client's (tests build theirs)."""

    @property
    def name(self) -> str: ...

    @property
    def documentation(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def unit(self) -> str: ...

    @property
    def samples(self) -> Sequence[Any]: ...


class Collector(Protocol):
    def collect(self) -> Iterable[Family]: ...


def go_float(d: float) -> str:
    """A value as Go's strconv formats it (prometheus_client's floatToGoString)."""
    d = float(d)
    if d == math.inf:
        return "+Inf"
    if d == -math.inf:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line(s: Any, openmetrics: bool) -> str:
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
    ts = ""
    if s.timestamp is not None:
        ts = f" {s.timestamp}" if openmetrics else f" {int(float(s.timestamp) * 1000):d}"
    value = go_float(s.value)
    return f"{s.name}{{{labels}}} {value}{ts}\n" if labels else f"{s.name} {value}{ts}\n"


_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_OM_ONLY = ("_created", "_gsum", "_gcount")  # text 0.0.4 prints these as gauges after the family


def generate(families: Iterable[Family], openmetrics: bool = False) -> bytes:
    """The families in text 0.0.4, or in OpenMetrics 1.0 without its `# EOF`. Each family is
    printed on its own: the texts of two lists, joined, are the text of both (FamilyTexts keeps
    big families' texts apart on that)."""
    out: list[str] = []
    for m in families:
        if openmetrics:
            out.append(f"# HELP {m.name} {_escape(m.documentation)}\n# TYPE {m.name} {m.type}\n")
            if m.unit:
                out.append(f"# UNIT {m.name} {m.unit}\n")
            out += [_line(s, True) for s in m.samples]
            continue
        name, typ = m.name, m.type
        if typ == "counter":
            name += "_total"
        elif typ == "info":
            name += "_info"
        typ = _TEXT_TYPES.get(typ, typ)
        help_ = m.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {help_}\n# TYPE {name} {typ}\n")
        later: dict[str, list[str]] = {}
        for s in m.samples:
            suffix = next((x for x in _OM_ONLY if s.name == m.name + x), None)
            if suffix is None:
                out.append(_line(s, False))
            else:
                later.setdefault(suffix, []).append(_line(s, False))
        for suffix, lines in sorted(later.items()):
            out.append(f"# HELP {m.name}{suffix} {help_}\n# TYPE {m.name}{suffix} gauge\n")
            out += lines
    return "".join(out).encode()


class ProcessMetrics:
    """process_* of the agent itself from /proc/self, as client_python's ProcessCollector names and
    computes them (every client_python exporter has them; dashboards key on them)."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._pagesize = os.sysconf("SC_PAGE_SIZE")
        self._btime = 0.0
        try:
            with open(os.path.join(proc, "stat"), "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        self._btime = float(line.split()[1])
        except OSError:
            pass

    def collect(self) -> list[Metric]:
        if not self._btime:
            return []
        me = os.path.join(self._proc, "self")
        out: list[Metric] = []
        try:
            with open(os.path.join(me, "stat"), "rb") as f:
                parts = f.read().split(b")")[-1].split()
            out += [
                GaugeMetricFamily(
                    "process_virtual_memory_bytes", "Virtual memory size in bytes.", float(parts[20])
                ),
                GaugeMetricFamily(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                    float(parts[21]) * self._pagesize,
                ),
                GaugeMetricFamily(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    float(parts[19]) / self._ticks + self._btime,
                ),
                CounterMetricFamily(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                    float(parts[11]) / self._ticks + float(parts[12]) / self._ticks,
                ),
            ]
        except OSError:
            pass
        try:
            max_fds = None
            with open(os.path.join(me, "limits"), "rb") as f:
                for line in f:
                    if line.startswith(b"Max open file"):
                        max_fds = float(line.split()[3])
                        break
            fd_dir = os.path.join(me, "fd")
            # The kernel's own count (Linux >= 6.2 gives it as the directory's size): listing the
            # directory made a string per descriptor, ~1 ms per scrape with the collector's kept
            # files (agent/nsfiles.py) at 500 containers. Older kernels say 0: list it, as
            # client_python does (its count includes the listing's own descriptor).
            fds = os.stat(fd_dir).st_size or len(os.listdir(fd_dir))
            out.append(GaugeMetricFamily("process_open_fds", "Number of open file descriptors.", fds))
            if max_fds is not None:
                out.append(
                    GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors.", max_fds)
                )
        except OSError:
            pass
        return out
