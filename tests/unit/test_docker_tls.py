"""DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH read as the docker CLI reads them."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from agent import config
from agent.config import ConfigError
from agent.docker.client import DockerClient, tls_context
from tests.support.certs import PKI, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def cert_dir(tmp_path: Path, pki: PKI) -> Path:
    d = tmp_path / "docker-certs"
    d.mkdir()
    (d / "ca.pem").write_bytes(pki.ca.cert.read_bytes())
    (d / "cert.pem").write_bytes(pki.client.cert.read_bytes())
    (d / "key.pem").write_bytes(pki.client.key.read_bytes())
    return d


def test_ssh_is_refused_naming_where_the_host_came_from() -> None:
    with pytest.raises(ConfigError) as err:
        config.load({}, env={"DOCKER_HOST": "ssh://me@engine"})
    assert str(err.value).startswith("DOCKER_HOST: 'ssh://me@engine' is not supported")
    with pytest.raises(ConfigError) as err:
        config.load({"docker.host": "ssh://me@engine"}, env={})
    assert str(err.value).startswith("--docker.host: ")
    with pytest.raises(ConfigError) as err:
        config.load({}, env={"DOCKWATCH_DOCKER_HOST": "npipe:////./pipe/docker_engine"})
    assert str(err.value).startswith("docker.host: ")
    with pytest.raises(ConfigError) as err:
        config.load({}, env={"DOCKER_HOST": "fd://"})
    assert str(err.value).startswith("DOCKER_HOST: 'fd://' is invalid")


def test_tls_verify_follows_the_cli(cert_dir: Path, tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_CERT_PATH": str(cert_dir)}
    assert config.load({}, env=env).docker_tls_verify is False  # a cert path alone is not TLS
    c = config.load({}, env={**env, "DOCKER_TLS_VERIFY": "1"})
    assert c.docker_tls_verify is True and c.docker_cert_path == str(cert_dir)
    # As in the CLI, any non-empty value turns it on ("0" too); our own key is a real boolean.
    assert config.load({}, env={**env, "DOCKER_TLS_VERIFY": "0"}).docker_tls_verify is True
    assert (
        config.load({"docker.tls-verify": False}, env={**env, "DOCKER_TLS_VERIFY": "1"}).docker_tls_verify
        is False
    )
    # The default cert path is the CLI's config directory.
    c = config.load({}, env={"DOCKER_CONFIG": str(tmp_path / "cfg")})
    assert c.docker_cert_path == str(tmp_path / "cfg")


def test_missing_ca_names_the_cert_path_variable(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    with pytest.raises(ConfigError) as err:
        config.load({}, env=env)
    msg = str(err.value)
    assert msg.startswith(f"DOCKER_CERT_PATH: {str(tmp_path)!r} has no readable ca.pem"), msg
    assert "DOCKER_TLS_VERIFY" in msg
    with pytest.raises(ConfigError, match=r"^--docker\.cert-path|^docker\.cert-path"):
        config.load(
            {"docker.cert-path": str(tmp_path)}, env={k: v for k, v in env.items() if k != "DOCKER_CERT_PATH"}
        )
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "cert.pem").write_text("x")
    with pytest.raises(ConfigError, match=r"only one of cert\.pem and key\.pem"):
        config.load({}, env=env)
    # TLS settings do not matter for a unix socket (the CLI ignores them there too).
    assert config.load({}, env={**env, "DOCKER_HOST": "unix:///run/docker.sock"}).docker_tls_verify


def test_client_urls_and_default_ports(cert_dir: Path) -> None:
    ctx = tls_context(str(cert_dir))
    assert DockerClient("tcp://10.0.0.1:2376", tls=ctx)._base == "https://10.0.0.1:2376"
    assert DockerClient("tcp://engine", tls=ctx)._base == "https://engine:2376"
    assert DockerClient("tcp://engine")._base == "http://engine:2375"
    assert DockerClient("tcp://[::1]")._base == "http://[::1]:2375"
    assert DockerClient("tcp://[::1]:9999")._base == "http://[::1]:9999"
    assert DockerClient("unix:///run/docker.sock", tls=ctx)._base == "http://docker"
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_tls_context_names_a_bad_file(tmp_path: Path, pki: PKI) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"ca\.pem"):
        tls_context(str(tmp_path))
    (tmp_path / "ca.pem").write_bytes(pki.ca.cert.read_bytes())
    (tmp_path / "cert.pem").write_bytes(pki.client.cert.read_bytes())
    (tmp_path / "key.pem").write_bytes(pki.server.key.read_bytes())  # not the certificate's key
    with pytest.raises(ValueError, match=r"cert\.pem and"):
        tls_context(str(tmp_path))
