"""Typed configuration: each key declared once, with type, default and help.

Precedence: command-line flag > DOCKWATCH_<KEY> environment variable > YAML file > default.
Keys are spelled like the flags without the dashes (`web.listen-address`); in YAML they may
also be nested (`web: {listen-address: ...}`); in the environment dots and dashes become
underscores (DOCKWATCH_WEB_LISTEN_ADDRESS). Unknown keys are refused by name.

Each key is declared once, as a field of `Config` with its flag name, kind (a parser object),
default and help: KEYS, the flags, the env names, the YAML keys and the README table derive from it.
Sink specs and their options are parsed and validated here too, at load time: the option tables
live in exporters/, so the composition root hands in a check (`load(..., checks=app.CHECKS)`).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import yaml

from agent import fastproc, hostfs
from agent.logs.sinkspec import SinkSpec, flag_sink, parse_sinks


class ConfigError(ValueError):
    """A configuration value is wrong; str() names the key and what was expected. Exit code 2."""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """How a key's value is parsed (ValueError says what was expected) and how the CLI takes it."""

    parse: Callable[[Any], T]
    flag: Literal["value", "bool", "append"] = "value"  # --x V; --x/--no-x; repeatable (as --log-opt)


# --- value parsing ------------------------------------------------------------------------------
_DUR = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_duration(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        seconds = float(v)
    else:
        m = _DUR.match(str(v).strip())
        if not m:
            raise ValueError("expected a duration such as 500ms, 10s, 1m")
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if not seconds > 0 or math.isinf(seconds):  # NaN and infinity too (YAML's .nan, .inf)
        raise ValueError("expected a duration greater than zero")
    return seconds


def _parse_duration0(v: Any) -> float:
    if str(v).strip() in ("0", "0s", "0.0"):
        return 0.0
    return _parse_duration(v)


def _parse_count0(v: Any) -> int:
    s = str(v).strip()
    if isinstance(v, bool) or not (s.isascii() and s.isdigit()):
        raise ValueError("expected a whole number, 0 or more")
    return int(s)


def _parse_address(v: Any) -> tuple[str, int]:
    s = str(v).strip()
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT or :PORT, e.g. :9105 or 127.0.0.1:9105")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _parse_regex(v: Any) -> re.Pattern[str]:
    try:
        return re.compile(str(v))
    except re.error as exc:
        raise ValueError(f"expected a regular expression ({exc})") from None


def _parse_str(v: Any) -> str:
    if isinstance(v, dict | list):
        raise ValueError("expected a string")
    return str(v)


def _parse_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, list | tuple):
        return tuple(str(x) for x in v)
    if isinstance(v, dict):
        raise ValueError("expected a list of strings")
    return tuple(line for line in str(v).splitlines() if line.strip())


def _parse_sinks(v: Any) -> tuple[SinkSpec, ...]:
    if isinstance(v, str):  # from the environment: YAML (or JSON) text
        try:
            v = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            raise ValueError(f"not YAML: {exc}") from None
    return parse_sinks(v)


def choice(*allowed: str) -> Kind[str]:
    """One of a few words (log.level, log.format, logs.start-at)."""
    expected = " or ".join(allowed) if len(allowed) == 2 else "one of " + ", ".join(allowed)

    def parse(v: Any) -> str:
        s = _parse_str(v)
        if s not in allowed:
            raise ValueError(f"expected {expected}")
        return s

    return Kind(parse)


STR = Kind(_parse_str)
BOOL = Kind(parse_bool, "bool")
DURATION = Kind(_parse_duration)
DURATION0 = Kind(_parse_duration0)  # 0 allowed: "off" / "at scrape time"
ADDRESS = Kind(_parse_address)
COUNT0 = Kind(_parse_count0)  # 0 allowed: "no limit"
REGEX = Kind(_parse_regex)
LIST = Kind(_parse_list, "append")
SINKS = Kind(_parse_sinks)


def env_name(name: str) -> str:
    return "DOCKWATCH_" + re.sub(r"[.-]", "_", name).upper()


@dataclass(frozen=True, slots=True)
class Key:
    name: str  # flag name without "--"
    kind: Kind[Any]
    default: Any  # as a user would write it (durations "10s"): --help shows it so
    help: str
    metavar: str = ""

    @property
    def env(self) -> str:
        return env_name(self.name)

    @property
    def attr(self) -> str:
        return re.sub(r"[.-]", "_", self.name)

    @property
    def shown_default(self) -> str:
        """The default as a user writes it (`10s`, `false`); "" for none or an empty one."""
        if self.default is None or self.default in ("", ()):
            return ""
        return str(self.default).lower() if isinstance(self.default, bool) else str(self.default)


def key(name: str, kind: Kind[Any], default: Any, help: str, metavar: str = "") -> Any:
    """A Config field that is a key: flag, env variable, YAML key and README row come from it."""
    return field(metadata={"key": Key(name, kind, default, help, metavar)})


# Shutdown: the drain, then at most SHUTDOWN_GRACE more to close the sinks. Together they stay under
# Docker's default stop timeout (10 s; then SIGKILL), so a dead sink cannot get the agent killed.
DRAIN_TIMEOUT = 5.0
SHUTDOWN_GRACE = 2.0
DOCKER_STOP_TIMEOUT = 10.0
_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Config:
    """Every key, declared once (name, kind, default, help) and parsed; built only by load()."""

    web_listen_address: tuple[str, int] = key(
        "web.listen-address", ADDRESS, ":9105", "Address for /metrics, /healthz and /readyz.", "HOST:PORT"
    )
    web_max_connections: int = key(
        "web.max-connections",
        COUNT0,
        1024,
        "Connections open at once (after their TLS handshake). At the limit a new connection "
        "closes the one idle the longest; if every one is in a request, it is answered 503 and "
        "closed. An idle connection costs ~7 KiB; a scraper keeps one. 0: no limit.",
        "N",
    )
    web_config_file: str | None = key(
        "web.config.file",
        STR,
        None,
        "exporter-toolkit web config (TLS, client certificates, basic auth, headers) for every endpoint.",
        "FILE",
    )
    docker_host: str = key(
        "docker.host",
        STR,
        None,
        f"Engine API endpoint. Default: $DOCKER_HOST, else {hostfs.DEFAULT_DOCKER_HOST}.",
        "URL",
    )
    docker_timeout: float = key(
        "docker.timeout", DURATION, "10s", "Timeout for one Engine API request.", "DURATION"
    )
    docker_tls_verify: bool = key(
        "docker.tls-verify",
        BOOL,
        None,
        "TLS to a tcp:// engine, verifying it with ca.pem from docker.cert-path and presenting cert.pem "
        "and key.pem when present. Default: on when $DOCKER_TLS_VERIFY is set, as the docker CLI.",
        "",
    )
    docker_cert_path: str = key(
        "docker.cert-path",
        STR,
        None,
        "Directory of ca.pem, cert.pem and key.pem. Default: $DOCKER_CERT_PATH, else ~/.docker.",
        "DIR",
    )
    path_procfs: str = key(
        "path.procfs", STR, hostfs.DEFAULT_PROCFS, "Host procfs root (/host/proc in a container).", "PATH"
    )
    path_docker_root: str = key(
        "path.docker-root",
        STR,
        hostfs.DEFAULT_DOCKER_ROOT,
        "Docker's data root, for reading json-file logs (/host/var/lib/docker in a container).",
        "PATH",
    )
    path_state: str = key(
        "path.state",
        STR,
        "/var/lib/dockwatch",
        "Directory for log checkpoints (a volume in a container).",
        "PATH",
    )
    node_name: str | None = key(
        "node-name", STR, None, "Value of the `node` label. Default: the engine's host name.", "NAME"
    )
    collector_loopback: bool = key(
        "collector.loopback", BOOL, False, "Export the lo interface's traffic too.", ""
    )
    collector_host_netns: bool = key(
        "collector.host-netns",
        BOOL,
        True,
        'Export the host network namespace once (name="", physical interfaces only).',
        "",
    )
    collector_interval: float = key(
        "collector.interval",
        DURATION0,
        "0s",
        "0: collect at scrape time. >0: collect in the background this often (and on a container "
        "change: new namespaces at once, at most every 0.5s under churn); /metrics answers from the "
        "last collection. For hundreds of containers.",
        "DURATION",
    )
    collector_tcp_states: bool = key(
        "collector.tcp-states",
        BOOL,
        False,
        "Opt-in: TCP sockets by state from net/tcp{,6} (~10 ms CPU per namespace; own interval).",
        "",
    )
    collector_tcp_states_interval: float = key(
        "collector.tcp-states-interval",
        DURATION,
        "30s",
        "How often the TCP-state tier reads net/tcp{,6}.",
        "DURATION",
    )
    collector_connections: bool = key(
        "collector.connections",
        BOOL,
        False,
        "Opt-in: what listens in each namespace, whether published ports reach a listener, and who "
        "talks to whom (peer per connection), from net/tcp{,6} and net/udp{,6} on their own interval, "
        "never at scrape time. With --collector.tcp-states the TCP states come from the same read (so on "
        "this interval).",
        "",
    )
    collector_connections_interval: float = key(
        "collector.connections-interval",
        DURATION,
        "2m",
        "How often the connection tier reads the socket tables (~4 ms CPU per namespace with sockets: "
        "about 1.8 percent of a core at 500 containers at this default in one loaded run, bench/RESULTS.md).",
        "DURATION",
    )
    collector_connections_external_ips: bool = key(
        "collector.connections-external-ips",
        BOOL,
        False,
        "Keep external peers' addresses in the `peer` label, one series per remote address; when "
        "off, every external peer is `external`.",
        "",
    )
    collector_interfaces_ignore: re.Pattern[str] = key(
        "collector.interfaces-ignore",
        REGEX,
        r"^(tunl0|sit0|ip6tnl0|ip6gre0|gre0|gretap0|erspan0|ip_vti0|ip6_vti0)$",
        "Interfaces never exported (the kernel's per-namespace fallback tunnel devices by default).",
        "REGEX",
    )
    collector_host_interfaces_ignore: re.Pattern[str] = key(
        "collector.host-interfaces-ignore",
        REGEX,
        r"^(lo|veth.*|docker.*|br-.*|vx-.*|ifb\d+)$",
        "Host-namespace interfaces not exported (container veths and bridges count as container traffic).",
        "REGEX",
    )
    collector_ipv6: str = key(
        "collector.ipv6",
        choice("auto", "always", "never"),
        "auto",
        'When to read net/sockstat6 and net/snmp6 (the ip_version="6" TCP/UDP socket and UDP series): '
        "auto = only for namespaces with an IPv6 address on an interface other than lo (net/if_inet6); "
        "always; never. Where not read, those series are absent, not 0.",
        "MODE",
    )
    collector_parser: str = key(
        "collector.parser",
        choice("auto", "c", "python"),
        "auto",
        "How each namespace's /proc files are parsed: c = the compiled module agent/_procnet.c (built "
        "by pip install . where gcc and Python's headers are; about half the collection CPU); python = "
        "the pure-Python parsers (same values); auto = c where it was built, else python (the agent "
        "logs which at start).",
        "MODE",
    )
    collector_keep_files_open: bool = key(
        "collector.keep-files-open",
        BOOL,
        True,
        "Keep each namespace's /proc/<pid>/net files open between collections and read them again "
        "from the start: about a third less kernel CPU per namespace, for about 5 KB of kernel memory "
        "per file kept (up to 7 per namespace, at most half the open-files limit; closed at the first "
        "collection without the namespace, or after collector.keep-files-idle without a collection). "
        "false: open and close them at each read.",
        "",
    )
    collector_keep_files_idle: float = key(
        "collector.keep-files-idle",
        DURATION,
        "2m",
        "Kept files are closed after this long without a collection (a kept file holds its namespace "
        "alive). Make it longer than the scrape interval: with a 5-minute scrape, 6m.",
        "DURATION",
    )
    sidecar: bool = key(
        "sidecar",
        BOOL,
        False,
        "Sidecar mode: watch only this process's own network namespace (share it with the app via "
        "network_mode: service:app); no Docker socket needed. Only when asked: without it, an agent "
        "that cannot reach the engine says why and /readyz answers 503.",
        "",
    )
    sidecar_name: str | None = key(
        "sidecar.name", STR, None, "Sidecar mode: the `name` label. Default: this host name.", "NAME"
    )
    sidecar_service: str = key(
        "sidecar.service", STR, "", "Sidecar mode: the `compose_service` / `service` labels.", "NAME"
    )
    sidecar_project: str = key(
        "sidecar.project", STR, "", "Sidecar mode: the `compose_project` / `stack` labels.", "NAME"
    )
    sidecar_image: str = key("sidecar.image", STR, "", "Sidecar mode: the `image` label.", "IMAGE")
    log_level: str = key(
        "log.level", choice(*_LEVELS), "info", "Agent log level: debug, info, warning, error.", "LEVEL"
    )
    log_format: str = key(
        "log.format",
        choice("logfmt", "json"),
        "logfmt",
        "Format of the agent's own log lines: logfmt or json.",
        "FORMAT",
    )
    # --- log shipping (agent/logs) ---
    log_sink: str | None = key(
        "log-sink",
        STR,
        None,
        "Ship container logs to this sink, named as Docker's driver: json-file, syslog, fluentd.",
        "DRIVER",
    )
    log_opt: tuple[str, ...] = key(
        "log-opt",
        LIST,
        (),
        "KEY=VALUE option of --log-sink, as `docker run --log-opt`; repeat the flag (env: one per line).",
        "KEY=VALUE",
    )
    log_events: bool = key(
        "log-events",
        BOOL,
        False,
        "Also ship docker events through --log-sink, one JSON record each (not replayed after a restart).",
        "",
    )
    log_events_tag: str = key(
        "log-events-tag",
        STR,
        "docker.events",
        "Tag of the docker event records of --log-sink (logs.sinks: `events-tag`).",
        "TAG",
    )
    logs_sinks: tuple[SinkSpec, ...] = key(
        "logs.sinks",
        SINKS,
        (),
        "Several sinks (YAML list): name, driver, options, include/exclude {name, image, label} regexes.",
        "YAML",
    )
    logs_start_at: str = key(
        "logs.start-at",
        choice("beginning", "end"),
        "beginning",
        "Where to start, per sink, on a container that existed before the sink's first start and has no "
        "checkpoint: beginning (all Docker still has, running or stopped) or end (what it writes from "
        "then on). Containers created later: from their first line, also if they ran while the agent "
        "was down.",
        "WHERE",
    )
    logs_join_partial: bool = key(
        "logs.join-partial",
        BOOL,
        True,
        "Rejoin Docker's 16 KiB chunks into one line (up to 1 MiB inclusive); false: pass partial "
        "metadata through. The json-file sink always gets Docker's chunks, as Docker's file has them.",
        "",
    )
    logs_drain_timeout: float = key(
        "logs.drain-timeout",
        DURATION,
        f"{DRAIN_TIMEOUT:g}s",
        "On SIGTERM, how long in-flight log batches may take; the agent exits within this plus "
        f"{SHUTDOWN_GRACE:g}s, inside Docker's default 10s stop timeout (raise stop_grace_period with it).",
        "DURATION",
    )

    # Not a key: --log-sink/--log-opt and logs.sinks together, names checked apart, options validated.
    sinks: tuple[SinkSpec, ...] = ()

    @property
    def hostfs(self) -> hostfs.HostFS:
        return hostfs.HostFS(procfs=Path(self.path_procfs), docker_root=Path(self.path_docker_root))


# Every key, once, in declaration order. The CLI, the env lookup, the YAML reader and the README read it.
KEYS: tuple[Key, ...] = tuple(f.metadata["key"] for f in fields(Config) if "key" in f.metadata)
KEYS_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
if any(k.attr not in {f.name for f in fields(Config)} for k in KEYS):  # a misspelt field, at import
    raise RuntimeError("config: a Config field's name does not match its key's name")
# Keys renamed to the exporters' conventions (node_exporter's --collector.*, --log.level). The old
# spelling is refused with the new one named: a silently ignored flag would be a quiet fallback.
RENAMED: dict[str, str] = {
    **{k.name.replace("collector.", "collect.", 1): k.name for k in KEYS if k.name.startswith("collector.")},
    "log-level": "log.level",
}
ENV_PREFIX = "DOCKWATCH_"
# DOCKWATCH_* variables that are not keys: --config's, and the deploy files' image tag (compose
# interpolation, often exported in the same shell). Any other DOCKWATCH_* is a typo, refused.
ENV_NOT_KEYS = ("DOCKWATCH_CONFIG", "DOCKWATCH_IMAGE")
# A check the composition root adds to load(): raises ConfigError naming the key or sink option.
Check = Callable[[Config], None]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML mappings become dotted keys, unless the dotted prefix is itself a key."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and key not in KEYS_BY_NAME:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def closest(name: str, known: Sequence[str]) -> str:
    """The "; did you mean X?" suffix naming the nearest known spelling ("" when none is near)."""
    got = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {got[0]}?" if got else ""


def check_env(env: Mapping[str, str]) -> None:
    """A misspelled DOCKWATCH_* variable is refused like a misspelled flag, not ignored."""
    known = [k.env for k in KEYS] + list(ENV_NOT_KEYS)
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
    old_env = {env_name(old): KEYS_BY_NAME[new].env for old, new in RENAMED.items()}
    if unknown and unknown[0] in old_env:
        raise ConfigError(f"environment variable {unknown[0]}: renamed {old_env[unknown[0]]}")
    if unknown:
        raise ConfigError(
            f"environment variable {unknown[0]}: unknown{closest(unknown[0], known)} "
            f"(dockwatch --help lists each option's variable)"
        )


def read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: {path} must be a mapping of keys to values")
    return _flatten(data)


def load(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    file_values: Mapping[str, Any] | None = None,
    checks: Sequence[Check] = (),
) -> Config:
    """Merge the sources (flags > env > file > default) into a Config; raise ConfigError by key.

    `checks` come from the composition root (agent/app.py CHECKS): what only exporters/ can
    validate (sink options, the web config file) is refused here too, before anything starts.
    """
    env = os.environ if env is None else env
    check_env(env)
    file_values = file_values or {}
    unknown = sorted(k for k in file_values if k not in KEYS_BY_NAME)
    if unknown and unknown[0] in RENAMED:
        raise ConfigError(f"config key {unknown[0]!r}: renamed {RENAMED[unknown[0]]!r}")
    if unknown:
        raise ConfigError(
            f"config key {unknown[0]!r}: unknown{closest(unknown[0], list(KEYS_BY_NAME))} "
            f"(known keys: {', '.join(k.name for k in KEYS)})"
        )
    values: dict[str, Any] = {}
    given: set[str] = set()
    for key in KEYS:
        if flags.get(key.name) is not None:
            raw, where = flags[key.name], f"--{key.name}"
        elif key.env in env:
            raw, where = env[key.env], key.env
        elif key.name in file_values:
            raw, where = file_values[key.name], f"config key {key.name!r}"
        else:
            # The default, declared once in KEYS, goes through the same parser.
            values[key.attr] = None if key.default is None else key.kind.parse(key.default)
            continue
        try:
            values[key.attr] = key.kind.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: {raw!r} is invalid: {exc}") from None
        given.add(key.attr)
    host_key = "--docker.host" if flags.get("docker.host") is not None else "docker.host"
    if "docker_host" not in given:
        # No socket is no reason to switch to sidecar mode: that is asked for (--sidecar) or not at
        # all; the inventory says what is wrong with the socket, and /readyz stays 503.
        values["docker_host"] = env.get("DOCKER_HOST") or hostfs.DEFAULT_DOCKER_HOST
        host_key = "DOCKER_HOST" if env.get("DOCKER_HOST") else host_key
    if values.get("log_opt") and not values.get("log_sink"):
        raise ConfigError("--log-opt: given without --log-sink (the options are for that sink)")
    if values.get("log_events") and not values.get("log_sink"):
        raise ConfigError("--log-events: given without --log-sink (logs.sinks entries take `events: true`)")
    _check_docker_host(values, host_key, given, env)
    if values["collector_parser"] == "c" and fastproc.C is None:
        raise ConfigError(
            "collector.parser: 'c', but the C module agent._procnet was not built (pip install . "
            "builds it where gcc and Python's headers are installed); 'auto' falls back to python"
        )
    values["sinks"] = _all_sinks(values)
    cfg = Config(**values)
    for check in checks:
        check(cfg)
    return cfg


def _all_sinks(values: dict[str, Any]) -> tuple[SinkSpec, ...]:
    """--log-sink (first) and the logs.sinks entries; their names key checkpoints and metrics."""
    specs = list(values["logs_sinks"])
    if values["log_sink"]:
        events, tag = values["log_events"], values["log_events_tag"]
        try:
            specs.insert(0, flag_sink(values["log_sink"], values["log_opt"], events, tag))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"log sinks: two sinks named {names[0]!r}; name the logs.sinks entries apart")
    return tuple(specs)


def _check_docker_host(values: dict[str, Any], key: str, given: set[str], env: Mapping[str, str]) -> None:
    """The engine endpoint and its TLS files, read the way the docker CLI reads DOCKER_HOST,
    DOCKER_TLS_VERIFY and DOCKER_CERT_PATH; errors name whichever of them (or our keys) was used."""
    host = str(values["docker_host"])
    if host.startswith("ssh://"):
        raise ConfigError(
            f"{key}: {host!r} is not supported: dockwatch reads the Engine API of its own host over "
            "unix:// or tcp:// (TLS: DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), not through ssh; run the agent "
            "on that host"
        )
    if not host.startswith(("unix://", "tcp://", "http://")):
        raise ConfigError(f"{key}: {host!r} is invalid: expected unix:///path, tcp://host:port or http://")
    if "docker_tls_verify" not in given:
        # The docker CLI: any non-empty DOCKER_TLS_VERIFY turns TLS with verification on.
        values["docker_tls_verify"] = env.get("DOCKER_TLS_VERIFY", "") != ""
        tls_key = "DOCKER_TLS_VERIFY"
    else:
        tls_key = "docker.tls-verify"
    path_key = "docker.cert-path"
    if "docker_cert_path" not in given:
        if env.get("DOCKER_CERT_PATH"):
            values["docker_cert_path"], path_key = env["DOCKER_CERT_PATH"], "DOCKER_CERT_PATH"
        else:  # the CLI's config directory
            config_dir = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
            values["docker_cert_path"], path_key = config_dir, "DOCKER_CERT_PATH (default)"
    if not values["docker_tls_verify"] or not host.startswith("tcp://"):
        return  # TLS is for tcp:// only, as in the CLI (a unix socket ignores it)
    cert_dir = Path(values["docker_cert_path"])
    ca = cert_dir / "ca.pem"
    if not os.access(ca, os.R_OK):
        raise ConfigError(
            f"{path_key}: {str(cert_dir)!r} has no readable ca.pem, which {tls_key} needs to verify "
            f"the engine at {host}"
        )
    cert, key_file = cert_dir / "cert.pem", cert_dir / "key.pem"
    if os.path.exists(cert) != os.path.exists(key_file):
        raise ConfigError(f"{path_key}: {str(cert_dir)!r} has only one of cert.pem and key.pem")


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| flag / YAML key | environment | default | meaning |", "|---|---|---|---|"]
    for k in KEYS:
        default = f"`{k.shown_default}`" if k.shown_default else ""
        rows.append(f"| `--{k.name}` | `{k.env}` | {default.replace('|', '&#124;')} | {k.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--markdown"]:
        print(markdown_table())
