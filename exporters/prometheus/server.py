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
from typing import Protocol

from exporters.prometheus import webconfig
from exporters.prometheus.httpd import Handler, Request, Response, Server
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
) -> Handler:
    """The endpoints behind one handler: the web config's guard (when given) sees every request,
    unknown paths included, as exporter-toolkit's does."""

    async def metrics(request: Request) -> Response:
        gz = "gzip" in request.header("Accept-Encoding")
        om = wants_openmetrics(request.header("Accept"))
        names = request.query_all("name[]")
        wanted = frozenset(names) if names else None
        parts = await scraper.scrape_parts(gzip_ok=gz, openmetrics=om, names=wanted)
        headers = {"Content-Type": OPENMETRICS_CONTENT_TYPE if om else CONTENT_TYPE}
        if gz:
            headers["Content-Encoding"] = "gzip"
        return Response(200, parts, headers)

    async def healthz(request: Request) -> Response:
        return Response.text("ok\n")

    async def readyz(request: Request) -> Response:
        if inventory.is_ready:
            return Response.text("ready\n")
        why = inventory.last_error or "inventory not loaded yet"
        return Response.text(f"not ready: {why}\n", 503)

    async def index(request: Request) -> Response:
        return Response.text(_INDEX, content_type="text/html; charset=utf-8")

    routes: dict[str, Handler] = {"/metrics": metrics, "/healthz": healthz, "/readyz": readyz, "/": index}

    async def route(request: Request) -> Response:
        endpoint = routes.get(request.path)
        if endpoint is None:
            return Response.text("404: Not Found\n", 404)
        if request.method not in ("GET", "HEAD"):
            resp = Response.text("405: Method Not Allowed\n", 405)
            resp.headers["Allow"] = "GET, HEAD"
            return resp
        return await endpoint(request)

    return webconfig.guard(web_config, route) if web_config is not None else route


async def serve(
    handler: Handler,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int = 0,
) -> Server:
    server = Server(handler, ssl_context, max_connections=max_connections)
    await server.start(host, port)
    return server
