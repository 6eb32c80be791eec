"""The live view: a Textual app over a Source, refreshed every --interval.

    Source.sample() ──► model.compute(prev, cur) ──► Frame ──► filter, sort ──► DataTable
        (every interval, in a worker;                 │
         sampling goes on while paused)               └──► DetailScreen (one container)

Textual (on Rich) gives us key handling, screens, resize and NO_COLOR; the table's columns
are chosen from model.COLUMNS by what fits the terminal's width (dropped, never wrapped).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from datetime import datetime
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from agent.procnet import Socket
from agent.top.model import (
    COLUMN_KEYS,
    COLUMNS,
    Column,
    Frame,
    Row,
    clip,
    compute,
    fit_columns,
    fmt_number,
    name_width,
    parse_filter,
    sort_rows,
)
from agent.top.sources import Source, SourceError

HELP = """\
[b]dockwatch top[/b]: per-container traffic and connections, rates over the last interval

  [b]q[/b] / ctrl+c      quit
  [b]?[/b] / h           this help (esc closes)
  [b]s[/b]               sort: choose the column
  [b]<[/b] [b]>[/b]             sort by the previous / next column
  [b]r[/b]               reverse the order
  [b]/[/b] / f           filter (enter keeps it, esc drops it); terms must all match:
                  name:web  net:backend  project:shop  service:api  (bare: any of them)
                  !term excludes
  [b]esc[/b]             clear the filter
  [b]p[/b] / space       pause the display (sampling goes on; rates stay exact)
  [b]enter[/b] / d       detail of the selected container: interfaces, TCP, sockets
  [b]↑ ↓ PgUp PgDn[/b]   move

Columns (per second unless said; k = 1000, M = 10^6; "-": no previous sample yet):
{columns}

Rates are counter deltas divided by the time between the two samples. A container seen for
the first time shows "-" until its second sample; one that restarted starts again from "-".
"""


def hms(wall: float) -> str:
    return datetime.fromtimestamp(wall).strftime("%H:%M:%S.%f")[:-3]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,h", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        cols = "\n".join(f"  {c.header:<9} {c.help}" for c in COLUMNS)
        with VerticalScroll(id="help"):
            yield Static(HELP.format(columns=cols), id="help-text")


class SortScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,s", "dismiss_none", "Close")]

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        opts = OptionList(*(Option(f"{c.header:<9} {c.help}", id=c.key) for c in COLUMNS), id="sort")
        opts.border_title = "sort by"
        yield opts

    def on_mount(self) -> None:
        opts = self.query_one(OptionList)
        opts.highlighted = [c.key for c in COLUMNS].index(self.current)
        opts.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class DetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace,enter,d", "app.pop_screen", "Back"),
    ]

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail")
        yield Footer()

    def show(self, body: RenderableType) -> None:
        # Closed while its sockets were read, or not composed yet: nothing to update (the next
        # refresh shows it); a NoMatches here would end the sampler.
        for detail in self.query("#detail").results(Static):
            detail.update(body)


def detail_body(
    row: Row | None, frame: Frame, sockets: list[tuple[str, Socket]] | None, names: dict[str, str]
) -> RenderableType:
    """One container: identity, interfaces, TCP, and its sockets where the source has them."""
    if row is None:
        return Text("This container has left (esc: back).")
    ns = row.ns
    f = fmt_number
    head = Text()
    head.append(ns.name, style="bold")
    for label, value in (
        ("id", ns.container_id[:12]),
        ("image", ns.image),
        ("node", ns.node),
        ("project", ns.project),
        ("service", ns.service),
        ("networks", ",".join(ns.networks)),
        ("addresses", ",".join(ns.addresses)),
        ("shares its namespace with", ",".join(ns.members)),
    ):
        if value:
            head.append(f"  {label} ", style="dim")
            head.append(value)
    # This namespace's own interval: standalone times each namespace's read.
    span = (
        f"rates over {row.elapsed:.3f} s, {hms(row.start_wall)} → {hms(row.end_wall)}"
        if row.elapsed is not None and row.start_wall is not None and row.end_wall is not None
        else "first sample: no rates yet"
    )
    head.append(f"\n{span}", style="dim")

    ifs = Table(title="interfaces", title_justify="left", box=None, header_style="bold")
    for h in ("IFACE", "NETWORK", "RXB/s", "TXB/s", "RXPK/s", "TXPK/s", "RXERR/s", "TXERR/s"):
        ifs.add_column(h, justify="left" if h in ("IFACE", "NETWORK") else "right")
    for h in ("RXDROP/s", "TXDROP/s", "RX total", "TX total"):
        ifs.add_column(h, justify="right")
    for i in row.ifaces:
        c = i.counters
        ifs.add_row(
            i.name,
            i.network or "-",
            *(f(v) for v in (i.rx_bps, i.tx_bps, i.rx_pps, i.tx_pps, i.rx_errors, i.tx_errors)),
            *(f(v) for v in (i.rx_dropped, i.tx_dropped)),
            f"{f(c.rx_bytes)}B",
            f"{f(c.tx_bytes)}B",
        )

    tcp = Table(title="tcp", title_justify="left", box=None, header_style="bold")
    gauges = [("established", row.established), ("time-wait", ns.time_wait)]
    rates = [
        ("failed/s", row.failed),
        ("retrans/s", row.retrans),
        ("resets/s", row.tcp_rates.get("EstabResets")),
        ("rst sent/s", row.tcp_rates.get("OutRsts")),
        ("opens out/s", row.tcp_rates.get("ActiveOpens")),
        ("opens in/s", row.tcp_rates.get("PassiveOpens")),
        ("listen drops/s", row.tcp_rates.get("ListenDrops")),
    ]
    for label, _ in gauges + rates:
        tcp.add_column(label, justify="right")
    tcp.add_row(*(f(v) for _, v in gauges + rates))
    parts: list[RenderableType] = [head, Text(""), ifs, Text(""), tcp]
    if ns.tcp_states is not None:
        states = ", ".join(f"{k} {v}" for k, v in sorted(ns.tcp_states.items()) if v)
        parts += [Text(""), Text(f"tcp states (the agent's --collector.tcp-states tier): {states or 'none'}")]
    parts.append(Text(""))
    if sockets is None:
        parts.append(
            Text(
                "listening ports and peers: not in the agent's /metrics; run `dockwatch top` "
                "on that host (standalone) to see them",
                style="dim",
            )
        )
    else:
        parts.extend(_sockets(sockets, names))
    return Group(*parts)


EPHEMERAL = 32768  # Linux's default ip_local_port_range starts here


def _addr(a: object) -> str:
    mapped = getattr(a, "ipv4_mapped", None)  # ::ffff:a.b.c.d from a dual-stack socket
    return str(mapped or a)


def _sockets(sockets: list[tuple[str, Socket]], names: dict[str, str]) -> list[RenderableType]:
    listen = sorted(
        {
            (proto, _addr(s.local), s.local_port)
            for proto, s in sockets
            if (proto == "tcp" and s.state == "listen") or (proto == "udp" and s.remote_port == 0)
        },
        key=lambda t: (t[0], t[2], t[1]),
    )
    served = {port for proto, _, port in listen if proto == "tcp"}
    peers: Counter[tuple[str, str]] = Counter()
    for proto, s in sockets:
        if proto == "tcp" and s.state == "established":
            # A client of ours is on one of our listening ports, or (its listener closed, as
            # single-accept servers do) on a low port with the peer on an ephemeral one.
            inbound = s.local_port in served or s.local_port < EPHEMERAL <= s.remote_port
            way = f"in → :{s.local_port}" if inbound else f"out → :{s.remote_port}"
            peers[(_addr(s.remote), way)] += 1
    lt = Table(title="listening", title_justify="left", box=None, header_style="bold")
    for h in ("PROTO", "ADDRESS", "PORT"):
        lt.add_column(h)
    for proto, addr, port in listen:
        lt.add_row(proto, addr, str(port))
    pt = Table(title="tcp peers (established)", title_justify="left", box=None, header_style="bold")
    for h in ("PEER", "CONTAINER", "DIRECTION", "CONNECTIONS"):
        pt.add_column(h, justify="right" if h == "CONNECTIONS" else "left")
    for (addr, way), count in sorted(peers.items(), key=lambda kv: (-kv[1], kv[0])):
        pt.add_row(addr, names.get(addr, "-"), way, str(count))
    return [lt if listen else Text("listening: none"), Text(""), pt if peers else Text("tcp peers: none")]


class TopApp(App[int]):
    TITLE = "dockwatch top"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #status { height: 2; text-wrap: nowrap; text-overflow: ellipsis; padding: 0 1; }
    #table { height: 1fr; }
    #filter { dock: bottom; display: none; height: 3; }
    #filter.shown { display: block; }
    HelpScreen, SortScreen { align: center middle; }
    #help { width: 100; max-width: 100%; height: auto; max-height: 90%; border: round $accent; }
    #sort { width: 60; max-width: 100%; height: auto; max-height: 90%; border: round $accent; }
    App:nocolor DataTable > .datatable--cursor { text-style: reverse; }
    App:nocolor DataTable > .datatable--header { text-style: bold underline; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit_top", "Quit"),
        Binding("ctrl+c", "quit_top", "Quit", show=False, priority=True),
        Binding("question_mark,h", "help", "Help", key_display="?"),
        Binding("s", "sort_menu", "Sort"),
        Binding("less_than_sign", "sort_step(-1)", "Sort ←", show=False),
        Binding("greater_than_sign", "sort_step(1)", "Sort →", show=False),
        Binding("r", "reverse", "Reverse"),
        Binding("slash,f", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("p,space", "pause", "Pause"),
        Binding("d", "detail", "Detail"),
    ]

    def __init__(
        self,
        source: Source,
        interval: float,
        sort: str = "rx",
        descending: bool = True,
        filter_text: str = "",
        no_color: bool = False,
    ) -> None:
        # NO_COLOR: Textual's own filter then strips colour entirely (with ANSI colours on it
        # would only turn the truecolor theme grey); bold, underline and reverse remain.
        super().__init__(ansi_color=True if no_color else None)
        self.source = source
        self.interval = interval
        self.sort_key = sort
        self.descending = descending
        self.filter_text = filter_text
        self._match = parse_filter(filter_text)
        self.paused = False
        self.shown_frame: Frame | None = None  # what the table shows (frozen while paused)
        self.latest: Frame | None = None
        self.error = ""
        self._cols: list[str] = []
        self._name_w = 0
        self._keys: list[str] = []
        self._filter_before = ""
        self._typing: Timer | None = None

    # --- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield DataTable(id="table", cursor_type="row", zebra_stripes=False)
        yield Input(id="filter", placeholder="filter: name:web net:backend project:shop service:api !exclude")
        yield Footer()

    def on_mount(self) -> None:
        self._render_status()
        self.query_one(DataTable).focus()
        self.sampler()

    def on_resize(self, event: events.Resize) -> None:
        self._render_table()

    # --- sampling ------------------------------------------------------------------------------
    @work(exclusive=True)
    async def sampler(self) -> None:
        try:
            await self.source.start()
        except SourceError as exc:
            self.error = str(exc)  # the standalone inventory keeps trying on its own
        prev = None
        next_at = time.monotonic()
        while True:
            try:
                cur = await self.source.sample()
            except SourceError as exc:
                # Keep `prev`: when the source is back, the rate spans the gap with its real length.
                self.error = str(exc)
            else:
                self.error = ""
                self.latest = compute(prev, cur)
                prev = cur
                if not self.paused:
                    self.shown_frame = self.latest
                    self._render_table()
                await self._refresh_detail()
            self._render_status()
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # a slow sample: start again from now rather than catch up
                next_at = now + self.interval
            await asyncio.sleep(next_at - now)

    # --- rendering -----------------------------------------------------------------------------
    def visible_rows(self) -> list[Row]:
        if self.shown_frame is None:
            return []
        rows = [r for r in self.shown_frame.rows if self._match(r)]
        return sort_rows(rows, self.sort_key, self.descending)

    def _render_status(self) -> None:
        f = self.shown_frame
        line1 = Text("dockwatch top", style="bold")
        if f is not None:
            when = hms(f.end_wall)
            span = (
                f" (Δ{f.elapsed:.3f}s, read {f.duration:.3f}s)"
                if f.elapsed is not None
                else " (first sample)"
            )
            line1.append(f"  {when}{span}")
            if f.node:
                line1.append(f"  node {f.node}")
            line1.append(f"  {len(self.visible_rows())}/{len(f.rows)} containers")
        line1.append(f"  every {self.interval:g}s  {self.source.label}")
        col = COLUMN_KEYS[self.sort_key]
        line2 = Text(f"sort {col.header} {'▼' if self.descending else '▲'}")
        if self.filter_text:
            line2.append(f"  filter: {self.filter_text}")
        if self.paused:
            line2.append("  PAUSED", style="bold reverse")
        warning = self.error or (f.warning if f is not None else "")
        if warning:
            line2.append(f"  {warning}", style="bold red")
        elif self.shown_frame is None:
            line2.append("  waiting for the first sample…")
        self.query_one("#status", Static).update(Text("\n").join([line1, line2]))

    def _header(self, c: Column) -> Text:
        mark = ("▼" if self.descending else "▲") if c.key == self.sort_key else ""
        label = clip(c.header, (self._name_w if c.key == "name" else c.width) - len(mark)) + mark
        return Text(label, justify=c.justify)

    def _render_table(self) -> None:
        if not self.screen_stack:
            return
        table = self.query_one(DataTable)
        rows = self.visible_rows()
        nw = name_width(rows)
        cols = fit_columns(max(20, self.size.width - 2), nw)  # 2: the vertical scrollbar
        keys = [c.key for c in cols]
        selected = self._keys[table.cursor_row] if 0 <= table.cursor_row < len(self._keys) else None
        # Columns rebuilt every time: the header carries the sort mark, and a new width moves
        # columns in or out.
        self._cols, self._name_w = keys, nw
        table.clear(columns=True)
        for c in cols:
            table.add_column(self._header(c), key=c.key, width=nw if c.key == "name" else c.width)
        for r in rows:
            cells = [
                Text(
                    clip(c.text(r), nw if c.key == "name" else c.width),
                    justify="right" if c.numeric else "left",
                )
                for c in cols
            ]
            table.add_row(*cells, key=r.ns.key)
        self._keys = [r.ns.key for r in rows]
        if selected in self._keys:
            table.move_cursor(row=self._keys.index(selected), animate=False)
        self._render_status()

    async def _refresh_detail(self) -> None:
        screen = self.screen
        if not isinstance(screen, DetailScreen) or self.latest is None:
            return
        frame = self.latest if not self.paused else (self.shown_frame or self.latest)
        row = next((r for r in frame.rows if r.ns.key == screen.key), None)
        sockets = None
        if row is not None:
            with contextlib.suppress(SourceError):
                sockets = await self.source.sockets(row.ns)
        names = {a: r.name for r in frame.rows for a in r.ns.addresses}
        screen.show(detail_body(row, frame, sockets, names))

    # --- actions -------------------------------------------------------------------------------
    async def action_quit_top(self) -> None:
        self.workers.cancel_all()
        with contextlib.suppress(Exception):
            await self.source.close()
        self.exit(0)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_sort_menu(self) -> None:
        def chosen(key: str | None) -> None:
            if key is not None:
                self._set_sort(key)

        self.push_screen(SortScreen(self.sort_key), chosen)

    def _set_sort(self, key: str) -> None:
        if key != self.sort_key:
            self.sort_key = key
            self.descending = COLUMN_KEYS[key].numeric  # biggest first; names A→Z
        self._render_table()

    def action_sort_step(self, step: int) -> None:
        keys = [c.key for c in COLUMNS]
        self._set_sort(keys[(keys.index(self.sort_key) + step) % len(keys)])

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self._render_table()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort_key:
            self.action_reverse()
        else:
            self._set_sort(key)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        self._filter_before = self.filter_text
        box.value = self.filter_text
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        # Filter as you type, but once typing pauses: a rebuild of hundreds of rows per key
        # would make typing lag on a big host.
        if self._typing is not None:
            self._typing.stop()
        self._typing = self.set_timer(0.15, lambda: self._apply_filter(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self._typing is not None:
            self._typing.stop()
        self._apply_filter(event.value)
        self._close_filter()

    def _apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._match = parse_filter(self.filter_text)
        self._render_table()

    def _close_filter(self) -> None:
        self.query_one("#filter", Input).remove_class("shown")
        self.query_one(DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus:  # esc while typing: back to the filter there was
            if self._typing is not None:
                self._typing.stop()
            self._apply_filter(self._filter_before)
            self._close_filter()
        else:
            self._apply_filter("")

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused and self.latest is not None:
            self.shown_frame = self.latest
        self._render_table()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open_detail(str(event.row_key.value))

    def action_detail(self) -> None:
        table = self.query_one(DataTable)
        if 0 <= table.cursor_row < len(self._keys):
            self._open_detail(self._keys[table.cursor_row])

    def _open_detail(self, key: str) -> None:
        self.push_screen(DetailScreen(key))
        self.call_after_refresh(self._detail_now)

    def _detail_now(self) -> None:
        self.run_worker(self._refresh_detail(), group="detail")


def run_tui(
    source: Source,
    interval: float,
    sort: str,
    descending: bool,
    filter_text: str,
    no_color: bool,
) -> int:
    app = TopApp(source, interval, sort, descending, filter_text, no_color)
    app.run()
    return app.return_code or 0
