"""Composition root: build the parts from the config, run them, stop them on SIGTERM.

App's lifecycle (startup → main → shutdown) is drawn in its docstring. CHECKS are what
config.load runs at load time for the parts only this module knows (sink options, web config).

This is the one module of agent/ that imports exporters/.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.collectors import CONNECTIONS, build_collectors
from agent.config import SHUTDOWN_GRACE, Check, Config, ConfigError
from agent.docker.client import DockerClient, tls_context
from agent.docker.models import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    STACK_NAMESPACE,
    SWARM_SERVICE,
    Container,
    EngineError,
)
from agent.inventory import EngineInventory, Inventory, SidecarInventory
from agent.logs.delivery import SinkRunner, TailOptions
from agent.logs.events import EventShipper
from agent.logs.pipeline import LogPipeline
from agent.logs.sinkspec import SinkSpec
from agent.nsfiles import raise_open_files_limit
from agent.swarm import SwarmView
from exporters.prometheus.httpd import Server
from exporters.prometheus.logmetrics import LogMetrics
from exporters.prometheus.names import MIB_FIELDS, SOCKSTAT_FIELDS
from exporters.prometheus.netmap import NetmapMetrics
from exporters.prometheus.scrape import Scraper
from exporters.prometheus.server import make_app, serve
from exporters.prometheus.webconfig import WebConfig, WebConfigError
from exporters.prometheus.webconfig import load as load_web_config
from exporters.sinks import SINKS
from exporters.sinks.base import Sink, SinkConfigError

log = logging.getLogger("dockwatch")
# NetCollector's kept /proc files (agent/nsfiles.py) are closed when nothing was collected for
# collector.keep-files-idle (2 minutes: longer than common scrape intervals, 15 s-1 min), looked at
# every quarter of that, at most every RELEASE_EVERY s.
RELEASE_EVERY = 30.0


def sidecar_container(cfg: Config) -> Container:
    """The one "container" a sidecar watches: itself, in the app's network namespace."""
    name = cfg.sidecar_name or socket.gethostname()
    labels = {}
    if cfg.sidecar_service:
        labels[COMPOSE_SERVICE] = labels[SWARM_SERVICE] = cfg.sidecar_service
    if cfg.sidecar_project:
        labels[COMPOSE_PROJECT] = labels[STACK_NAMESPACE] = cfg.sidecar_project
    return Container(
        id=f"sidecar-{name}",
        name=name,
        image=cfg.sidecar_image,
        image_id="",
        pid=os.getpid(),
        network_mode="sidecar",
        labels=labels,
    )


def docker_client(cfg: Config, timeout: float | None = None) -> DockerClient:
    """The engine client the config asks for (TLS as the docker CLI does it, for tcp://)."""
    tls = None
    if cfg.docker_tls_verify and cfg.docker_host.startswith("tcp://"):
        try:
            tls = tls_context(cfg.docker_cert_path)
        except ValueError as exc:
            raise ConfigError(f"docker.cert-path: {exc}") from None
    return DockerClient(cfg.docker_host, cfg.docker_timeout if timeout is None else timeout, tls)


async def engine_hostname(cfg: Config) -> str:
    """The Docker host's name, which Docker's drivers put in syslog HOST and `{{.Hostname}}`.

    Inside a container socket.gethostname() is the container's id, so ask the engine (/info
    Name) once at startup; --node-name wins; this host's name is the fallback when the engine does
    not answer yet (the inventory keeps retrying; sinks keep what they were given).
    """
    if cfg.node_name:
        return cfg.node_name
    try:
        async with docker_client(cfg, timeout=min(cfg.docker_timeout, 3.0)) as client:
            name = (await client.info()).name
    except EngineError:  # the inventory says why, once; this is only the consequence
        log.info("log sinks name this host %r: the engine did not answer at start", socket.gethostname())
        name = ""
    return name or socket.gethostname()


def procfs_problem(procfs: str) -> str:
    """Why --path.procfs cannot be read as a procfs ("" when it can)."""
    probe = Path(procfs, "self", "net", "dev")
    try:
        with open(probe, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return (
            f"--path.procfs {procfs}: cannot read {probe} ({exc.strerror or exc}); mount the "
            f"host's /proc there (-v /proc:{procfs}:ro) or point --path.procfs at it"
        )
    return ""


@dataclass(frozen=True, slots=True)
class Source:
    """Where containers come from, chosen once at the root: the engine, or (sidecar mode) this
    process alone. Everything that differs between the two asks this, not the --sidecar flag."""

    inventory: Inventory
    engine: DockerClient | None  # None: a sidecar has no engine (swarm services, logs, host name)
    procfs: str | None  # the host procfs /readyz probes; None: a sidecar reads its own /proc


def choose_source(cfg: Config, client: DockerClient) -> Source:
    if cfg.sidecar:
        me = sidecar_container(cfg)
        log.info("sidecar mode (--sidecar): watching this process's own network namespace as %r", me.name)
        return Source(SidecarInventory(me, cfg.node_name or socket.gethostname()), None, None)
    return Source(EngineInventory(client, cfg.node_name), client, cfg.path_procfs)


class Readiness:
    """What /readyz reports: the engine answered and the inventory is loaded, and /proc is readable."""

    def __init__(self, source: Source) -> None:
        self.inventory = source.inventory
        self.procfs = source.procfs

    def problem(self) -> str:
        return procfs_problem(self.procfs) if self.procfs is not None else ""

    @property
    def last_error(self) -> str:
        return self.problem() or self.inventory.last_error

    @property
    def is_ready(self) -> bool:
        return self.inventory.is_ready and not self.problem()


def make_sink(spec: SinkSpec, hostname: str = "", *, events: bool = False) -> Sink:
    """The sink a spec names, its options parsed by the sink's own table; ConfigError names them.

    `events`: the instance for docker event records, whose tag is the events tag (a literal renders
    as itself): event records carry a synthetic container, and a container tag template would name that.
    """
    cls = SINKS.get(spec.driver)
    if cls is None:
        known = ", ".join(sorted(SINKS))
        raise ConfigError(f"log sink {spec.name!r}: unknown driver {spec.driver!r} (known: {known})")
    opts = {**spec.options, "tag": spec.events_tag} if events else spec.options
    try:
        return cls(opts, name=spec.name, hostname=hostname)
    except SinkConfigError as exc:
        raise ConfigError(f"log sink {spec.name!r}{' events-tag' if events else ''}: {exc}") from None


def check_sinks(cfg: Config) -> None:
    """Load-time check: every sink's driver and options, as the sinks themselves parse them."""
    for spec in cfg.sinks:
        make_sink(spec)
        if spec.events:
            make_sink(spec, events=True)


def check_web_config(cfg: Config) -> None:
    """Load-time check: the web config file (TLS, basic auth), an error naming its key."""
    if cfg.web_config_file:
        try:
            load_web_config(cfg.web_config_file)
        except WebConfigError as exc:
            raise ConfigError(str(exc)) from None


def check_docker_tls(cfg: Config) -> None:
    """Load-time check: the engine's TLS files load."""
    docker_client(cfg)  # builds the TLS context only; no I/O until a request


# What only the root can validate (exporters' option tables, the engine's TLS files), run by
# config.load at load time: a bad option is refused before anything starts, as exit code 2.
CHECKS: tuple[Check, ...] = (check_web_config, check_docker_tls, check_sinks)


def build_log_pipeline(
    cfg: Config, client: DockerClient, inventory: Inventory, hostname: str | None = None
) -> LogPipeline | None:
    """The sinks of cfg.sinks (validated at load: check_sinks), each with its runner."""
    specs = cfg.sinks
    if not specs:
        return None
    hostname = hostname or socket.gethostname()
    runners = []
    events = []
    for spec in specs:
        runner = SinkRunner(spec, make_sink(spec, hostname))
        runners.append(runner)
        if spec.events:
            ev_runner = SinkRunner(spec, make_sink(spec, hostname, events=True), shares_with=runner)
            events.append(EventShipper(ev_runner))
    tail_opts = TailOptions(join_partial=cfg.logs_join_partial, start_at_end=cfg.logs_start_at == "end")
    pipeline = LogPipeline(runners, cfg.hostfs, Path(cfg.path_state), client, tail_opts, events)
    inventory.add_listener(pipeline.on_container)
    inventory.add_event_listener(pipeline.on_event)
    log.info("shipping container logs to %s", ", ".join(f"{s.name} ({s.driver})" for s in specs))
    return pipeline


class _Stopped(Exception):
    """Raised by the main phase's stop task: ends the TaskGroup, which cancels the other tasks."""


class App:
    """The agent's lifecycle, top to bottom as uvicorn's Server: startup(), main(), shutdown().

        run()     signals → startup() ──→ main() ──→ shutdown() → rc
                               └── fails (cannot listen, web config) ──→ shutdown() → rc 1
        startup   /readyz's procfs probe → the engine's host name (one /info, for log sinks)
                  → log pipeline → HTTP server listening
        main      one TaskGroup: inventory | collect | swarm-services | logs-resume | stop
                  stop ends it on SIGTERM/SIGINT; a task that raises is logged, sets rc 1 and
                  ends it too; a task that returns has finished its work (the others go on)
        shutdown  drain the logs (logs.drain-timeout, then SHUTDOWN_GRACE to close the sinks)
                  → close the HTTP server → close the engine client

    __init__ only builds the parts from the config (no I/O); sidecar mode is chosen there, once,
    as the inventory source.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rc = 0
        # Before the collectors take half the soft limit as their budget of kept files.
        before, after = raise_open_files_limit()
        if after != before:
            log.debug("open-files limit raised from %d to the hard limit %d", before, after)
        self.stopping = asyncio.Event()
        self.client = docker_client(cfg)
        self.source = choose_source(cfg, self.client)
        self.inventory, self.engine = self.source.inventory, self.source.engine
        self.readiness = Readiness(self.source)
        # Swarm services and their networks for the network map.
        self.swarm = None if self.engine is None else SwarmView(self.engine, self.inventory)
        if self.swarm is not None:
            self.inventory.add_event_listener(self.swarm.on_event)
        # The kernel fields to read are those names.py declares metrics for.
        self.collectors = build_collectors(
            cfg, swarm=self.swarm, mib_fields=MIB_FIELDS, sockstat_fields=SOCKSTAT_FIELDS
        )
        self.scraper = Scraper(self.inventory, self.collectors, interval=cfg.collector_interval)
        # Issue 11: networks, ports and swarm services from the Engine API (always on), and the
        # connection tier's last background sweep (a registry collector, when enabled).
        collectors = self.collectors
        tier = (lambda: collectors.latest(CONNECTIONS)) if CONNECTIONS.name in collectors.names else None
        self.scraper.registry.register(
            NetmapMetrics(lambda: self.inventory.snapshot, self.swarm, tier), name="netmap"
        )
        self.logs: LogPipeline | None = None
        self.web: WebConfig | None = None
        self._runner: Server | None = None

    async def run(self) -> int:
        """startup → main → shutdown; the exit code (0, or 1 when startup or a task failed)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            if await self.startup():
                await self.main()
        finally:
            await self.shutdown()
        log.info("stopped")
        return self.rc

    async def startup(self) -> bool:
        """Everything that does I/O before serving; False (rc 1, logged) when the agent cannot serve."""
        problem = self.readiness.problem()
        if problem:  # said once; /readyz keeps answering 503 with it
            log.error("%s; /readyz answers 503", problem)
        if self.cfg.sinks:
            self.logs = await self._start_logs()
        host, port = self.cfg.web_listen_address
        try:
            # Read again (load() checked it): certificates are re-read on each handshake anyway.
            self.web = load_web_config(self.cfg.web_config_file) if self.cfg.web_config_file else None
            ctx = self.web.ssl_context() if self.web is not None else None
            self._runner = await serve(
                make_app(self.scraper, self.readiness, self.web),
                host,
                port,
                ctx,
                max_connections=self.cfg.web_max_connections,
            )
        except WebConfigError as exc:  # a file or certificate replaced by a bad one since load
            log.error("%s", exc)
            self.rc = 1
            return False
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
            self.rc = 1
            return False
        scheme = "https" if ctx is not None else "http"
        log.info("serving /metrics, /healthz and /readyz on %s://%s:%d", scheme, host or "0.0.0.0", port)
        return True

    async def _start_logs(self) -> LogPipeline | None:
        if self.engine is None:  # the sinks were validated at load all the same
            log.warning("sidecar mode: no engine to read container logs from; log sinks are not started")
            return None
        hostname = await engine_hostname(self.cfg)
        pipeline = build_log_pipeline(self.cfg, self.client, self.inventory, hostname)
        if pipeline is not None:
            self.scraper.registry.register(LogMetrics(pipeline), name="logs")
        return pipeline

    async def main(self) -> None:
        """The long-running tasks in one TaskGroup, until SIGTERM/SIGINT or a task fails."""
        tasks: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("inventory", self.inventory.run()),
            ("collect", self.scraper.run()),
        ]
        if self.swarm is not None:
            tasks.append(("swarm-services", self.swarm.run()))
        if self.logs is not None:
            tasks.append(("logs-listing", self._resume_stopped(self.logs)))
        tasks.append(("release-idle", self._release_idle()))
        try:
            async with asyncio.TaskGroup() as tg:
                for name, coro in tasks:
                    tg.create_task(self._guard(name, coro), name=name)
                tg.create_task(self._stop_on_signal(), name="stop")
        except* _Stopped:
            pass

    async def _guard(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        """A failing task is logged and stops the agent with rc 1 (the others get cancelled)."""
        try:
            await coro
        except Exception as exc:
            log.error("%s stopped unexpectedly", name, exc_info=exc)
            self.rc = 1
            self.stopping.set()

    async def _release_idle(self) -> None:
        """Collectors idle for collector.keep-files-idle close what they keep open, so the
        namespaces of removed containers are not held alive while nobody scrapes."""
        hold = self.cfg.collector_keep_files_idle
        while True:
            await asyncio.sleep(max(1.0, min(RELEASE_EVERY, hold / 4)))
            closed = await asyncio.to_thread(self.collectors.release_idle, hold)
            if closed:
                log.debug("collector idle for %gs: closed %d kept /proc files", hold, closed)

    async def _stop_on_signal(self) -> None:
        await self.stopping.wait()
        raise _Stopped

    async def _resume_stopped(self, logs: LogPipeline) -> None:
        """After the first listing: the logs of stopped containers not yet shipped (then done)."""
        await self.inventory.ready.wait()
        await logs.resume_stopped()

    async def shutdown(self) -> None:
        """Drain the logs first (in-flight batches finish, checkpoints are written), then close."""
        if self.logs is not None:
            await self._drain_logs(self.logs)
        if self._runner is not None:
            await self._runner.close()
        # In a thread: close() waits for a collector's run in flight (its files are read there).
        await asyncio.to_thread(self.collectors.close)
        await self.client.close()

    async def _drain_logs(self, logs: LogPipeline) -> None:
        """The drain, then closing the sinks, under one deadline that ends inside Docker's stop
        timeout: a sink that is down must not get the agent SIGKILLed mid-drain."""
        drain = self.cfg.logs_drain_timeout
        try:
            await asyncio.wait_for(logs.stop(drain), drain + SHUTDOWN_GRACE)
        except TimeoutError:
            log.warning(
                "log sinks did not close within %gs after the %gs drain; exiting (undelivered lines "
                "were not checkpointed: they are sent on the next start)",
                SHUTDOWN_GRACE,
                drain,
            )
