"""HTTP/1.1 rules our Engine API client (agent/docker/http.py) and our /metrics server
(exporters/prometheus/httpd.py) both follow (RFC 9110, RFC 9112)."""

from __future__ import annotations

import re
from collections.abc import Mapping

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a method or a header name


def keep_alive(version: tuple[int, int], headers: Mapping[str, str]) -> bool:
    """Does the connection stay open after this message? (`headers`: lower-case names.)"""
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    return "keep-alive" in tokens if version < (1, 1) else "close" not in tokens
