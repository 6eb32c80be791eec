"""Config precedence and errors; the CLI's exit code 2 with a message naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.config import ConfigError


def test_defaults() -> None:
    c = config.load({}, env={})
    assert c.web_listen_address == ("0.0.0.0", 9105)
    assert c.docker_host == "unix:///var/run/docker.sock"
    assert c.path_procfs == "/proc"
    assert c.collector_tcp_states is False


def test_docker_host_env_is_respected() -> None:
    assert config.load({}, env={"DOCKER_HOST": "tcp://10.0.0.1:2375"}).docker_host == "tcp://10.0.0.1:2375"


def test_precedence_flag_over_env_over_file() -> None:
    file_values = config._flatten({"web": {"listen-address": ":1"}, "collector": {"tcp-states": True}})
    env = {"DOCKWATCH_WEB_LISTEN_ADDRESS": ":2"}
    c = config.load({"web.listen-address": ":3"}, env=env, file_values=file_values)
    assert c.web_listen_address == ("0.0.0.0", 3)
    assert c.collector_tcp_states is True  # only the file set it
    c = config.load({}, env=env, file_values=file_values)
    assert c.web_listen_address == ("0.0.0.0", 2)
    c = config.load({}, env={}, file_values=file_values)
    assert c.web_listen_address == ("0.0.0.0", 1)


@pytest.mark.parametrize(
    ("flags", "env", "file_values", "needle"),
    [
        ({"web.listen-address": "nope"}, {}, {}, "--web.listen-address"),
        ({}, {"DOCKWATCH_COLLECTOR_LOOPBACK": "maybe"}, {}, "DOCKWATCH_COLLECTOR_LOOPBACK"),
        ({}, {}, {"collector.tcp-states-interval": "soon"}, "'collector.tcp-states-interval'"),
        ({}, {}, {"collector.bogus": 1}, "'collector.bogus': unknown"),
        ({"collector.interfaces-ignore": "(["}, {}, {}, "--collector.interfaces-ignore"),
        ({"log.level": "chatty"}, {}, {}, "log.level"),
        ({"docker.host": "ftp://x"}, {}, {}, "docker.host"),
        ({"web.max-connections": "-1"}, {}, {}, "--web.max-connections"),
        ({}, {"DOCKWATCH_WEB_MAX_CONNECTIONS": "lots"}, {}, "DOCKWATCH_WEB_MAX_CONNECTIONS"),
        ({}, {}, {"web.max-connections": True}, "'web.max-connections'"),
    ],
)
def test_errors_name_the_key(
    flags: dict[str, str], env: dict[str, str], file_values: dict[str, Any], needle: str
) -> None:
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
    res = run_cli("run", "--collector.tcp-states-interval", "0s", tmp_path=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "dockwatch: error: --collector.tcp-states-interval: '0s' is invalid: "
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
        ("DOCKWATCH_COLLECTOR_INTERVALL", "DOCKWATCH_COLLECTOR_INTERVAL"),
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
    res = run_cli("run", "--log.levl=debug", tmp_path=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "dockwatch: error: unrecognized argument '--log.levl=debug'; did you mean --log.level?"
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


# --- issue 13.3: flags as exporters name them ---------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("run", "--collect.interval=2s"),
            "dockwatch: error: --collect.interval: renamed --collector.interval",
        ),
        (("run", "--log-level", "debug"), "dockwatch: error: --log-level: renamed --log.level"),
        (
            ("run", "--sidecar=maybe"),
            "dockwatch: error: --sidecar: 'maybe' is invalid: expected true or false",
        ),
        (
            ("rn",),
            "dockwatch: error: argument COMMAND: invalid choice: 'rn' (choose from 'run', 'top') "
            "(dockwatch run --help lists the options)",
        ),
        (
            ("run", "--collector.interval"),
            "dockwatch: error: argument --collector.interval: expected one "
            "argument (dockwatch run --help lists the options)",
        ),
        (
            ("run", "--collector"),
            "dockwatch: error: unrecognized argument '--collector'; did you mean --collector.ipv6?",
        ),
    ],
)
def test_cli_errors_are_one_line(args: tuple[str, ...], line: str, tmp_path: Path) -> None:
    res = run_cli(*args, tmp_path=tmp_path)
    assert (res.returncode, res.stderr.splitlines()) == (2, [line])


def test_no_command_is_a_short_reminder(tmp_path: Path) -> None:
    res = run_cli(tmp_path=tmp_path)
    assert res.returncode == 2
    assert res.stdout == "" and len(res.stderr.splitlines()) == 1 and "dockwatch --help" in res.stderr


def test_renamed_env_and_yaml_keys_name_the_new_spelling() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^environment variable DOCKWATCH_COLLECT_INTERVAL: renamed "
        r"DOCKWATCH_COLLECTOR_INTERVAL$",
    ):
        config.load({}, env={"DOCKWATCH_COLLECT_INTERVAL": "2s"})
    yaml_keys = config._flatten({"collect": {"tcp-states": True}})
    with pytest.raises(
        ConfigError, match=r"^config key 'collect.tcp-states': renamed 'collector.tcp-states'$"
    ):
        config.load({}, env={}, file_values=yaml_keys)


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["run", "--collector.loopback=true"], True),
        (["run", "--collector.loopback=false"], False),
        (["run", "--collector.loopback"], True),
        (["run", "--no-collector.loopback"], False),
        (["run"], False),
    ],
)
def test_boolean_flags_take_true_and_false(args: list[str], want: bool) -> None:
    from agent import cli

    ns = cli.build_parser().parse_args(cli._bool_values(args))
    assert cli.load_config(ns, env={}).collector_loopback is want


def test_help_shows_defaults_as_written_and_empty_ones_as_nothing(tmp_path: Path) -> None:
    res = run_cli("run", "--help", tmp_path=tmp_path)
    flat = " ".join(res.stdout.split())
    assert "Timeout for one Engine API request. Default: 10s." in flat
    assert "Default: 2m." in flat and "Default: 0s." in flat and "Default: false." in flat
    for empty in ("Default: .", "Default: ()", "Default: None", "10.0", "(default: "):
        assert empty not in flat, empty


def test_agent_log_lines_as_logfmt_and_json() -> None:
    import json
    import logging

    from agent.logformat import JSONFormatter, LogfmtFormatter

    rec = logging.LogRecord(
        "agent.app", logging.WARNING, __file__, 1, 'sink "%s" down\nretrying', ("a b",), None
    )
    line = LogfmtFormatter().format(rec)
    assert "\n" not in line
    assert line.split(" ", 1)[1] == 'level=warn logger=agent.app msg="sink \\"a b\\" down\\nretrying"'
    assert line.startswith("ts=") and line.split(" ", 1)[0].endswith("Z")
    doc = json.loads(JSONFormatter().format(rec))
    assert (doc["level"], doc["logger"], doc["msg"]) == ("warn", "agent.app", 'sink "a b" down\nretrying')
