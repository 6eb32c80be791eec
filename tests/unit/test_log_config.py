"""Log sink configuration: flags, YAML, filters, and errors that name what is wrong (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from agent import config
from agent.app import build_log_pipeline
from agent.cli import build_parser, load_config
from agent.config import ConfigError
from agent.docker.models import Container
from agent.inventory import Inventory
from agent.logs.sinkspec import parse_log_opts, parse_sinks
from tests.support.toolbox import agent_env, container

ROOT = Path(__file__).resolve().parents[2]


def c(name: str = "web-1", image: str = "nginx:1", **labels: str) -> Container:
    return replace(container(1, name, **labels), image=image)


def test_flags_make_one_sink() -> None:
    ns = build_parser().parse_args(
        [
            "run",
            "--docker.host=unix:///nonexistent.sock",  # not sidecar mode, even inside a container
            "--log-sink",
            "fluentd",
            "--log-opt",
            "fluentd-address=tcp://127.0.0.1:24224",
            "--log-opt",
            "tag=docker.{{.Name}}",
        ]
    )
    cfg = load_config(ns, env={})
    assert cfg.log_sink == "fluentd"
    assert parse_log_opts(cfg.log_opt) == {
        "fluentd-address": "tcp://127.0.0.1:24224",
        "tag": "docker.{{.Name}}",
    }
    pipe = build_log_pipeline(cfg, None, Inventory())  # type: ignore[arg-type]
    assert pipe is not None and [r.name for r in pipe.runners] == ["fluentd"]


def test_yaml_sinks_and_filters() -> None:
    specs = parse_sinks(
        [
            {
                "name": "central",
                "driver": "fluentd",
                "options": {"fluentd-async": True},
                "include": {"name": "^web"},
            },
            {"driver": "json-file", "exclude": {"label": "^tier=debug$", "image": "^busybox"}},
        ]
    )
    central, files = specs
    assert central.options == {"fluentd-async": "true"}  # YAML booleans become Docker's strings
    assert files.name == "json-file"
    assert central.wants(c()) and not central.wants(c(name="db"))
    assert files.wants(c()) and not files.wants(c(tier="debug")) and not files.wants(c(image="busybox:1"))
    # the opt-out label wins over every include
    assert not central.wants(c(**{"dockwatch.logs": "false"}))


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ([{"name": "x"}], "logs.sinks[0].driver"),
        ([{"driver": "fluentd", "incude": {}}], "logs.sinks[0].incude"),
        ([{"driver": "fluentd", "include": {"nmae": "x"}}], "logs.sinks[0].include.nmae"),
        ([{"driver": "fluentd", "include": {"name": "("}}], "logs.sinks[0].include.name"),
        ([{"driver": "fluentd", "options": {"tag": {"a": 1}}}], "logs.sinks[0].options.tag"),
        ([{"driver": "fluentd"}, {"driver": "fluentd"}], "two sinks named 'fluentd'"),
        ([{"driver": "fluentd", "name": "../etc"}], "logs.sinks[0].name"),
    ],
)
def test_bad_sink_specs_name_the_field(raw: object, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        config.load({}, env={}, file_values={"logs.sinks": raw})


def test_env_takes_yaml_and_one_opt_per_line() -> None:
    env = {
        "DOCKWATCH_LOGS_SINKS": '[{"driver": "json-file", "options": {"path": "/tmp/x"}}]',
        "DOCKWATCH_LOG_SINK": "fluentd",
        "DOCKWATCH_LOG_OPT": "fluentd-async=true\ntag=a,b",
    }
    cfg = config.load({}, env=env)
    assert cfg.logs_sinks[0].driver == "json-file"
    assert parse_log_opts(cfg.log_opt) == {"fluentd-async": "true", "tag": "a,b"}


def test_start_at_and_orphan_log_opt() -> None:
    with pytest.raises(ConfigError, match=r"logs\.start-at"):
        config.load({"logs.start-at": "middle"}, env={})
    with pytest.raises(ConfigError, match="--log-opt"):
        config.load({"log-opt": ["a=b"]}, env={})


def run_cli(*args: str, cfg: str | None = None, tmp: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = []
    if cfg is not None and tmp is not None:
        (tmp / "c.yml").write_text(cfg)
        extra = [f"--config={tmp / 'c.yml'}"]
    env = agent_env()  # not the shell's DOCKWATCH_* variables: the agent refuses unknown ones
    return subprocess.run(
        [sys.executable, "-m", "agent", "run", "--web.listen-address=127.0.0.1:0", *extra, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log-sink", "fluentd", "--log-opt", "fluentd-adress=tcp://x:1"], "'fluentd-adress'"),
        (["--log-sink", "fluentd", "--log-opt", "fluentd-async=maybe"], "fluentd-async='maybe'"),
        (["--log-sink", "gelf"], "unknown driver 'gelf'"),
        (["--log-sink", "fluentd", "--log-opt", "novalue"], "'novalue': expected KEY=VALUE"),
    ],
)
def test_cli_refuses_bad_sink_options_by_name(args: list[str], message: str) -> None:
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr


def test_cli_refuses_bad_yaml_sink_option(tmp_path: Path) -> None:
    res = run_cli(
        cfg="logs:\n  sinks:\n    - {name: c, driver: json-file, options: {max-size: '-1'}}\n", tmp=tmp_path
    )
    assert res.returncode == 2
    assert "log sink 'c'" in res.stderr and "max-size" in res.stderr
