"""`dockwatch top --once` and non-terminal output: one plain table, or JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agent.top.model import COLUMNS, Column, Frame, Row, clip, fit_columns, name_width


def stamp(wall: float) -> str:
    """Local time with milliseconds and the UTC offset: 2024-05-01T12:03:04.512+02:00."""
    return datetime.fromtimestamp(wall).astimezone().isoformat(timespec="milliseconds")


def caption(frame: Frame, source: str, shown: int) -> str:
    span = (
        f"{stamp(frame.start_wall)} → {stamp(frame.end_wall)} "
        f"({frame.elapsed:.3f} s, read {frame.duration:.3f} s)"
        if frame.start_wall is not None and frame.elapsed is not None
        else f"{stamp(frame.end_wall)} (one sample: no rates)"
    )
    node = f"node {frame.node}  " if frame.node else ""
    warn = f"  [{frame.warning}]" if frame.warning else ""
    return f"dockwatch top  {node}{source}  {shown}/{len(frame.rows)} containers  {span}{warn}"


def table(frame: Frame, rows: Sequence[Row], source: str, width: int | None = None) -> str:
    """A caption line, a header and one line per row, columns separated by two spaces.

    `width` (a terminal's) drops the columns that do not fit and clips long names; None (not
    a terminal: a file, a pipe, a script) keeps every column and every name whole.
    """
    nw = name_width(rows)
    cols: list[Column] = list(COLUMNS) if width is None else fit_columns(width, nw)
    texts = [[c.text(r) for c in cols] for r in rows]
    if width is None:
        widths = [max([len(c.header), *(len(t[i]) for t in texts)]) for i, c in enumerate(cols)]
    else:
        widths = [nw if c.key == "name" else c.width for c in cols]

    def line(cells: Sequence[str]) -> str:
        out = []
        for c, w, text in zip(cols, widths, cells, strict=True):
            text = clip(text, w)
            out.append(text.rjust(w) if c.numeric else text.ljust(w))
        return "  ".join(out).rstrip()

    lines = [caption(frame, source, len(rows)), line([c.header for c in cols])]
    lines.extend(line(t) for t in texts)
    return "\n".join(lines) + "\n"


def _iface(i: Any) -> dict[str, Any]:
    c = i.counters
    return {
        "interface": i.name,
        "network": i.network,
        "rx_bytes_per_second": i.rx_bps,
        "tx_bytes_per_second": i.tx_bps,
        "rx_packets_per_second": i.rx_pps,
        "tx_packets_per_second": i.tx_pps,
        "rx_errors_per_second": i.rx_errors,
        "tx_errors_per_second": i.tx_errors,
        "rx_dropped_per_second": i.rx_dropped,
        "tx_dropped_per_second": i.tx_dropped,
        "totals": c._asdict(),
    }


def as_json(frame: Frame, rows: Sequence[Row], source: str) -> str:
    """Rates are null where there was no previous value (a container seen for the first time)."""
    out = {
        "source": source,
        "node": frame.node,
        "start": frame.start_wall,
        "end": frame.end_wall,
        "elapsed_seconds": frame.elapsed,
        "read_seconds": frame.duration,
        "warning": frame.warning or None,
        "containers": [
            {
                "name": r.name,
                "container_id": r.ns.container_id,
                "image": r.ns.image,
                "node": r.ns.node,
                "networks": list(r.ns.networks),
                "project": r.ns.project,
                "service": r.ns.service,
                "shares_namespace_with": list(r.ns.members),
                "rx_bytes_per_second": r.rx_bps,
                "tx_bytes_per_second": r.tx_bps,
                "rx_packets_per_second": r.rx_pps,
                "tx_packets_per_second": r.tx_pps,
                "errors_per_second": r.errors,
                "drops_per_second": r.drops,
                "tcp_established": r.established,
                "tcp_time_wait": r.ns.time_wait,
                "tcp_failed_connects_per_second": r.failed,
                "tcp_retransmits_per_second": r.retrans,
                "tcp_per_second": dict(r.tcp_rates),
                "tcp_states": dict(r.ns.tcp_states) if r.ns.tcp_states is not None else None,
                # This container's own interval (its namespace's reads), which the rates are over.
                "start": r.start_wall,
                "end": r.end_wall,
                "elapsed_seconds": r.elapsed,
                "interfaces": [_iface(i) for i in r.ifaces],
            }
            for r in rows
        ],
    }
    return json.dumps(out, indent=2) + "\n"
