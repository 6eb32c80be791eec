"""Config precedence and errors; the CLI's exit code 2 with a message naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import config
from agent.config import ConfigError


def test_defaults() -> None:
    c = config.load({}, env={})
    assert c.web_listen_address == ("0.0.0.0", 9105)
    assert c.docker_host == "unix:///var/run/docker.sock"
    assert c.path_procfs == "/proc"
    assert c.collect_tcp_states is False


def test_docker_host_env_is_respected() -> None:
    assert config.load({}, env={"DOCKER_HOST": "tcp://10.0.0.1:2375"}).docker_host == "tcp://10.0.0.1:2375"


def test_precedence_flag_over_env_over_file() -> None:
    file_values = config._flatten({"web": {"listen-address": ":1"}, "collect": {"tcp-states": True}})
    env = {"DOCKWATCH_WEB_LISTEN_ADDRESS": ":2"}
    c = config.load({"web.listen-address": ":3"}, env=env, file_values=file_values)
    assert c.web_listen_address == ("0.0.0.0", 3)
    assert c.collect_tcp_states is True  # only the file set it
    c = config.load({}, env=env, file_values=file_values)
    assert c.web_listen_address == ("0.0.0.0", 2)
    c = config.load({}, env={}, file_values=file_values)
    assert c.web_listen_address == ("0.0.0.0", 1)


@pytest.mark.parametrize(
    ("flags", "env", "file_values", "needle"),
    [
        ({"web.listen-address": "nope"}, {}, {}, "--web.listen-address"),
        ({}, {"DOCKWATCH_COLLECT_LOOPBACK": "maybe"}, {}, "DOCKWATCH_COLLECT_LOOPBACK"),
        ({}, {}, {"collect.tcp-states-interval": "soon"}, "'collect.tcp-states-interval'"),
        ({}, {}, {"collect.bogus": 1}, "'collect.bogus': unknown"),
        ({"collect.interfaces-ignore": "(["}, {}, {}, "--collect.interfaces-ignore"),
        ({"log-level": "chatty"}, {}, {}, "log-level"),
        ({"docker.host": "ftp://x"}, {}, {}, "docker.host"),
    ],
)
def test_errors_name_the_key(flags, env, file_values, needle) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(flags, env=env, file_values=file_values)
    assert needle in str(err.value)


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def test_cli_bad_flag_exits_2_naming_the_key(tmp_path: Path) -> None:
    res = run_cli("run", "--collect.tcp-states-interval", "0s", tmp_path=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "dockwatch: error: --collect.tcp-states-interval: '0s' is invalid: "
        "expected a duration greater than zero"
    ]


def test_cli_bad_file_key_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "dockwatch.yaml"
    cfg.write_text("web:\n  listen-adress: ':9105'\n")
    res = run_cli("run", "--config", str(cfg), tmp_path=tmp_path)
    assert res.returncode == 2
    assert "config key 'web.listen-adress': unknown" in res.stderr


def test_cli_bad_yaml_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "dockwatch.yaml"
    cfg.write_text("web: [unclosed\n")
    res = run_cli("run", "--config", str(cfg), tmp_path=tmp_path)
    assert res.returncode == 2
    assert "is not valid YAML" in res.stderr


def test_cli_help_lists_every_key(tmp_path: Path) -> None:
    res = run_cli("--help", tmp_path=tmp_path)
    assert res.returncode == 0
    flat = "".join(res.stdout.split())  # argparse wraps lines anywhere
    for key in config.KEYS:
        assert f"--{key.name}" in res.stdout
        assert f"[env:{key.env}]" in flat


# --- issue 9: misconfiguration is loud --------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("DOCKWATCH_LOG_LEVL", "DOCKWATCH_LOG_LEVEL"),
        ("DOCKWATCH_COLLECT_INTERVALL", "DOCKWATCH_COLLECT_INTERVAL"),
        ("DOCKWATCH_SIDCAR", "DOCKWATCH_SIDECAR"),
    ],
)
def test_misspelled_environment_variable_is_refused_naming_the_closest(name: str, closest: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load({}, env={name: "x"})
    assert str(err.value).startswith(f"environment variable {name}: unknown; did you mean {closest}?")


def test_dockwatch_variables_that_are_not_keys_are_known() -> None:
    env = {"DOCKWATCH_CONFIG": "/etc/dockwatch.yml", "DOCKWATCH_IMAGE": "registry/dockwatch:1"}
    assert config.load({}, env=env).log_level == "info"


def test_misspelled_yaml_key_names_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"'web.listen-adress': unknown; did you mean web.listen-address\?"):
        config.load({}, env={}, file_values={"web.listen-adress": ":1"})


def test_cli_misspelled_flag_exits_2_naming_the_closest(tmp_path: Path) -> None:
    res = run_cli("run", "--log-levl=debug", tmp_path=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "dockwatch: error: unrecognized argument '--log-levl=debug'; did you mean --log-level?"
    ]


def test_no_socket_never_chooses_sidecar_mode(tmp_path: Path) -> None:
    """Sidecar mode is asked for, never guessed: not even in a container (/.dockerenv) with no socket."""
    c = config.load({}, env={"DOCKER_HOST": f"unix://{tmp_path / 'missing.sock'}"})
    assert c.sidecar is False and c.docker_host == f"unix://{tmp_path / 'missing.sock'}"
    assert config.load({"sidecar": True}, env={}).sidecar is True


def test_default_drain_and_closing_end_before_dockers_stop_timeout() -> None:
    """SIGTERM → drain (logs.drain-timeout) → at most SHUTDOWN_GRACE to close the sinks → exit, all
    inside Docker's default 10 s before its SIGKILL (tests/integration/test_misconfiguration.py
    checks it under a real `docker stop`)."""
    assert config.load({}, env={}).logs_drain_timeout == config.DRAIN_TIMEOUT
    assert config.DRAIN_TIMEOUT + config.SHUTDOWN_GRACE < config.DOCKER_STOP_TIMEOUT == 10.0
