"""--web.config.file against the real clients: Debian's Prometheus and curl.

Two agents with exporter-toolkit web configs, made here with certificates the test makes:
  - TLS + basic auth (bcrypt) + headers: Prometheus scrapes it with the right password (up == 1)
    and with a wrong one (the target is down with 401); curl sees 401 without or with a wrong
    password on every endpoint, the configured headers on every answer.
  - TLS with client certificates (RequireAndVerifyClientCert): Prometheus scrapes it with a client
    certificate; curl without one, or with one from another CA, is refused in the handshake.
Prometheus asks for OpenMetrics; its metadata API shows it parsed the agent's OpenMetrics (counter
families named without `_total`). A bad web config file stops the agent with one line naming the key.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from tests.support.agentproc import REPO, Agent
from tests.support.certs import make_pki
from tests.support.engine import Engine
from tests.support.peers.prometheus import Prometheus, prom_query
from tests.support.toolbox import wait_for

pytestmark = pytest.mark.docker

PASSWORD = "correct horse battery staple"
HEADERS = {
    "X-Frame-Options": "deny",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}


def curl(url: str, *args: str) -> tuple[int, dict[str, str], str, int]:
    """(HTTP status or 0, response headers, body, curl's exit code)."""
    res = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-D", "-", *args, url], capture_output=True, text=True, timeout=30
    )
    head, _, body = res.stdout.partition("\n\n")  # text mode: curl's CRLFs read as "\n"
    lines = head.splitlines()
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:]) if k}
    return status, headers, body, res.returncode


def start_agent(eng: Engine, web_yml: Path, ready: list[str], stack: contextlib.ExitStack) -> Agent:
    agent = Agent(eng, f"--web.config.file={web_yml}").start(wait_ready=False)
    stack.callback(agent.stop)  # stopped whatever happens next
    url = f"https://127.0.0.1:{agent.port}/readyz"
    wait_for(lambda: curl(url, *ready)[0] == 200, timeout=30, what=f"agent ready over TLS ({agent.log.name})")
    return agent


@pytest.fixture(scope="module")
def setup(engine_session: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if shutil.which("prometheus") is None or shutil.which("curl") is None:
        pytest.skip("Debian's prometheus and curl are needed")
    eng = Engine(host=engine_session.host, root=engine_session.root, owned=False)
    tmp = tmp_path_factory.mktemp("webcfg")
    pki = make_pki(tmp / "pki")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    auth_yml = tmp / "web-auth.yml"
    auth_yml.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki.server.cert.name}\n"  # relative: to the web config file's directory
        f"  key_file: {pki.server.key.name}\n"
        "http_server_config:\n"
        f"  headers: {json.dumps(HEADERS)}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    shutil.copy(pki.server.cert, tmp / pki.server.cert.name)
    shutil.copy(pki.server.key, tmp / pki.server.key.name)
    mtls_yml = tmp / "web-mtls.yml"
    mtls_yml.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki.server.cert}\n"
        f"  key_file: {pki.server.key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {pki.ca.cert}\n"
        "  min_version: TLS12\n"
    )
    ca = ["--cacert", str(pki.ca.cert)]
    client = ["--cert", str(pki.client.cert), "--key", str(pki.client.key)]
    stack = contextlib.ExitStack()
    try:
        auth_agent = start_agent(eng, auth_yml, [*ca, "-u", f"prometheus:{PASSWORD}"], stack)
        mtls_agent = start_agent(eng, mtls_yml, [*ca, *client], stack)
    except BaseException:
        stack.close()
        raise

    cfg = tmp / "prometheus.yml"
    tls_ca = {"ca_file": str(pki.ca.cert)}
    jobs = [
        {
            "job_name": "dockwatch",
            "scheme": "https",
            "tls_config": tls_ca,
            "basic_auth": {"username": "prometheus", "password": PASSWORD},
            "static_configs": [{"targets": [f"127.0.0.1:{auth_agent.port}"]}],
        },
        {
            "job_name": "wrong-password",
            "scheme": "https",
            "tls_config": tls_ca,
            "basic_auth": {"username": "prometheus", "password": "wrong"},
            "static_configs": [{"targets": [f"127.0.0.1:{auth_agent.port}"]}],
        },
        {
            "job_name": "mtls",
            "scheme": "https",
            "tls_config": {**tls_ca, "cert_file": str(pki.client.cert), "key_file": str(pki.client.key)},
            "static_configs": [{"targets": [f"127.0.0.1:{mtls_agent.port}"]}],
        },
        {
            "job_name": "mtls-no-cert",
            "scheme": "https",
            "tls_config": tls_ca,
            "static_configs": [{"targets": [f"127.0.0.1:{mtls_agent.port}"]}],
        },
    ]
    cfg.write_text(
        json.dumps({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": jobs})
    )
    prom = Prometheus(cfg, tmp / "tsdb")
    try:
        yield {
            "prom": prom.base,
            "auth": auth_agent,
            "mtls": mtls_agent,
            "pki": pki,
            "ca": ca,
            "client": client,
            "tmp": tmp,
        }
    finally:
        prom.stop()
        codes = [a.stop() for a in (auth_agent, mtls_agent)]
        stack.close()
        assert codes == [0, 0], auth_agent.logtext() + mtls_agent.logtext()


def targets(prom: str) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(f"{prom}/api/v1/targets", timeout=10) as resp:
        active = json.load(resp)["data"]["activeTargets"]
    return {t["labels"]["job"]: t for t in active}


def test_prometheus_scrapes_over_tls_with_basic_auth_and_reads_openmetrics(setup: dict[str, Any]) -> None:
    prom = setup["prom"]
    wait_for(
        lambda: (
            prom_query(prom, 'up{job="dockwatch"} == 1')
            and prom_query(prom, 'container_network_receive_bytes_total{job="dockwatch"}')
            and prom_query(prom, 'process_resident_memory_bytes{job="dockwatch"} > 0')
        ),
        timeout=60,
        what="Prometheus scraping the agent over TLS with basic auth",
    )
    # Prometheus asked for OpenMetrics and parsed it: counter metadata is keyed by the OpenMetrics
    # family name (no _total), which only an OpenMetrics exposition gives it.
    url = f"{prom}/api/v1/targets/metadata?" + urllib.parse.urlencode(
        {"match_target": '{job="dockwatch"}', "metric": "container_network_receive_bytes"}
    )
    with urllib.request.urlopen(url, timeout=10) as resp:
        meta = json.load(resp)["data"]
    assert meta and meta[0]["type"] == "counter", meta


def test_prometheus_with_a_wrong_password_gets_401(setup: dict[str, Any]) -> None:
    prom = setup["prom"]
    t = wait_for(
        lambda: (t := targets(prom).get("wrong-password")) and t["health"] == "down" and t,
        timeout=60,
        what="the wrong-password target to be scraped",
    )
    assert "401" in t["lastError"], t["lastError"]


def test_curl_basic_auth_on_every_endpoint(setup: dict[str, Any]) -> None:
    base = f"https://127.0.0.1:{setup['auth'].port}"
    ca = setup["ca"]
    for path in ("/metrics", "/healthz", "/readyz", "/"):
        status, headers, _, _ = curl(base + path, *ca)
        assert status == 401, path
        assert headers.get("www-authenticate") == "Basic", (path, headers)
        assert curl(base + path, *ca, "-u", "prometheus:nope")[0] == 401, path
        assert curl(base + path, *ca, "-u", f"someone:{PASSWORD}")[0] == 401, path
        status, headers, body, _ = curl(base + path, *ca, "-u", f"prometheus:{PASSWORD}")
        assert status == 200, (path, body)
        for k, v in HEADERS.items():
            assert headers.get(k.lower()) == v, (path, k, headers)
    # The headers are on refusals too, as exporter-toolkit sets them.
    _, headers, _, _ = curl(base + "/metrics", *ca)
    assert headers.get("x-frame-options") == "deny"
    # Plain HTTP to the TLS port gets no metrics.
    status, _, body, _ = curl(base.replace("https", "http") + "/metrics")
    assert status != 200 and "container_network" not in body


def test_prometheus_scrapes_with_a_client_certificate(setup: dict[str, Any]) -> None:
    prom = setup["prom"]
    wait_for(
        lambda: (
            prom_query(prom, 'up{job="mtls"} == 1') and prom_query(prom, 'dockwatch_build_info{job="mtls"}')
        ),
        timeout=60,
        what="Prometheus scraping the agent with a client certificate",
    )
    t = wait_for(
        lambda: (t := targets(prom).get("mtls-no-cert")) and t["health"] == "down" and t,
        timeout=60,
        what="the target without a client certificate to be tried",
    )
    # Refused in the handshake: Go reports the closed connection (EOF) or the TLS alert.
    assert t["lastError"] and "200" not in t["lastError"], t["lastError"]


def test_curl_without_a_client_certificate_is_refused(setup: dict[str, Any]) -> None:
    base = f"https://127.0.0.1:{setup['mtls'].port}"
    ca, pki = setup["ca"], setup["pki"]
    assert curl(base + "/metrics", *ca, *setup["client"])[0] == 200
    for path in ("/metrics", "/healthz"):
        status, _, _, rc = curl(base + path, *ca)
        assert status == 0 and rc != 0, (path, status, rc)  # no HTTP answer at all: the handshake failed
    status, _, _, rc = curl(
        base + "/metrics", *ca, "--cert", str(pki.stranger.cert), "--key", str(pki.stranger.key)
    )
    assert status == 0 and rc != 0


def test_a_bad_web_config_is_one_error_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text(
        "tls_server_config:\n  cert_file: a.pem\n  key_file: b.pem\n  client_auth_type: Required\n"
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "run",
            f"--web.config.file={bad}",
            "--docker.host=unix:///nonexistent",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "tls_server_config.client_auth_type" in lines[0] and str(bad) in lines[0], lines[0]


def healthcheck(listen: str, web_config: Path | str = "") -> int:
    """The image's HEALTHCHECK command, with the environment the image gives it."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "DOCKWATCH_WEB_LISTEN_ADDRESS": listen}
    if web_config:
        env["DOCKWATCH_WEB_CONFIG_FILE"] = str(web_config)
    res = subprocess.run(
        [sys.executable, "-m", "exporters.prometheus.healthcheck"],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=30,
    )
    return res.returncode


def test_the_image_healthcheck_sees_a_protected_agent_alive(setup: dict[str, Any]) -> None:
    tmp = setup["tmp"]
    # TLS + basic auth: a 401 over TLS is an answer. Client certificates required: the TLS alert is.
    assert healthcheck(f":{setup['auth'].port}", tmp / "web-auth.yml") == 0
    assert healthcheck(f"127.0.0.1:{setup['mtls'].port}", tmp / "web-mtls.yml") == 0
    # Nothing listening: not alive.
    from tests.support.agentproc import free_port

    assert healthcheck(f"127.0.0.1:{free_port()}", tmp / "web-auth.yml") == 1
    # Plain HTTP to a TLS port gets no HTTP answer: a config it cannot read is not TLS to it.
    assert healthcheck(f"127.0.0.1:{setup['auth'].port}") == 1
