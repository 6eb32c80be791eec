"""`--web.config.file`: TLS, basic auth and headers in exporter-toolkit's web configuration format.

The same file node_exporter, Prometheus and the other exporter-toolkit users read
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md), so one
file serves a host's exporters. Parsed strictly: an unknown key, a bad value or a file that cannot
be read is one WebConfigError naming the key. Applies to every endpoint the agent serves.

What maps to Python's ssl module and what does not (refused by name rather than ignored):
  - client_auth_type RequestClientCert / RequireAnyClientCert accept a client certificate without
    verifying it; OpenSSL through Python can only verify, so they are refused (exporter-toolkit
    itself calls them insecure). VerifyClientCertIfGiven and RequireAndVerifyClientCert map to
    CERT_OPTIONAL and CERT_REQUIRED and need client_ca_file (or client_ca).
  - client_allowed_sans is checked on each request (403) rather than in the handshake.
  - curve_preferences: Python sets at most one curve; refused.
  - http_server_config.http2: accepted; the agent serves HTTP/1.1.
  - The file is read at start (exporter-toolkit re-reads it on every request): restart the agent
    to apply a change, e.g. a renewed certificate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import os
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from exporters.prometheus.httpd import Handler, Request, Response


class WebConfigError(ValueError):
    """The web config file is wrong; str() names the file and the key."""


CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's cipher suite names (crypto/tls constants) -> IANA code; OpenSSL knows them by code.
GO_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": 0x002F,
    "TLS_RSA_WITH_AES_256_CBC_SHA": 0x0035,
    "TLS_RSA_WITH_AES_128_GCM_SHA256": 0x009C,
    "TLS_RSA_WITH_AES_256_GCM_SHA384": 0x009D,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": 0xC009,
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": 0xC00A,
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": 0xC013,
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": 0xC014,
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xC02B,
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": 0xC02C,
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xC02F,
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": 0xC030,
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA8,
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA9,
}
# exporter-toolkit's closed list of headers, and the values it allows where it restricts them.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS_KEYS = (
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
_NON_STR_TLS = ("client_allowed_sans", "cipher_suites", "prefer_server_cipher_suites", "curve_preferences")


@functools.cache
def _dummy_hash() -> bytes:
    """A bcrypt hash of a random password: an unknown user costs one comparison like a known one,
    so response times do not tell which user names exist (exporter-toolkit does the same)."""
    return bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(10))


@dataclass(frozen=True, slots=True)
class TLSSettings:
    cert_file: str = ""
    key_file: str = ""
    cert: str = ""  # inline PEM
    key: str = ""
    client_ca_file: str = ""
    client_ca: str = ""
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True, slots=True)
class RateLimit:
    interval: float  # seconds between two requests
    burst: int


@dataclass(frozen=True, slots=True)
class WebConfig:
    path: str
    tls: TLSSettings | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    rate_limit: RateLimit | None = None
    http2: bool = True

    def ssl_context(self) -> ssl.SSLContext | None:
        return None if self.tls is None else server_ssl_context(self.tls, self.path)


# --- parsing ----------------------------------------------------------------------------------------
def _err(path: str, key: str, msg: str) -> WebConfigError:
    return WebConfigError(f"web config {path}: {key}: {msg}")


def _mapping(path: str, key: str, v: Any) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise _err(path, key, f"expected a mapping, got {type(v).__name__}")
    return v


def _check_keys(path: str, prefix: str, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for k in data:
        if k not in known:
            name = f"{prefix}.{k}" if prefix else str(k)
            raise _err(path, name, f"unknown key (known: {', '.join(known)})")


def _str(path: str, key: str, v: Any) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _err(path, key, f"expected a string, got {v!r}")
    return v


def _strs(path: str, key: str, v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _err(path, key, f"expected a list of strings, got {v!r}")
    return tuple(v)


def _bool(path: str, key: str, v: Any, default: bool) -> bool:
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _err(path, key, f"expected true or false, got {v!r}")
    return v


def parse_go_duration(s: str) -> float:
    """Seconds from a Go duration string (`1s`, `250ms`, `1m30s`); ValueError when it is not one."""
    s = s.strip()
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"{s!r} is not a duration such as 1s, 250ms or 1m30s")
    return total


def _resolve(base: Path, p: str) -> str:
    """Relative file names are relative to the web config file, as in exporter-toolkit."""
    return p if not p or os.path.isabs(p) else str(base / p)


def _parse_tls(path: str, raw: Mapping[str, Any]) -> TLSSettings | None:
    k = "tls_server_config"
    _check_keys(path, k, raw, _TLS_KEYS)
    base = Path(path).parent
    s = {f: _str(path, f"{k}.{f}", raw.get(f)) for f in _TLS_KEYS if f in raw and f not in _NON_STR_TLS}
    tls_keys = ("cert", "key", "cert_file", "key_file", "client_ca", "client_ca_file", "client_auth_type")
    if not any(s.get(f) for f in tls_keys):
        return None  # no TLS asked for: plain HTTP, as exporter-toolkit
    if s.get("cert") and s.get("cert_file"):
        raise _err(path, f"{k}.cert", "give cert or cert_file, not both")
    if s.get("key") and s.get("key_file"):
        raise _err(path, f"{k}.key", "give key or key_file, not both")
    if s.get("client_ca") and s.get("client_ca_file"):
        raise _err(path, f"{k}.client_ca", "give client_ca or client_ca_file, not both")
    if not (s.get("cert") or s.get("cert_file")):
        raise _err(path, f"{k}.cert_file", "missing: TLS needs cert_file (or cert) and key_file (or key)")
    if not (s.get("key") or s.get("key_file")):
        raise _err(path, f"{k}.key_file", "missing: TLS needs cert_file (or cert) and key_file (or key)")
    auth = s.get("client_auth_type", "")
    if auth in _UNVERIFIED_CLIENT_AUTH:
        raise _err(
            path,
            f"{k}.client_auth_type",
            f"{auth!r} is not supported: it accepts client certificates without verifying them; "
            "use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file",
        )
    if auth not in CLIENT_AUTH:
        raise _err(
            path,
            f"{k}.client_auth_type",
            f"{auth!r} is invalid: expected one of NoClientCert, VerifyClientCertIfGiven, "
            "RequireAndVerifyClientCert",
        )
    has_ca = bool(s.get("client_ca") or s.get("client_ca_file"))
    if has_ca and CLIENT_AUTH[auth] == ssl.CERT_NONE:
        raise _err(
            path,
            f"{k}.client_ca_file",
            "a client CA is set but client_auth_type is NoClientCert: "
            "set client_auth_type: RequireAndVerifyClientCert",
        )
    if not has_ca and CLIENT_AUTH[auth] != ssl.CERT_NONE:
        raise _err(path, f"{k}.client_ca_file", f"missing: client_auth_type {auth} needs a CA to verify with")
    versions = {}
    for f, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        v = s.get(f) or default
        if v not in TLS_VERSIONS:
            raise _err(path, f"{k}.{f}", f"{v!r} is invalid: expected one of {', '.join(TLS_VERSIONS)}")
        versions[f] = v
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        raise _err(path, f"{k}.min_version", "is higher than max_version")
    sans = _strs(path, f"{k}.client_allowed_sans", raw.get("client_allowed_sans"))
    if sans and CLIENT_AUTH[auth] != ssl.CERT_REQUIRED:
        raise _err(path, f"{k}.client_allowed_sans", "needs client_auth_type: RequireAndVerifyClientCert")
    ciphers = _strs(path, f"{k}.cipher_suites", raw.get("cipher_suites"))
    for c in ciphers:
        if c not in GO_CIPHERS:
            raise _err(path, f"{k}.cipher_suites", f"unknown cipher {c!r} (known: {', '.join(GO_CIPHERS)})")
    if _strs(path, f"{k}.curve_preferences", raw.get("curve_preferences")):
        raise _err(path, f"{k}.curve_preferences", "not supported by dockwatch: OpenSSL's curves apply")
    return TLSSettings(
        cert_file=_resolve(base, s.get("cert_file", "")),
        key_file=_resolve(base, s.get("key_file", "")),
        cert=s.get("cert", ""),
        key=s.get("key", ""),
        client_ca_file=_resolve(base, s.get("client_ca_file", "")),
        client_ca=s.get("client_ca", ""),
        client_auth_type=auth or "NoClientCert",
        client_allowed_sans=sans,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        cipher_suites=ciphers,
        prefer_server_cipher_suites=_bool(
            path, f"{k}.prefer_server_cipher_suites", raw.get("prefer_server_cipher_suites"), True
        ),
    )


def parse(text: str, path: str) -> WebConfig:
    """A WebConfig from the file's text; WebConfigError names the key. Files are not read here."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"web config {path}: not valid YAML: {exc}") from None
    data = _mapping(path, "(top level)", data)
    _check_keys(path, "", data, _TOP_KEYS)
    tls = _parse_tls(path, _mapping(path, "tls_server_config", data.get("tls_server_config")))

    http = _mapping(path, "http_server_config", data.get("http_server_config"))
    _check_keys(path, "http_server_config", http, ("http2", "headers"))
    headers: dict[str, str] = {}
    for name, value in _mapping(path, "http_server_config.headers", http.get("headers")).items():
        key = f"http_server_config.headers.{name}"
        if name not in HEADERS:
            raise _err(path, key, f"this header can not be configured (allowed: {', '.join(HEADERS)})")
        value = _str(path, key, value)
        if HEADERS[name] and value not in HEADERS[name]:
            raise _err(path, key, f"{value!r} is invalid: expected one of {', '.join(HEADERS[name])}")
        if any((c < " " and c != "\t") or c == "\x7f" for c in value) or not value.isascii():
            # A line break would split every answer into two; HTTP header values are ASCII here.
            raise _err(path, key, f"{value!r} is invalid: control characters and non-ASCII are not allowed")
        if value:  # blank: unset, as exporter-toolkit
            headers[name] = value

    users: dict[str, bytes] = {}
    for user, hashed in _mapping(path, "basic_auth_users", data.get("basic_auth_users")).items():
        key = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user:
            raise _err(path, key, "a user name must be a non-empty string")
        h = _str(path, key, hashed)
        m = _BCRYPT.match(h)
        if not m or not 4 <= int(m.group(1)) <= 31:
            raise _err(path, key, "not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)")
        users[user] = h.encode()

    rate_limit = None
    rl = _mapping(path, "rate_limit", data.get("rate_limit"))
    _check_keys(path, "rate_limit", rl, ("interval", "burst"))
    if rl:
        try:
            interval = parse_go_duration(str(rl.get("interval", "0")))
        except ValueError as exc:
            raise _err(path, "rate_limit.interval", str(exc)) from None
        burst = rl.get("burst", 0)
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
            raise _err(path, "rate_limit.burst", f"expected a whole number >= 0, got {burst!r}")
        if interval > 0:
            rate_limit = RateLimit(interval, burst)
    return WebConfig(
        path=path,
        tls=tls,
        headers=headers,
        users=users,
        rate_limit=rate_limit,
        http2=_bool(path, "http_server_config.http2", http.get("http2"), True),
    )


def load(path: str) -> WebConfig:
    """Read, parse and check the file, including that its certificates load (WebConfigError)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(f"web config {path}: cannot read it: {exc.strerror or exc}") from None
    cfg = parse(text, path)
    cfg.ssl_context()  # certificates and keys load now, or the agent does not start
    return cfg


# --- TLS ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _pem_path(inline: str, path: str) -> Iterator[str]:
    """A file name for ssl (which loads a chain from files only): the file, or inline PEM in an
    anonymous memory file, since the agent's container is often read-only (no /tmp)."""
    if not inline:
        yield path
        return
    fd = os.memfd_create("dockwatch-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, inline.encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _load_chain(ctx: ssl.SSLContext, t: TLSSettings, path: str) -> None:
    k = "tls_server_config"
    key_name = f"{k}.cert_file" if t.cert_file else f"{k}.cert"
    for name, f in ((key_name, t.cert_file), (f"{k}.key_file", t.key_file)):
        if f and not os.access(f, os.R_OK):
            raise _err(path, name, f"cannot read {f}")
    with _pem_path(t.cert, t.cert_file) as cert, _pem_path(t.key, t.key_file) as key:
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            why = exc.reason or exc
            raise _err(path, key_name, f"certificate and key do not load as a pair: {why}") from None
        except OSError as exc:
            raise _err(path, key_name, f"cannot load {cert}: {exc.strerror or exc}") from None


def server_ssl_context(t: TLSSettings, path: str = "") -> ssl.SSLContext:
    k = "tls_server_config"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[t.min_version]
    ctx.maximum_version = TLS_VERSIONS[t.max_version]
    _load_chain(ctx, t, path)
    ctx.verify_mode = CLIENT_AUTH[t.client_auth_type]
    if ctx.verify_mode != ssl.CERT_NONE:
        try:
            if t.client_ca_file:
                ctx.load_verify_locations(cafile=t.client_ca_file)
            else:
                ctx.load_verify_locations(cadata=t.client_ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            name = f"{k}.client_ca_file" if t.client_ca_file else f"{k}.client_ca"
            raise _err(path, name, f"no CA certificate could be loaded: {exc}") from None
    if t.cipher_suites:
        # Only TLS <= 1.2 suites are configurable, as in Go; TLS 1.3 keeps its own.
        by_code = {c["id"] & 0xFFFF: c["name"] for c in ctx.get_ciphers() if c.get("protocol") != "TLSv1.3"}
        names = [by_code[GO_CIPHERS[c]] for c in t.cipher_suites if GO_CIPHERS[c] in by_code]
        if not names:
            raise _err(path, f"{k}.cipher_suites", "none of these suites is available in this OpenSSL")
        ctx.set_ciphers(":".join(names))
    if t.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


def peer_sans(peercert: Mapping[str, Any] | None) -> list[str]:
    """The subject alternative names of a verified peer certificate, as strings."""
    if not peercert:
        return []
    return [str(v) for _, v in peercert.get("subjectAltName", ())]


# --- basic auth, headers, rate limit --------------------------------------------------------------------
class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes: one bcrypt at a time, off the event loop,
    results cached (bcrypt at cost 10 is ~70 ms of CPU, and Prometheus sends the same header on
    every scrape)."""

    CACHE = 128

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self.users = dict(users)
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[bytes, bool] = OrderedDict()

    async def check(self, header: str | None) -> bool:
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        hashed = self.users.get(user)
        known = hashed is not None
        digest = hashlib.sha256(b"\0".join((user.encode(), hashed or b"", password.encode()))).digest()
        hit = self._cache.get(digest)
        if hit is None:
            async with self._lock:
                ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed or _dummy_hash())
            hit = known and ok
            self._cache[digest] = hit
            while len(self._cache) > self.CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(digest)
        return hit


class TokenBucket:
    """exporter-toolkit's rate_limit: one request per interval, bursts of `burst`."""

    def __init__(self, rl: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = 1.0 / rl.interval
        self.burst = float(rl.burst)
        self.tokens = self.burst
        self.clock = clock
        self.last = clock()

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def guard(cfg: WebConfig, handler: Handler) -> Handler:
    """`handler` behind the config: rate limit, allowed client SANs, basic auth; headers on every answer."""
    auth = BasicAuth(cfg.users) if cfg.users else None
    bucket = TokenBucket(cfg.rate_limit) if cfg.rate_limit else None
    sans = set(cfg.tls.client_allowed_sans) if cfg.tls else set()
    headers = dict(cfg.headers)

    def answer(status: int, text: str, extra: Mapping[str, str] | None = None) -> Response:
        resp = Response.text(text + "\n", status)
        resp.headers.update(headers)
        if extra:
            resp.headers.update(extra)
        return resp

    async def guarded(request: Request) -> Response:
        if bucket is not None and not bucket.allow():
            return answer(429, "Too Many Requests")
        if sans and not sans.intersection(peer_sans(request.peercert)):
            return answer(403, "Forbidden: client certificate SAN not allowed")
        if auth is not None and not await auth.check(request.header("Authorization") or None):
            return answer(401, "Unauthorized", {"WWW-Authenticate": "Basic"})
        resp = await handler(request)
        resp.headers.update(headers)
        return resp

    return guarded
