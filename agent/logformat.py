"""The agent's own log lines as exporters write them: logfmt (the default) or one JSON object each.

logfmt as go-kit writes it for node_exporter: `ts=… level=… logger=… msg=…`, a value quoted when it
holds a space, `=` or `"`, with `\\`, `"` and newlines escaped so that every record is one line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_LEVEL = {"WARNING": "warn", "CRITICAL": "error"}


def _ts(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _fields(fmt: logging.Formatter, record: logging.LogRecord) -> dict[str, str]:
    out = {
        "ts": _ts(record),
        "level": _LEVEL.get(record.levelname, record.levelname.lower()),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    if record.exc_info:
        out["err"] = fmt.formatException(record.exc_info)
    return out


def _quote(v: str) -> str:
    if v and not any(c in v for c in ' ="\n\r\t\\'):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_quote(v)}" for k, v in _fields(self, record).items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(self, record), ensure_ascii=False)


def setup(level: str, fmt: str) -> None:
    """Root logging to stderr in the chosen format (config has validated both)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # a library's warning is a record too, not a raw stderr line
