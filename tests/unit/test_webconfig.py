"""--web.config.file: exporter-toolkit's format parsed strictly, errors naming the key, bcrypt auth."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from pathlib import Path

import bcrypt
import pytest

from exporters.prometheus import webconfig as wc
from tests.support.certs import PKI, make_pki

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()  # cost 4: fast tests


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_full_file_parses_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    text = f"""
tls_server_config:
  cert_file: server.pem
  key_file: /abs/server-key.pem
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans: [prometheus.test]
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: ""
basic_auth_users:
  alice: {HASH}
rate_limit: {{interval: 250ms, burst: 5}}
"""
    cfg = wc.parse(text, str(tmp_path / "web.yml"))
    assert cfg.tls is not None
    assert cfg.tls.cert_file == str(tmp_path / "server.pem")
    assert cfg.tls.key_file == "/abs/server-key.pem"
    assert cfg.tls.client_ca_file == str(tmp_path / "ca.pem")
    assert cfg.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert cfg.tls.min_version == "TLS13" and cfg.tls.max_version == "TLS13"
    assert cfg.tls.client_allowed_sans == ("prometheus.test",)
    # A blank header value is unset, as exporter-toolkit does.
    assert dict(cfg.headers) == {
        "X-Frame-Options": "deny",
        "X-Content-Type-Options": "nosniff",
        "Strict-Transport-Security": "max-age=31536000",
    }
    assert cfg.users == {"alice": HASH.encode()}
    assert cfg.rate_limit == wc.RateLimit(0.25, 5)
    assert cfg.http2 is False


def test_no_tls_section_is_plain_http_and_an_empty_file_is_valid(tmp_path: Path) -> None:
    assert wc.parse("", "w.yml").tls is None
    assert wc.parse(f"basic_auth_users: {{bob: '{HASH}'}}\n", "w.yml").tls is None


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        ("tls_config: {}\n", "tls_config", "unknown key"),
        (
            "tls_server_config: {cert_file: a, key_file: b, certfile: c}\n",
            "tls_server_config.certfile",
            "unknown",
        ),
        ("tls_server_config: {key_file: b}\n", "tls_server_config.cert_file", "missing"),
        ("tls_server_config: {cert_file: a}\n", "tls_server_config.key_file", "missing"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Bogus}\n",
            "tls_server_config.client_auth_type",
            "'Bogus' is invalid",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert, "
            "client_ca_file: c}\n",
            "tls_server_config.client_auth_type",
            "without verifying",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}\n",
            "tls_server_config.client_ca_file",
            "NoClientCert",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAndVerifyClientCert}\n",
            "tls_server_config.client_ca_file",
            "missing",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS1.2}\n",
            "tls_server_config.min_version",
            "expected one of TLS10",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, max_version: TLS12}\n",
            "tls_server_config.min_version",
            "higher than max_version",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}\n",
            "tls_server_config.client_allowed_sans",
            "RequireAndVerifyClientCert",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_FOO]}\n",
            "tls_server_config.cipher_suites",
            "unknown cipher",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, curve_preferences: [X25519]}\n",
            "tls_server_config.curve_preferences",
            "not supported",
        ),
        (
            "http_server_config: {headers: {X-Powered-By: me}}\n",
            "http_server_config.headers.X-Powered-By",
            "can not",
        ),
        (
            "http_server_config: {headers: {X-Frame-Options: allow}}\n",
            "http_server_config.headers.X-Frame-Options",
            "expected one of deny, sameorigin",
        ),
        ("http_server_config: {http2: maybe}\n", "http_server_config.http2", "true or false"),
        (
            'http_server_config: {headers: {Content-Security-Policy: "a\\r\\nSet-Cookie: x"}}\n',
            "http_server_config.headers.Content-Security-Policy",
            "control characters",
        ),
        ("basic_auth_users: {alice: plaintext}\n", "basic_auth_users.alice", "not a bcrypt hash"),
        ("basic_auth_users: [alice]\n", "basic_auth_users", "expected a mapping"),
        ("rate_limit: {interval: fast}\n", "rate_limit.interval", "not a duration"),
        ("rate_limit: {interval: 1s, burst: -1}\n", "rate_limit.burst", "whole number"),
        ("- a\n", "(top level)", "expected a mapping"),
    ],
)
def test_a_bad_file_is_one_error_naming_the_key(text: str, key: str, says: str) -> None:
    with pytest.raises(wc.WebConfigError) as err:
        wc.parse(text, "/etc/dockwatch/web.yml")
    msg = str(err.value)
    assert msg.startswith(f"web config /etc/dockwatch/web.yml: {key}: "), msg
    assert says in msg, msg
    assert "\n" not in msg


def test_load_checks_the_files_it_names(tmp_path: Path, pki: PKI) -> None:
    f = tmp_path / "web.yml"
    with pytest.raises(wc.WebConfigError, match="cannot read it"):
        wc.load(str(f))
    f.write_text("tls_server_config: {cert_file: nope.pem, key_file: nope-key.pem}\n")
    with pytest.raises(wc.WebConfigError, match=r"tls_server_config.cert_file: cannot read .*nope.pem"):
        wc.load(str(f))
    # A certificate with another certificate's key.
    f.write_text(f"tls_server_config: {{cert_file: {pki.server.cert}, key_file: {pki.client.key}}}\n")
    with pytest.raises(wc.WebConfigError, match=r"tls_server_config\.cert_file: certificate and key do not"):
        wc.load(str(f))
    # A client CA file that holds no certificate.
    f.write_text(
        f"tls_server_config: {{cert_file: {pki.server.cert}, key_file: {pki.server.key}, "
        f"client_auth_type: RequireAndVerifyClientCert, client_ca_file: {pki.server.key}}}\n"
    )
    with pytest.raises(wc.WebConfigError, match=r"tls_server_config\.client_ca_file: no CA certificate"):
        wc.load(str(f))


def test_ssl_context_maps_the_settings(tmp_path: Path, pki: PKI) -> None:
    f = tmp_path / "web.yml"
    f.write_text(
        f"tls_server_config: {{cert_file: {pki.server.cert}, key_file: {pki.server.key}, "
        f"client_auth_type: RequireAndVerifyClientCert, client_ca_file: {pki.ca.cert}, "
        "min_version: TLS13}\n"
    )
    ctx = wc.load(str(f)).ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    f.write_text(
        f"tls_server_config: {{cert: {json.dumps(pki.server.cert.read_text())}, "
        f"key: {json.dumps(pki.server.key.read_text())}, client_auth_type: VerifyClientCertIfGiven, "
        f"client_ca: {json.dumps(pki.ca.cert.read_text())}}}\n"
    )
    ctx = wc.load(str(f)).ssl_context()  # inline PEM loads too
    assert ctx is not None and ctx.verify_mode == ssl.CERT_OPTIONAL
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2  # exporter-toolkit's default


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_checks_bcrypt_and_caches() -> None:
    auth = wc.BasicAuth({"alice": HASH.encode()})

    async def run() -> list[bool]:
        return [
            await auth.check(_basic("alice", "s3cret")),
            await auth.check(_basic("alice", "s3cret")),  # cached
            await auth.check(_basic("alice", "wrong")),
            await auth.check(_basic("mallory", "s3cret")),  # unknown user: checked against a dummy
            await auth.check("Basic !!!"),
            await auth.check("Bearer x"),
            await auth.check(None),
            await auth.check("Basic " + base64.b64encode(b"no-colon").decode()),
        ]

    assert asyncio.run(run()) == [True, True, False, False, False, False, False, False]
    assert len(auth._cache) == 3


def test_token_bucket() -> None:
    now = [0.0]
    b = wc.TokenBucket(wc.RateLimit(interval=1.0, burst=2), clock=lambda: now[0])
    assert [b.allow(), b.allow(), b.allow()] == [True, True, False]
    now[0] = 1.0
    assert [b.allow(), b.allow()] == [True, False]


def test_go_durations() -> None:
    assert wc.parse_go_duration("1m30s") == 90
    assert wc.parse_go_duration("250ms") == 0.25
    assert wc.parse_go_duration("0") == 0
    for bad in ("", "1", "1x", "s1"):
        with pytest.raises(ValueError):
            wc.parse_go_duration(bad)


def test_peer_sans() -> None:
    cert = {"subjectAltName": (("DNS", "a.test"), ("IP Address", "10.0.0.1"), ("URI", "spiffe://x"))}
    assert wc.peer_sans(cert) == ["a.test", "10.0.0.1", "spiffe://x"]
    assert wc.peer_sans(None) == []
