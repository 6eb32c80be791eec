"""The HTTP endpoints: /metrics, /healthz, /readyz and an index page.

/metrics answers like prometheus_client's exposition: OpenMetrics 1.0 when the scraper lists
`application/openmetrics-text` in Accept (Prometheus does), else text 0.0.4; `name[]=<sample name>`
(repeatable) keeps only those series; gzip when accepted. An optional web config
(exporters/prometheus/webconfig.py: exporter-toolkit's --web.config.file) adds TLS, basic auth,
headers and a rate limit to every endpoint.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from typing import Protocol

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from exporters.prometheus import webconfig
from exporters.prometheus.render import Piece
from exporters.prometheus.scrape import Scraper

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_INDEX = """<html><head><title>dockwatch</title></head><body><h1>dockwatch</h1>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>
<li><a href="/readyz">/readyz</a></li></ul></body></html>"""


class Readiness(Protocol):
    """What /readyz asks (agent/app.py's Readiness: engine answered, inventory loaded, /proc readable)."""

    @property
    def is_ready(self) -> bool: ...

    @property
    def last_error(self) -> str: ...


class Pieces(Payload):
    """A body written piece by piece, each in slices of SLICE bytes, waiting for the socket
    between slices. A multi-MiB page as one bytes object was copied whole twice more: joined with
    the headers, then its unsent rest into the transport's buffer (bench/RESULTS.md)."""

    SLICE = 256 * 1024

    def __init__(self, parts: Sequence[Piece], content_type: str) -> None:
        super().__init__(parts, content_type=content_type)
        self._parts = parts
        self._size = sum(len(p) for p in parts)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._parts).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        for part in self._parts:
            view = memoryview(part)
            for i in range(0, len(view), self.SLICE):
                await writer.write(view[i : i + self.SLICE])  # returns once the transport drained


def wants_openmetrics(accept: str) -> bool:
    """True when Accept lists application/openmetrics-text (q > 0), as prometheus_client decides."""
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        if media.lower() != "application/openmetrics-text":
            continue
        q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            return True
    return False


def make_app(
    scraper: Scraper, inventory: Readiness, web_config: webconfig.WebConfig | None = None
) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        gz = "gzip" in request.headers.get("Accept-Encoding", "")
        om = wants_openmetrics(request.headers.get("Accept", ""))
        names = request.query.getall("name[]", None)
        wanted = frozenset(names) if names else None
        parts = await scraper.scrape_parts(gzip_ok=gz, openmetrics=om, names=wanted)
        headers = {"Content-Type": OPENMETRICS_CONTENT_TYPE if om else CONTENT_TYPE}
        if gz:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=Pieces(parts, headers["Content-Type"]), headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if inventory.is_ready:
            return web.Response(text="ready\n")
        why = inventory.last_error or "inventory not loaded yet"
        return web.Response(status=503, text=f"not ready: {why}\n")

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=_INDEX, content_type="text/html")

    middlewares = [webconfig.middleware(web_config)] if web_config is not None else []
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    return app


async def serve(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context is not None else "http"
    log.info("serving /metrics on %s://%s:%d", scheme, host, port)
    return runner
