"""Helpers for `dockwatch top` tests: a real terminal (tmux), a reader of its screen, and a
recorder of the kernel's counters to compare the rates shown with."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from agent import procnet
from agent.top.model import parse_number
from tests.support.toolbox import wait_for

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


class Tmux:
    """`dockwatch top ARGS` in a detached tmux session on a private tmux server."""

    def __init__(
        self, args: list[str], width: int = 200, height: int = 40, env: dict[str, str] | None = None
    ) -> None:
        self.server = f"dwtest-top-{uuid.uuid4().hex[:8]}"
        self.rc_file = Path(tempfile.mkdtemp(prefix="dwtop-")) / "rc"
        self.err_file = self.rc_file.with_name("stderr")
        envs = {"PYTHONPATH": str(REPO), **(env or {})}
        cmd = " ".join(
            [
                "cd",
                shlex.quote(str(REPO)),
                "&&",
                "env",
                *(shlex.quote(f"{k}={v}") for k, v in envs.items()),
                shlex.quote(sys.executable),
                "-m",
                "agent",
                "top",
                *(shlex.quote(a) for a in args),
                ";",  # stderr stays the terminal: Textual draws on it
                f"echo $? > {shlex.quote(str(self.rc_file))};",
                "sleep 600",  # keep the pane, so the last screen can still be read
            ]
        )
        # Not the shell's DOCKWATCH_* (the CLI refuses unknown ones, e.g. DOCKWATCH_TEST_STOP_ENGINE
        # that tests/run.sh sets), nor its DOCKER_HOST: the test says what top reads.
        env_clean = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NO_COLOR", "TMUX", "DOCKER_HOST") and not k.startswith("DOCKWATCH_")
        }
        env_clean["TERM"] = "xterm-256color"
        self._tmux("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height), cmd, env=env_clean)
        # tmux holds a lone ESC for 500 ms by default to see whether a sequence follows, so "esc"
        # then "/" would reach top as alt+/; pass ESC on at once, as a terminal does.
        self._tmux("set-option", "-s", "escape-time", "0")
        self.socket = Path(self._tmux("display-message", "-p", "#{socket_path}").strip())

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        res = subprocess.run(
            ["tmux", "-L", self.server, *args], capture_output=True, text=True, timeout=30, env=env
        )
        if res.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {res.stderr}")
        return res.stdout

    def screen(self, escapes: bool = False) -> str:
        return self._tmux("capture-pane", "-p", "-t", "top", *(["-e"] if escapes else []))

    def stable_screen(self) -> str:
        """A screen read twice alike: not caught half-way through a redraw."""
        return str(wait_for(self._stable, timeout=10, interval=0.02, what="a stable screen"))

    def _stable(self) -> str:
        a = self.screen()
        return a if a == self.screen() else ""

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "top", *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "top", "-l", text)

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "top", "-x", str(width), "-y", str(height))

    def wait(self, cond: Callable[[str], T | None], timeout: float = 30, what: str = "screen") -> T:
        """Poll the screen until cond(screen) is truthy; return cond's value."""
        last = [""]

        def check() -> T | None:
            last[0] = self.screen()
            return cond(last[0])

        try:
            return wait_for(check, timeout=timeout, interval=0.1, what=what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; last screen:\n{last[0]}\nstderr: {self.stderr()}") from None

    def exit_code(self) -> int | None:
        try:
            return int(self.rc_file.read_text())
        except (OSError, ValueError):
            return None

    def stderr(self) -> str:
        try:
            return self.err_file.read_text()[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=30)
        self.socket.unlink(missing_ok=True)  # tmux leaves the socket file behind


# --- reading the screen ---------------------------------------------------------------------------
_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) \(Δ(\d+\.\d+)s, read (\d+\.\d+)s\)")


@dataclass
class Screen:
    end: float | None  # epoch seconds of the newer sample, from the header
    elapsed: float | None
    read: float | None  # how long the newer sample took to read
    headers: list[str]
    rows: list[dict[str, str]]
    text: str
    sort_mark: str = ""
    names: list[str] = field(default_factory=list)

    def row(self, name: str) -> dict[str, str] | None:
        return next((r for r in self.rows if r["NAME"] == name), None)


def epoch_of(h: int, m: int, s: int, ms: int) -> float:
    """A wall-clock time of today (or yesterday/tomorrow around midnight) → epoch seconds."""
    now = datetime.now()
    base = now.replace(hour=h, minute=m, second=s, microsecond=ms * 1000)
    best = min((base + timedelta(days=d) for d in (-1, 0, 1)), key=lambda t: abs((t - now).total_seconds()))
    return best.timestamp()


def read_screen(text: str) -> Screen:
    lines = text.splitlines()
    end = elapsed = read = None
    m = _TIME.search(lines[0]) if lines else None
    if m:
        end = epoch_of(*(int(g) for g in m.groups()[:4]))
        elapsed = float(m.group(5))
        read = float(m.group(6))
    headers: list[str] = []
    rows: list[dict[str, str]] = []
    mark = ""
    for i, ln in enumerate(lines):
        toks = ln.split()
        if toks and toks[0].startswith("NAME") and len(toks) > 2:
            for t in toks:
                if t[-1] in "▲▼":
                    mark = t
            headers = [t.rstrip("▲▼") for t in toks]
            for row_line in lines[i + 1 :]:
                cells = row_line.split()
                if len(cells) != len(headers):
                    break
                rows.append(dict(zip(headers, cells, strict=True)))
            break
    return Screen(end, elapsed, read, headers, rows, text, mark, [r["NAME"] for r in rows])


# --- the kernel's side ----------------------------------------------------------------------------
class KernelRecorder:
    """Reads <pid>'s eth0 counters from /proc every few ms, for at most `limit` seconds."""

    def __init__(self, pid: int, iface: str = "eth0", limit: float = 300.0) -> None:
        self.path = Path(f"/proc/{pid}/net/dev")
        self.iface = iface
        self.t: list[float] = []
        self.c: list[procnet.DevCounters] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            before = time.time()
            ctr = procnet.parse_net_dev(self.path.read_text())[self.iface]
            after = time.time()
            self.t.append((before + after) / 2)
            self.c.append(ctr)
            self._stop.wait(0.005)

    @staticmethod
    def once(pid: int, iface: str = "eth0") -> procnet.DevCounters:
        return procnet.parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text())[iface]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def value(self, when: float, attr: str) -> float:
        """The counter at `when`, interpolated between the two readings around it."""
        i = bisect_left(self.t, when)
        assert 0 < i < len(self.t), f"no kernel readings around {when} ({self.t[0]}..{self.t[-1]})"
        t0, t1 = self.t[i - 1], self.t[i]
        v0, v1 = getattr(self.c[i - 1], attr), getattr(self.c[i], attr)
        return float(v0 + (v1 - v0) * (when - t0) / (t1 - t0)) if t1 > t0 else float(v1)

    def covers(self, start: float, end: float) -> bool:
        return bool(self.t) and self.t[0] < start and self.t[-1] > end

    def rate_bounds(
        self, start: float, end: float, elapsed: float, attr: str, s_start: float, s_end: float
    ) -> tuple[float, float]:
        """Bounds of the rate top may show for [start, end] when it read the counters within
        ±s_start of `start` and ±s_end of `end`, and divided by its own read interval or by
        `elapsed` (either lies within elapsed ± (s_start + s_end))."""
        lo = (self.value(end - s_end, attr) - self.value(start + s_start, attr)) / (elapsed + s_start + s_end)
        hi = (self.value(end + s_end, attr) - self.value(start - s_start, attr)) / (elapsed - s_start - s_end)
        return lo, hi


def shown(value: str) -> float | None:
    return parse_number(value)
