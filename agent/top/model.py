"""Two samples of counters → per-container rates. Pure: no I/O, no clock, no terminal.

A sample holds, per network namespace, the same counters the agent exports (net/dev per
interface, the Tcp/TcpExt MIB, sockstat's time-wait), whichever source read them. Rates are
counter deltas divided by the real time between the two samples (the sources stamp each
sample with a monotonic clock). Anything without a previous value to subtract — a container
seen for the first time, an interface just attached, a counter that went backwards because the
container restarted in a fresh namespace — gets no rate (None, shown as "-") instead of a spike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from agent.procnet import DevCounters

HOST_NAME = "(host)"  # how the host's own namespace is shown (the agent exports it with name="")

# The TCP MIB counters whose per-second rate `top` shows, and the gauges it shows as they are.
TCP_RATE_FIELDS: tuple[tuple[str, str], ...] = (
    ("Tcp", "AttemptFails"),
    ("Tcp", "RetransSegs"),
    ("Tcp", "EstabResets"),
    ("Tcp", "OutRsts"),
    ("Tcp", "ActiveOpens"),
    ("Tcp", "PassiveOpens"),
    ("TcpExt", "ListenDrops"),
)


@dataclass(frozen=True, slots=True)
class Iface:
    name: str
    network: str  # Docker network name, "" when unknown
    counters: DevCounters


@dataclass(frozen=True, slots=True)
class NsCounters:
    """One network namespace at one instant, attributed to its owner container."""

    key: str  # stable while the namespace lives; a new namespace gets a new key
    name: str  # the owner container's name; HOST_NAME for the host namespace
    ifaces: tuple[Iface, ...] = ()
    mib: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # "Tcp"/"TcpExt" → field → v
    time_wait: int | None = None
    tcp_states: Mapping[str, int] | None = None  # the agent's opt-in tier, when it runs
    container_id: str = ""
    image: str = ""
    node: str = ""
    project: str = ""  # compose project, else swarm stack
    service: str = ""  # compose service, else swarm service
    members: tuple[str, ...] = ()  # other containers sharing this namespace (container:X, host)
    addresses: tuple[str, ...] = ()  # the owner's IPs, where the source knows them
    pid: int = 0  # the owner's pid, where the source reads /proc itself
    # When this namespace's files were read, where the source knows (standalone): on a busy
    # host one collection takes a while, and each namespace's rate is over its own interval.
    mono: float | None = None
    wall: float | None = None

    @property
    def networks(self) -> tuple[str, ...]:
        return tuple(sorted({i.network for i in self.ifaces if i.network}))

    def tcp(self, section: str, name: str) -> int | None:
        return self.mib.get(section, {}).get(name)


@dataclass(frozen=True, slots=True)
class Sample:
    """Every namespace a source saw in one collection, stamped with when it was read."""

    mono: float  # time.monotonic() at the read: elapsed time between samples comes from this
    wall: float  # time.time() at the same instant, for display and JSON
    namespaces: tuple[NsCounters, ...]
    node: str = ""
    warning: str = ""  # e.g. the engine went away: the containers shown are the last known
    duration: float = 0.0  # how long the read took (`mono` is its middle)


@dataclass(frozen=True, slots=True)
class IfaceRates:
    name: str
    network: str
    counters: DevCounters
    rx_bps: float | None = None
    tx_bps: float | None = None
    rx_pps: float | None = None
    tx_pps: float | None = None
    rx_errors: float | None = None  # per second
    tx_errors: float | None = None
    rx_dropped: float | None = None
    tx_dropped: float | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One namespace's rates over one interval (None: no previous value to subtract)."""

    ns: NsCounters
    ifaces: tuple[IfaceRates, ...]
    tcp_rates: Mapping[str, float]  # "AttemptFails" → per second, for fields with a rate
    rx_bps: float | None = None
    tx_bps: float | None = None
    rx_pps: float | None = None
    tx_pps: float | None = None
    errors: float | None = None  # rx + tx errors per second
    drops: float | None = None  # rx + tx drops per second
    elapsed: float | None = None  # the interval these rates are over
    start_wall: float | None = None
    end_wall: float | None = None

    @property
    def name(self) -> str:
        return self.ns.name

    @property
    def established(self) -> int | None:
        return self.ns.tcp("Tcp", "CurrEstab")

    @property
    def failed(self) -> float | None:
        return self.tcp_rates.get("AttemptFails")

    @property
    def retrans(self) -> float | None:
        return self.tcp_rates.get("RetransSegs")


@dataclass(frozen=True, slots=True)
class Frame:
    """What one refresh shows: the rows and the interval they cover."""

    rows: tuple[Row, ...]
    start_wall: float | None  # None on the first sample: no interval yet
    end_wall: float
    elapsed: float | None
    node: str = ""
    warning: str = ""
    duration: float = 0.0  # how long the newer sample took to read


_DEV_FIELDS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors")
_DEV_DROPS = ("rx_dropped", "tx_dropped")


def _iface_rates(cur: Iface, prev: Iface | None, dt: float | None) -> IfaceRates:
    if prev is None or dt is None:
        return IfaceRates(cur.name, cur.network, cur.counters)
    c, p = cur.counters, prev.counters
    fields = (*_DEV_FIELDS, *_DEV_DROPS)
    deltas = {f: getattr(c, f) - getattr(p, f) for f in fields}
    if any(d < 0 for d in deltas.values()):  # counters went back: a new device under the old name
        return IfaceRates(cur.name, cur.network, cur.counters)
    r = {f: d / dt for f, d in deltas.items()}
    return IfaceRates(
        cur.name,
        cur.network,
        cur.counters,
        rx_bps=r["rx_bytes"],
        tx_bps=r["tx_bytes"],
        rx_pps=r["rx_packets"],
        tx_pps=r["tx_packets"],
        rx_errors=r["rx_errors"],
        tx_errors=r["tx_errors"],
        rx_dropped=r["rx_dropped"],
        tx_dropped=r["tx_dropped"],
    )


def _sum(values: Iterable[float | None]) -> float | None:
    """Sum of the known values; None when none is known (a new container shows "-", not 0)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def rates_of(cur: NsCounters, prev: NsCounters | None, dt: float | None, end: float = 0.0) -> Row:
    """`cur`'s rates since `prev` over `dt` seconds (the samples' interval, ending at wall time
    `end`), or over the namespace's own interval where the source timed each namespace's read.
    The span shown starts at end - elapsed (compute())."""
    if prev is not None and dt is not None and cur.mono is not None and prev.mono is not None:
        dt = cur.mono - prev.mono if cur.mono > prev.mono else None
        end = cur.wall or end
    if prev is None or dt is None:
        prev, dt = None, None
    start = end - dt if dt is not None else None
    prev_ifaces = {i.name: i for i in prev.ifaces} if prev is not None else {}
    ifaces = tuple(_iface_rates(i, prev_ifaces.get(i.name), dt) for i in cur.ifaces)
    tcp: dict[str, float] = {}
    if prev is not None and dt is not None:
        for section, name in TCP_RATE_FIELDS:
            a, b = prev.tcp(section, name), cur.tcp(section, name)
            if a is not None and b is not None and b >= a:
                tcp[name] = (b - a) / dt
    return Row(
        ns=cur,
        ifaces=ifaces,
        tcp_rates=tcp,
        rx_bps=_sum(i.rx_bps for i in ifaces),
        tx_bps=_sum(i.tx_bps for i in ifaces),
        rx_pps=_sum(i.rx_pps for i in ifaces),
        tx_pps=_sum(i.tx_pps for i in ifaces),
        errors=_sum(x for i in ifaces for x in (i.rx_errors, i.tx_errors)),
        drops=_sum(x for i in ifaces for x in (i.rx_dropped, i.tx_dropped)),
        elapsed=dt,
        start_wall=start,
        end_wall=end,
    )


def compute(prev: Sample | None, cur: Sample) -> Frame:
    """The rows of `cur`, with rates over the interval since `prev` (None: the first sample)."""
    dt = cur.mono - prev.mono if prev is not None else None
    if dt is not None and dt <= 0:
        dt = None
    before = {ns.key: ns for ns in prev.namespaces} if prev is not None and dt is not None else {}
    # The interval's start as the wall clock of now tells it (end - elapsed), not as it read at
    # the previous sample: a wall clock stepped or slewed in between (NTP; 10 ms in 2 s was seen
    # on a test machine) would make "start -> end" disagree with the elapsed time shown beside it.
    start = cur.wall - dt if dt is not None else None
    rows = tuple(rates_of(ns, before.get(ns.key), dt, cur.wall) for ns in cur.namespaces)
    return Frame(
        rows=rows,
        start_wall=start,
        end_wall=cur.wall,
        elapsed=dt,
        node=cur.node,
        warning=cur.warning,
        duration=cur.duration,
    )


# --- columns, sorting, filtering --------------------------------------------------------------------
Value = float | int | str | None


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    header: str
    width: int
    numeric: bool
    get: Callable[[Row], Value]
    drop: int  # narrow terminals drop the highest first; 0 is never dropped
    help: str

    @property
    def justify(self) -> Literal["left", "right"]:
        return "right" if self.numeric else "left"

    def text(self, row: Row) -> str:
        v = self.get(row)
        if self.numeric:
            return fmt_number(v if not isinstance(v, str) else None)
        return str(v) if v else "-"


COLUMNS: tuple[Column, ...] = (
    Column("name", "NAME", 24, False, lambda r: r.name, 0, "container name ((host): the host's namespace)"),
    Column("rx", "RXB/s", 6, True, lambda r: r.rx_bps, 0, "bytes received per second"),
    Column("tx", "TXB/s", 6, True, lambda r: r.tx_bps, 0, "bytes transmitted per second"),
    Column("rxp", "RXPK/s", 6, True, lambda r: r.rx_pps, 6, "packets received per second"),
    Column("txp", "TXPK/s", 6, True, lambda r: r.tx_pps, 7, "packets transmitted per second"),
    Column("err", "ERR/s", 5, True, lambda r: r.errors, 4, "receive + transmit errors per second"),
    Column("drop", "DROP/s", 6, True, lambda r: r.drops, 5, "receive + transmit drops per second"),
    Column("estab", "ESTAB", 5, True, lambda r: r.established, 1, "TCP connections established now"),
    Column("fail", "FAIL/s", 6, True, lambda r: r.failed, 2, "failed TCP connection attempts per second"),
    Column("retr", "RETR/s", 6, True, lambda r: r.retrans, 8, "TCP segments retransmitted per second"),
    Column("net", "NETWORKS", 16, False, lambda r: ",".join(r.ns.networks), 3, "Docker networks"),
    Column("project", "PROJECT", 12, False, lambda r: r.ns.project, 9, "compose project or swarm stack"),
    Column("service", "SERVICE", 14, False, lambda r: r.ns.service, 10, "compose service or swarm service"),
)
COLUMN_KEYS: dict[str, Column] = {c.key: c for c in COLUMNS}
DEFAULT_SORT = "rx"


def fmt_number(v: float | int | None) -> str:
    """Three significant digits with an SI suffix (k = 1000): 0, 0.5, 12, 987, 1.23k, 45.6M."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v == 0:
        return "0"
    if abs(v) < 999.5:
        return f"{v:.1f}" if abs(v) < 9.95 and not float(v).is_integer() else f"{v:.0f}"
    for suffix, scale in (("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)):
        x = v / scale
        if abs(x) < 9.995:
            return f"{x:.2f}{suffix}"
        if abs(x) < 99.95:
            return f"{x:.1f}{suffix}"
        if abs(x) < 999.5:
            return f"{x:.0f}{suffix}"
    return f"{v / 1e15:.0f}P"


def parse_number(text: str) -> float | None:
    """The inverse of fmt_number (for tests and scripts reading the plain table)."""
    if text == "-":
        return None
    scale = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}.get(text[-1:], 1.0)
    return float(text[:-1] if scale != 1.0 else text) * scale


def sort_rows(rows: Iterable[Row], key: str, descending: bool) -> list[Row]:
    """Rows by one column; rows without a value ("-") go last either way; ties by name."""
    col = COLUMN_KEYS[key]
    by_name = sorted(rows, key=lambda r: r.name)
    known = [r for r in by_name if col.get(r) not in (None, "")]
    unknown = [r for r in by_name if col.get(r) in (None, "")]
    if col.numeric:
        known.sort(key=lambda r: float(col.get(r) or 0), reverse=descending)
    else:
        known.sort(key=lambda r: str(col.get(r)).lower(), reverse=descending)
    return known + unknown


FILTER_FIELDS: dict[str, Callable[[Row], Sequence[str]]] = {
    "name": lambda r: (r.name,),
    "net": lambda r: r.ns.networks,
    "network": lambda r: r.ns.networks,
    "project": lambda r: (r.ns.project,),
    "service": lambda r: (r.ns.service,),
}


def parse_filter(text: str) -> Callable[[Row], bool]:
    """Space-separated terms, all of which must match (case-insensitive substrings).

    `name:web` `net:backend` `project:shop` `service:api` look in one field; a bare term looks
    in the name, the networks, the project and the service; `!term` excludes.
    """
    terms: list[tuple[bool, Callable[[Row], Sequence[str]] | None, str]] = []
    for raw in text.split():
        neg = raw.startswith("!")
        raw = raw.removeprefix("!")
        fname, sep, value = raw.partition(":")
        getter = FILTER_FIELDS.get(fname.lower()) if sep else None
        terms.append((neg, getter, (value if getter else raw).lower()))

    def match(row: Row) -> bool:
        for neg, getter, needle in terms:
            if getter is not None:
                hay: Sequence[str] = getter(row)
            else:
                hay = (row.name, *row.ns.networks, row.ns.project, row.ns.service)
            if any(needle in h.lower() for h in hay) == neg:
                return False
        return True

    return match


def fit_columns(width: int, name_width: int, pad: int = 2) -> list[Column]:
    """The columns that fit `width` cells: narrow terminals drop columns rather than wrap."""
    cols = list(COLUMNS)

    def need(cs: list[Column]) -> int:
        return sum((name_width if c.key == "name" else c.width) + pad for c in cs)

    while need(cols) > width and any(c.drop for c in cols):
        worst = max((c for c in cols if c.drop), key=lambda c: c.drop)
        cols.remove(worst)
    return cols


def name_width(rows: Iterable[Row], cap: int = 32) -> int:
    return max(12, min(cap, max((len(r.name) for r in rows), default=12)))


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
