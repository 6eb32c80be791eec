"""`python -m exporters.prometheus.healthcheck`: the image's HEALTHCHECK (exit 0 alive, 1 not).

Asks the local agent's /healthz, at DOCKWATCH_WEB_LISTEN_ADDRESS, the way the agent serves it:
over TLS when DOCKWATCH_WEB_CONFIG_FILE has a tls_server_config. It holds no password and no
client certificate, so a 401 (basic auth) or the server's TLS alert refusing it (client
certificates required: it completes the TLS handshake, then closes or sends an alert) also count
as alive: only the agent's running event loop answers those, while a hung agent leaves the
connection unanswered until the timeout. Standard library and
PyYAML only, so each check starts fast.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys

import yaml

TIMEOUT = 4.0


def _wants_tls(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError):
        return False  # the agent refused such a file at start and is not running
    tls = data.get("tls_server_config") if isinstance(data, dict) else None
    return isinstance(tls, dict) and any(tls.get(k) for k in ("cert_file", "cert"))


def probe(listen: str, web_config: str = "") -> bool:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    conn: http.client.HTTPConnection
    tls = bool(web_config) and _wants_tls(web_config)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the agent's own certificate, on this host
        conn = http.client.HTTPSConnection(host, int(port), timeout=TIMEOUT, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        try:
            conn.connect()  # over TLS: the handshake, which the agent's event loop answers
        except ssl.SSLError as exc:
            return "ALERT" in str(exc).upper()  # refused by the server: an answer all the same
        except OSError:  # refused, unreachable, timed out (timeouts are OSErrors)
            return False
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status in (200, 401)
        except (OSError, http.client.HTTPException):
            # After a completed TLS handshake the agent may close on us (no client certificate):
            # that handshake was already its answer. Plain HTTP needs a response.
            return tls
    finally:
        conn.close()


def main() -> int:
    listen = os.environ.get("DOCKWATCH_WEB_LISTEN_ADDRESS", ":9105")
    return 0 if probe(listen, os.environ.get("DOCKWATCH_WEB_CONFIG_FILE", "")) else 1


if __name__ == "__main__":
    sys.exit(main())
