"""HTTP endpoints: /metrics, /healthz (process alive), /readyz (engine connected, inventory loaded)."""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web

from exporters.prometheus.scrape import CONTENT_TYPE, Scraper

log = logging.getLogger(__name__)

_INDEX = """<html><head><title>dockwatch</title></head><body><h1>dockwatch</h1>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>
<li><a href="/readyz">/readyz</a></li></ul></body></html>"""


class Readiness(Protocol):
    """What /readyz asks (agent/app.py's Readiness: engine answered, inventory loaded, /proc readable)."""

    @property
    def is_ready(self) -> bool: ...

    @property
    def last_error(self) -> str: ...


def make_app(scraper: Scraper, inventory: Readiness) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        gz = "gzip" in request.headers.get("Accept-Encoding", "")
        body = await scraper.scrape(gzip_ok=gz)
        headers = {"Content-Type": CONTENT_TYPE}
        if gz:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if inventory.is_ready:
            return web.Response(text="ready\n")
        why = inventory.last_error or "inventory not loaded yet"
        return web.Response(status=503, text=f"not ready: {why}\n")

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=_INDEX, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    log.info("serving /metrics on %s:%d", host, port)
    return runner
