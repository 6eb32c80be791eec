"""Exposition of the per-container families: Prometheus text 0.0.4 or OpenMetrics 1.0.

Hundreds of containers times ~50 series each: the identity label string of a container is
rendered once and reused until the container changes, and lines are joined once. That is what
keeps /metrics cheap; prometheus_client's generic path formats every label of every sample
(bench/render.py measures both).

The sample lines of the two formats are the same bytes; only the HELP/TYPE lines differ (a
counter's OpenMetrics family is named without `_total`). So render() returns an Exposition: the
lines once, with the positions of each family's head, and text() joins them in the asked format,
optionally keeping only the families a `name[]` filter names.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from types import ModuleType

from agent.docker.models import Container
from agent.netstats import CollectResult, Membership, NetnsSample, NsKey
from agent.procnet import DevCounters
from exporters.prometheus import names as n
from exporters.prometheus.families import Family, Metric, generate
from exporters.prometheus.pieces import Piece, slices


def _deflate() -> ModuleType:
    """The gzip of /metrics: Intel ISA-L's deflate (python-isal) where it is installed, zlib's
    otherwise. Same format and, at level 1, the same size of page, for ~a tenth of zlib's CPU
    (3.6 MiB at 500 containers: 0.7 vs 6.8 ms, bench/RESULTS.md); Prometheus asks for gzip at
    every scrape."""
    try:
        from isal import isal_zlib
    except ImportError:  # a platform without its wheel: zlib, slower, the same bytes out
        return zlib
    return isal_zlib


DEFLATE = _deflate()


def escape(value: str) -> str:
    """Label value escaping per the text format: backslash, double quote, newline."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)


@functools.cache
def head(m: n.Metric, openmetrics: bool = False) -> str:
    """The HELP and TYPE lines of a family in either format."""
    if not openmetrics:
        help_ = m.help.replace("\\", "\\\\").replace("\n", "\\n")
        return f"# HELP {m.name} {help_}\n# TYPE {m.name} {m.kind.value}\n"
    # OpenMetrics: a counter family is named without _total; HELP escapes quotes too.
    family = m.name.removesuffix("_total") if m.kind is n.Kind.COUNTER else m.name
    help_ = escape(m.help)
    return f"# HELP {family} {help_}\n# TYPE {family} {m.kind.value}\n"


@functools.cache
def _head_bytes(m: n.Metric) -> bytes:
    return head(m).encode()


@functools.cache
def _om_head_bytes(m: n.Metric) -> bytes:
    return head(m, True).encode()


# The renderer's tables, with each family's `name{` prefix made once: a namespace whose counters
# moved is rendered again at each scrape (bench/scrape_cpu.py --busy), ~500 times a scrape.
_DEV_ROWS = tuple((m.name + "{", DevCounters._fields.index(attr)) for m, attr in n.DEVICE_METRICS)
_MIB_ROWS = tuple((m.name + "{", section, fld) for m, section, fld in n.TCP_MIB_METRICS)
_UDP_ROWS = tuple((m.name + "{", fld) for m, fld in n.UDP_METRICS)
_INUSE_ROWS = ((n.TCP_INUSE.name + "{", "TCP", "TCP6"), (n.UDP_INUSE.name + "{", "UDP", "UDP6"))
_TIME_WAIT = n.TCP_TIME_WAIT.name + "{"
_STATES = n.TCP_STATES.name + "{"
_NONE: Mapping[str, int] = {}


def _render_namespace(s: NetnsSample, ident: str) -> list[bytes]:
    """One namespace's lines for each of _NS_FAMILIES, in its order (b"" where it has none),
    encoded here, once per rendering, not with the whole page at every scrape. 8 µs for a
    namespace with one interface (14 µs before the tables above and the one-interface case)."""
    rows = [
        (f'{ident},interface="{escape(iface)}",network="{escape(s.networks.get(iface, ""))}"}} ', ctr)
        for iface, ctr in s.devices.items()
    ]
    if len(rows) == 1:  # a container's eth0: one line per family
        labels, ctr = rows[0]
        out = [f"{pre}{labels}{ctr[i]}\n" for pre, i in _DEV_ROWS]
    else:
        out = ["".join([f"{pre}{labels}{ctr[i]}\n" for labels, ctr in rows]) for pre, i in _DEV_ROWS]
    add = out.append
    mib = s.mib
    tail = f"{ident}}} "
    for pre, section, fld in _MIB_ROWS:
        v = mib.get(section, _NONE).get(fld)
        add(f"{pre}{tail}{v}\n" if v is not None else "")
    sockstat = s.sockstat
    tw = sockstat.get("TCP", _NONE).get("tw")
    add(f"{_TIME_WAIT}{tail}{tw}\n" if tw is not None else "")
    for pre, v4, v6 in _INUSE_ROWS:
        a, b = sockstat.get(v4, _NONE).get("inuse"), sockstat.get(v6, _NONE).get("inuse")
        add(_two(pre, ident, a, b))
    # UDP: v4 from net/snmp, v6 from net/snmp6.
    udp, udp6 = mib.get("Udp", _NONE), s.udp6
    for pre, fld in _UDP_ROWS:
        add(_two(pre, ident, udp.get(fld), udp6.get(fld)))
    add("".join([f'{_STATES}{ident},state="{st}"}} {c}\n' for st, c in (s.tcp_states or _NONE).items()]))
    return [c.encode() for c in out]


def _two(pre: str, ident: str, v4: int | None, v6: int | None) -> str:
    """A family's ip_version="4" and "6" lines, each where its value exists."""
    a = f'{pre}{ident},ip_version="4"}} {v4}\n' if v4 is not None else ""
    return a + f'{pre}{ident},ip_version="6"}} {v6}\n' if v6 is not None else a


class Exposition:
    """One rendering: its encoded parts as the renderer made them, and where each family is."""

    __slots__ = ("parts", "prefix", "spans")

    def __init__(self, parts: list[bytes], heads: list[tuple[int, n.Metric]]) -> None:
        """`parts`: the encoded lines; `heads`: (index in parts of a family's head line, its
        metric), in order."""
        # The parts, not their join: most are the renderer's kept bytes of each namespace, so a
        # joined page was a second copy of them, ~4 MiB at 500 containers kept between scrapes
        # and built at each one (bench/RESULTS.md, "Memory", session 9).
        ends = [i for i, _ in heads[1:]] + ([len(parts)] if heads else [])
        self.parts = parts
        self.prefix = heads[0][0] if heads else len(parts)  # parts before the first family
        self.spans = [(start, end, m) for (start, m), end in zip(heads, ends, strict=True)]

    def pieces(self, openmetrics: bool = False, names: Collection[str] | None = None) -> Sequence[Piece]:
        """The families in text 0.0.4 or OpenMetrics (without `# EOF`), UTF-8, only `names` if
        given: the kept parts (not copies) whose concatenation is the text."""
        if names is None and not openmetrics:
            return self.parts  # not to be changed by the caller
        out: list[Piece] = []
        if names is None:
            out += self.parts[: self.prefix]
        for start, end, m in self.spans:
            if names is None or m.name in names:
                out.append(_om_head_bytes(m) if openmetrics else self.parts[start])
                out += self.parts[start + 1 : end]
        return out

    def encoded(self, openmetrics: bool = False, names: Collection[str] | None = None) -> bytes:
        """pieces(), joined."""
        return b"".join(self.pieces(openmetrics, names))

    def text(self, openmetrics: bool = False, names: Collection[str] | None = None) -> str:
        """encoded(), as text."""
        return self.encoded(openmetrics, names).decode()

    def __str__(self) -> str:
        return self.text()


def _restrict(families: Iterable[Family], names: Collection[str]) -> Iterator[Family]:
    """Only the samples named in `names` (prometheus_client's name[] semantics: sample names)."""
    for f in families:
        samples = [s for s in f.samples if s.name in names]
        if samples:
            m = Metric(f.name, f.documentation, f.type, f.unit)
            m.samples = samples
            yield m


class FamilyTexts:
    """The text of the agent's own families, per format, kept for the family objects of the last
    page: a collector that hands back the same Metric objects (the network map, while the
    inventory has not changed) is not rendered again. prometheus_client's generic generator costs
    ~20 µs per series; at 500 containers the network map alone was ~9 % of a scrape's CPU
    (bench/RESULTS.md). Small families are rendered every time, together: not worth a lookup."""

    BIG = 32  # samples

    def __init__(self) -> None:
        self._memo: dict[bool, dict[int, tuple[Family, bytes]]] = {False: {}, True: {}}

    def render(self, families: Iterable[Family], openmetrics: bool) -> bytes:
        """What prometheus_client's generate_latest gives for `families` (OpenMetrics: with `# EOF`)."""
        old = self._memo[openmetrics]
        new: dict[int, tuple[Family, bytes]] = {}
        out: list[bytes] = []
        run: list[Family] = []
        for m in families:
            if len(m.samples) < self.BIG:
                run.append(m)
                continue
            if run:
                out.append(generate(run, openmetrics))
                run = []
            hit = old.get(id(m))
            text = hit[1] if hit is not None and hit[0] is m else generate([m], openmetrics)
            new[id(m)] = (m, text)  # the object is kept with its text: its id stays its own
            out.append(text)
        if run:
            out.append(generate(run, openmetrics))
        self._memo[openmetrics] = new  # one assignment: pages served in two threads at once are fine
        return b"".join(out) + (b"# EOF\n" if openmetrics else b"")


class MetricsPage:
    """One collection, ready to serve in either format: the per-container families and the agent's
    own families (read at the same moment), plus the bodies already built from them."""

    def __init__(
        self, exposition: Exposition, own: Iterable[Family], texts: FamilyTexts | None = None
    ) -> None:
        """`texts`: the scraper's memo of family texts across pages (a fresh one if None)."""
        self.exposition = exposition
        self.own = list(own)
        self.texts = texts if texts is not None else FamilyTexts()
        self._tails: dict[bool, bytes] = {}  # the own families' text per format

    def body(
        self, openmetrics: bool = False, names: Collection[str] | None = None, gz: bool = False
    ) -> bytes:
        """The whole exposition (OpenMetrics ends with `# EOF`), gzip level 1 when `gz`."""
        parts = self.parts(openmetrics, names)
        if not gz:
            return b"".join(parts)
        # Level 1: most of the size win for a fraction of the CPU. Fed piece by piece: the page is
        # never joined into one more copy (wbits 31: the gzip container).
        z = DEFLATE.compressobj(1, DEFLATE.DEFLATED, 31)
        return b"".join([*(z.compress(p) for p in slices(parts)), z.flush()])

    def parts(self, openmetrics: bool = False, names: Collection[str] | None = None) -> list[Piece]:
        """The uncompressed body as pieces (see Exposition.pieces): the server writes them as they
        are. A joined body was one more copy of a multi-MiB page per scrape, and the HTTP layer
        joined it with the headers again (bench/RESULTS.md)."""
        tail = self._tails.get(openmetrics) if names is None else None
        if tail is None:
            if names is None:
                tail = self.texts.render(self.own, openmetrics)
            else:  # filtered families are new objects every time: the memo would only lose its own
                tail = generate(_restrict(self.own, names), openmetrics)
                tail += b"# EOF\n" if openmetrics else b""
            if names is None:
                self._tails[openmetrics] = tail
        return [*self.exposition.pieces(openmetrics, names), tail]


# The per-namespace families, in exposition order.
_NS_FAMILIES: tuple[n.Metric, ...] = (
    *(m for m, _ in n.DEVICE_METRICS),
    *(m for m, _, _ in n.TCP_MIB_METRICS),
    n.TCP_TIME_WAIT,
    n.TCP_INUSE,
    n.UDP_INUSE,
    *(m for m, _ in n.UDP_METRICS),
    n.TCP_STATES,
)


class _Rendered:
    """One namespace's lines, one string per family of _NS_FAMILIES, and what they came from."""

    __slots__ = ("chunks", "ident", "sample")

    def __init__(self, ident: str, sample: NetnsSample, chunks: list[bytes]) -> None:
        self.ident = ident
        self.sample = sample
        self.chunks = chunks

    def still(self, ident: str, s: NetnsSample) -> bool:
        """Would `s` render to the same lines? The same sample object, or equal values (an idle
        container's counters do not move between scrapes; comparing dicts of ints is C work)."""
        o = self.sample
        if o is s:
            return ident == self.ident
        return (
            ident == self.ident
            and o.devices == s.devices
            and o.networks == s.networks
            and o.mib == s.mib
            and o.sockstat == s.sockstat
            and o.udp6 == s.udp6
            and o.tcp_states == s.tcp_states
        )


class Renderer:
    def __init__(self) -> None:
        # container id -> (the Container object it was rendered from, node, label string)
        self._ident: dict[str, tuple[Container, str, str]] = {}
        # container id -> (the Container, what else its info line depends on, the line)
        self._info: dict[str, tuple[Container, tuple[str, str, str], bytes]] = {}
        # namespace key -> its last rendering: reused while its values do not change (issue 14:
        # under churn most namespaces are unchanged; at rest, idle containers are).
        self._ns: dict[NsKey, _Rendered] = {}

    def _chunks(self, s: NetnsSample, ident: str) -> list[bytes]:
        hit = self._ns.get(s.inode)
        if hit is not None and hit.still(ident, s):
            hit.sample = s  # the newer object: identity checks hit next time
            return hit.chunks
        chunks = _render_namespace(s, ident)
        self._ns[s.inode] = _Rendered(ident, s, chunks)
        return chunks

    def _forget_namespaces(self, samples: Iterable[NetnsSample]) -> None:
        live = {s.inode for s in samples}
        for k in [k for k in self._ns if k not in live]:
            del self._ns[k]

    def identity(self, c: Container | None, node: str) -> str:
        """`node="..",name="..",...` for a container, or the host namespace when c is None."""
        if c is None:
            return _labels(zip(n.IDENTITY, (node, "", "", "", "", "", "", ""), strict=True))
        hit = self._ident.get(c.id)
        if hit is not None and hit[0] is c and hit[1] == node:
            return hit[2]
        s = _labels(
            zip(
                n.IDENTITY,
                (node, c.name, c.image, c.compose_project, c.compose_service, c.stack, c.service, c.task),
                strict=True,
            )
        )
        self._ident[c.id] = (c, node, s)
        return s

    def forget_except(self, live: Iterable[str]) -> None:
        keep = set(live)
        for cid in [k for k in self._ident if k not in keep]:
            del self._ident[cid]
        for cid in [k for k in self._info if k not in keep]:
            del self._info[cid]

    def render(
        self,
        node: str,
        node_id: str,
        result: CollectResult,
        container_events: Mapping[str, Mapping[str, int]],
        known: Mapping[str, Container],
        health: Iterable[Container],
    ) -> Exposition:
        out: list[bytes] = []
        add = out.append
        heads: list[tuple[int, n.Metric]] = []

        def family(m: n.Metric) -> None:
            heads.append((len(out), m))
            add(_head_bytes(m))

        samples = result.samples
        chunks = [self._chunks(s, self.identity(s.owner, node)) for s in samples]
        self._forget_namespaces(samples)
        with_states = any(s.tcp_states is not None for s in samples)
        for i, fam in enumerate(_NS_FAMILIES):
            if fam is n.TCP_STATES and not with_states:
                continue  # opt-in: no family at all unless the tier ran
            family(fam)
            for ch in chunks:
                if ch[i]:
                    add(ch[i])

        # Inventory: info per container, health, per-container event counters.
        family(n.CONTAINER_INFO)
        for m in result.members:
            add(self._info_line(m, node, node_id))
        family(n.CONTAINER_HEALTH)
        lines: list[str] = []
        for c in health:
            if c.health:
                ok = 1 if c.health == "healthy" else 0
                lines.append(f"{n.CONTAINER_HEALTH.name}{{{self.identity(c, node)}}} {ok}\n")
        add("".join(lines).encode())
        family(n.CONTAINER_EVENTS)
        lines = []
        for cid, counts in container_events.items():
            kc = known.get(cid)
            if kc is None:
                continue
            ident = self.identity(kc, node)
            for action, count in sorted(counts.items()):
                lines.append(f'{n.CONTAINER_EVENTS.name}{{{ident},action="{escape(action)}"}} {count}\n')
        add("".join(lines).encode())
        return Exposition(out, heads)

    def _info_line(self, m: Membership, node: str, node_id: str) -> bytes:
        """A member's container_info line, kept while its container, owner and node are the same."""
        c = m.container
        owner = "host" if m.owner is None else m.owner.name
        key = (node, node_id, owner)
        hit = self._info.get(c.id)
        if hit is not None and hit[0] is c and hit[1] == key:
            return hit[2]
        mode = c.network_mode
        if mode.startswith("container:"):
            mode = "container"
        extra = _labels(
            (("container_id", c.id), ("network_mode", mode), ("netns_owner", owner), ("node_id", node_id))
        )
        line = f"{n.CONTAINER_INFO.name}{{{self.identity(c, node)},{extra}}} 1\n".encode()
        self._info[c.id] = (c, key, line)
        return line
