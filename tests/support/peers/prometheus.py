"""Debian's Prometheus, run by a test: its config file and TSDB directory, a free loopback port."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from tests.support.agentproc import free_port


class Prometheus:
    def __init__(self, config: Path, tsdb: Path) -> None:
        self.port = free_port()
        self._log: IO[bytes] = open(config.parent / "prometheus.log", "wb")  # noqa: SIM115 - lives as long as it
        self.proc = subprocess.Popen(
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tsdb}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._log.close()


def prom_query(base: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query (at `at`, else now): its vector or matrix, or the scalar as one result."""
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    with urllib.request.urlopen(f"{base}/api/v1/query?" + urllib.parse.urlencode(params), timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    data = body["data"]
    if data["resultType"] in ("vector", "matrix"):
        return list(data["result"])
    return [data]  # scalar / string: a value is a result
