"""Run the real agent as a subprocess (`python -m agent run`) and scrape it like Prometheus does."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.engine import Engine
from tests.support.toolbox import agent_env, wait_for

REPO = Path(__file__).resolve().parents[2]

Series = list[tuple[dict[str, str], float]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> dict[str, Series]:
    out: dict[str, Series] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def agent_command(port: int, *args: str, host: str = "") -> list[str]:
    """`python -m agent run` serving on 127.0.0.1:`port` (the tests' and the benchmarks' agents)."""
    docker = [f"--docker.host={host}"] if host else []
    return [sys.executable, "-m", "agent", "run", *docker, f"--web.listen-address=127.0.0.1:{port}", *args]


class Agent:
    def __init__(
        self,
        engine: Engine,
        *args: str,
        env: dict[str, str] | None = None,
        docker_host: bool = True,
        prefix: Sequence[str] = (),
    ) -> None:
        """`env`: extra environment; `docker_host=False`: no --docker.host flag (DOCKER_HOST or the
        default decide); `prefix`: a command the agent runs under (e.g. setpriv)."""
        self.engine = engine
        self.port = free_port()
        self.args = list(args)
        self.env = env or {}
        self.docker_host = docker_host
        self.prefix = list(prefix)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="dockwatch-agent-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True) -> Agent:
        """Start the agent; until it serves HTTP or exits. `wait_ready`: until /readyz is 200."""
        for _ in range(3):
            self._spawn()
            # free_port() closed its socket: someone else may have bound that port since. Then
            # the agent exits saying so, and gets another port (luck removed, not retried blindly).
            wait_for(lambda: self._serving_or_exited(), timeout=120, what=f"agent up ({self.log.name})")
            if self._lost_port():
                self.port = free_port()
                continue
            break
        if wait_ready:
            wait_for(lambda: self.get("/readyz")[0] == 200, 120, what=f"agent ready ({self.log.name})")
        return self

    def _serving_or_exited(self) -> bool:
        assert self.proc is not None
        # The agent's own word that it listens (plain HTTP or TLS, with or without auth).
        return self.proc.poll() is not None or "serving /metrics, /healthz and /readyz on" in Path(
            self.log.name
        ).read_text(errors="replace")

    def _lost_port(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is None or "cannot listen on" not in self.logtext():
            return False
        self.log.seek(0)
        self.log.truncate()
        return True

    def _spawn(self) -> None:
        host = self.engine.host if self.docker_host else ""
        args = [f"--path.docker-root={self.engine.root / 'data'}", "--log.level=debug", *self.args]
        self.proc = subprocess.Popen(
            [*self.prefix, *agent_command(self.port, *args, host=host)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=agent_env(**self.env),
            cwd=REPO,
        )

    def get(self, path: str) -> tuple[int, str]:
        assert self.proc is not None and self.proc.poll() is None, f"agent exited; log: {self.logtext()}"
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def scrape(self) -> dict[str, Series]:
        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        return parse(body)

    def logtext(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-5000:]

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def select(series: Series, /, **labels: str) -> Series:
    return [(lbl, v) for lbl, v in series if all(lbl.get(k) == val for k, val in labels.items())]


def one(metrics: dict[str, Series], metric: str, /, **labels: str) -> float:
    got = select(metrics.get(metric, []), **labels)
    assert len(got) == 1, f"expected one {metric}{labels}, got {got}"
    return got[0][1]


def scrape_until(
    agent: Agent, cond: Callable[[dict[str, Series]], bool], timeout: float, what: str
) -> dict[str, Series]:
    """Scrape until `cond` holds for a scrape; return that scrape."""
    box: list[dict[str, Series]] = []

    def check() -> bool:
        m = agent.scrape()
        if cond(m):
            box.append(m)
            return True
        return False

    wait_for(check, timeout=timeout, what=what)
    return box[-1]
