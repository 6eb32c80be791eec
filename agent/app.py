"""Composition root: build the parts from the config, run them, stop them on SIGTERM.

    startup: engine client → inventory (follows /events) → collectors → HTTP server
    main:    inventory.run()  |  scraper.run() (background collectors, interval mode)  |  aiohttp
    stop:    SIGTERM/SIGINT → cancel the loops → close the server and the engine session

This is the one module of agent/ that imports exporters/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

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
from agent.swarm import SwarmView
from exporters.prometheus.logmetrics import LogMetrics
from exporters.prometheus.names import MIB_FIELDS
from exporters.prometheus.netmap import NetmapMetrics
from exporters.prometheus.scrape import Scraper
from exporters.prometheus.server import make_app, serve
from exporters.prometheus.webconfig import WebConfig, WebConfigError
from exporters.prometheus.webconfig import load as load_web_config
from exporters.sinks import SINKS
from exporters.sinks.base import Sink, SinkConfigError

log = logging.getLogger("dockwatch")


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


def engine_hostname(cfg: Config) -> str:
    """The Docker host's name, which Docker's drivers put in syslog HOST and `{{.Hostname}}`.

    Inside a container socket.gethostname() is the container's id, so ask the engine (/info
    Name) once at start; --node-name wins; this host's name is the fallback when the engine does
    not answer yet (the inventory keeps retrying; sinks keep what they were given).
    """
    if cfg.node_name:
        return cfg.node_name
    if cfg.sidecar:
        return socket.gethostname()

    async def ask() -> str:
        async with docker_client(cfg, timeout=min(cfg.docker_timeout, 3.0)) as client:
            return (await client.info()).name

    try:
        name = asyncio.run(ask())
    except EngineError:  # the inventory says why, once; this is only the consequence
        log.info("log sinks name this host %r: the engine did not answer at start", socket.gethostname())
        name = ""
    return name or socket.gethostname()


def procfs_problem(cfg: Config) -> str:
    """Why --path.procfs cannot be read as a procfs ("" when it can). Sidecars read their own /proc."""
    if cfg.sidecar:
        return ""
    probe = Path(cfg.path_procfs, "self", "net", "dev")
    try:
        with open(probe, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return (
            f"--path.procfs {cfg.path_procfs}: cannot read {probe} ({exc.strerror or exc}); mount the "
            f"host's /proc there (-v /proc:{cfg.path_procfs}:ro) or point --path.procfs at it"
        )
    return ""


class Readiness:
    """What /readyz reports: the engine answered and the inventory is loaded, and /proc is readable."""

    def __init__(self, cfg: Config, inventory: Inventory) -> None:
        self.cfg = cfg
        self.inventory = inventory

    @property
    def last_error(self) -> str:
        return procfs_problem(self.cfg) or self.inventory.last_error

    @property
    def is_ready(self) -> bool:
        return self.inventory.is_ready and not procfs_problem(self.cfg)


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
    if cfg.sidecar:  # validated above all the same: a typo fails now, not when the mode changes
        log.warning("sidecar mode: no engine to read container logs from; log sinks are not started")
        return None
    tail_opts = TailOptions(join_partial=cfg.logs_join_partial, start_at_end=cfg.logs_start_at == "end")
    pipeline = LogPipeline(runners, cfg.hostfs, Path(cfg.path_state), client, tail_opts, events)
    inventory.add_listener(pipeline.on_container)
    inventory.add_event_listener(pipeline.on_event)
    log.info("shipping container logs to %s", ", ".join(f"{s.name} ({s.driver})" for s in specs))
    return pipeline


class App:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.web: WebConfig | None = None
        if cfg.web_config_file:
            try:  # read now: a bad file is one error naming its key, before anything starts
                self.web = load_web_config(cfg.web_config_file)
            except WebConfigError as exc:
                raise ConfigError(str(exc)) from None
        self.client = docker_client(cfg)
        self.inventory: Inventory
        if cfg.sidecar:
            node = cfg.node_name or socket.gethostname()
            me = sidecar_container(cfg)
            self.inventory = SidecarInventory(me, node)
            log.info("sidecar mode (--sidecar): watching this process's own network namespace as %r", me.name)
        else:
            self.inventory = EngineInventory(self.client, cfg.node_name)
        self.readiness = Readiness(cfg, self.inventory)
        problem = procfs_problem(cfg)
        if problem:  # said once; /readyz keeps answering 503 with it
            log.error("%s; /readyz answers 503", problem)
        # Swarm services and their networks for the network map; a sidecar has no engine to ask.
        self.swarm = None if cfg.sidecar else SwarmView(self.client, self.inventory)
        if self.swarm is not None:
            self.inventory.add_event_listener(self.swarm.on_event)
        # The kernel fields to read are those names.py declares metrics for.
        collectors = build_collectors(cfg, swarm=self.swarm, mib_fields=MIB_FIELDS)
        self.scraper = Scraper(self.inventory, collectors, interval=cfg.collector_interval)
        self.stopping = asyncio.Event()
        wants_logs = bool(cfg.log_sink or cfg.logs_sinks)
        hostname = engine_hostname(cfg) if wants_logs else None
        self.logs = build_log_pipeline(cfg, self.client, self.inventory, hostname)
        if self.logs is not None:
            self.scraper.registry.register(LogMetrics(self.logs), name="logs")
        # Issue 11: networks, ports and swarm services from the Engine API (always on), and the
        # connection tier's last background sweep (a registry collector, when enabled).
        tier = (lambda: collectors.latest(CONNECTIONS)) if CONNECTIONS.name in collectors.names else None
        self.scraper.registry.register(
            NetmapMetrics(lambda: self.inventory.snapshot, self.swarm, tier), name="netmap"
        )

    async def _logs_listing_done(self) -> None:
        await self.inventory.ready.wait()
        assert self.logs is not None
        await self.logs.resume_stopped()
        await asyncio.Event().wait()  # live as long as the app

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

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        host, port = self.cfg.web_listen_address
        try:
            ctx = self.web.ssl_context() if self.web is not None else None
            runner = await serve(make_app(self.scraper, self.readiness, self.web), host, port, ctx)
        except WebConfigError as exc:  # a certificate replaced by a bad one since start
            log.error("%s", exc)
            await self.client.close()
            return 1
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
            await self.client.close()
            return 1
        scheme = "https" if ctx is not None else "http"
        log.info("serving /metrics, /healthz and /readyz on %s://%s:%d", scheme, host or "0.0.0.0", port)
        tasks = [asyncio.create_task(self.inventory.run(), name="inventory")]
        tasks.append(asyncio.create_task(self.scraper.run(), name="collect"))
        if self.swarm is not None:
            tasks.append(asyncio.create_task(self.swarm.run(), name="swarm-services"))
        if self.logs is not None:
            tasks.append(asyncio.create_task(self._logs_listing_done(), name="logs-listing"))
        stop = asyncio.create_task(self.stopping.wait(), name="stop")
        rc = 0
        try:
            done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stop and t.exception() is not None:
                    log.error("%s stopped unexpectedly", t.get_name(), exc_info=t.exception())
                    rc = 1
        finally:
            if self.logs is not None:  # drain first: in-flight batches finish, checkpoints are written
                await self._drain_logs(self.logs)
            for t in [stop, *tasks]:
                t.cancel()
            for t in [stop, *tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await runner.cleanup()
            await self.client.close()
        log.info("stopped")
        return rc
