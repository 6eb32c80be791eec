"""Composition root: build the parts from the config, run them, stop them on SIGTERM.

    startup: engine client → inventory (follows /events) → collector → HTTP server
    main:    inventory.run()  |  tcp-states tier (opt-in)  |  aiohttp serving /metrics
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
import time
from pathlib import Path

from agent.config import Config, ConfigError
from agent.connections import ConnectionCollector  # issue 11
from agent.docker.client import DockerClient
from agent.docker.models import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    STACK_NAMESPACE,
    SWARM_SERVICE,
    Container,
    EngineError,
)
from agent.inventory import Inventory, SidecarInventory
from agent.logs.delivery import SinkRunner, TailOptions
from agent.logs.events import EventShipper
from agent.logs.filters import SinkSpec, parse_log_opts
from agent.logs.pipeline import LogPipeline
from agent.netstats import NetCollector
from agent.swarm import SwarmView  # issue 11
from exporters.prometheus.logmetrics import LogMetrics
from exporters.prometheus.netmap import NetmapMetrics  # issue 11
from exporters.prometheus.scrape import CollectorStatus, Scraper
from exporters.prometheus.server import make_app, serve
from exporters.sinks import SINKS
from exporters.sinks.base import SinkConfigError

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
        async with DockerClient(cfg.docker_host, timeout=min(cfg.docker_timeout, 3.0)) as client:
            return str((await client.info()).get("Name") or "")

    try:
        name = asyncio.run(ask())
    except EngineError as exc:
        log.warning("engine not reachable at start (%s); log sinks use this host's name", exc)
        name = ""
    return name or socket.gethostname()


def build_log_pipeline(
    cfg: Config, client: DockerClient, inventory: Inventory, hostname: str | None = None
) -> LogPipeline | None:
    """The sinks from --log-sink/--log-opt and `logs.sinks`; ConfigError names a bad option."""
    specs = list(cfg.logs_sinks)
    if cfg.log_sink:
        try:
            opts = parse_log_opts(cfg.log_opt)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        ev, ev_tag = cfg.log_events, cfg.log_events_tag
        flag = SinkSpec(cfg.log_sink, cfg.log_sink, opts, events=ev, events_tag=ev_tag)
        specs.insert(0, flag)
    if not specs:
        return None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"log sinks: two sinks named {names[0]!r}; name the logs.sinks entries apart")
    hostname = hostname or socket.gethostname()
    runners = []
    events = []
    for spec in specs:
        cls = SINKS.get(spec.driver)
        if cls is None:
            known = ", ".join(sorted(SINKS))
            raise ConfigError(f"log sink {spec.name!r}: unknown driver {spec.driver!r} (known: {known})")
        try:
            sink = cls(spec.options, name=spec.name, hostname=hostname)
        except SinkConfigError as exc:
            raise ConfigError(f"log sink {spec.name!r}: {exc}") from None
        runners.append(SinkRunner(spec, sink))
        if spec.events:
            # A second instance whose tag is the events tag (a literal renders as itself): event
            # records carry a synthetic container, and a container tag template would name that.
            try:
                ev_sink = cls({**spec.options, "tag": spec.events_tag}, name=spec.name, hostname=hostname)
            except SinkConfigError as exc:
                raise ConfigError(f"log sink {spec.name!r} events-tag: {exc}") from None
            ev_runner = SinkRunner(spec, ev_sink)
            ev_runner.stats = runners[-1].stats  # one set of counters per sink name
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
        self.client = DockerClient(cfg.docker_host, cfg.docker_timeout)
        self.inventory: Inventory
        if cfg.sidecar:
            node = cfg.node_name or socket.gethostname()
            self.inventory = SidecarInventory(sidecar_container(cfg), node)
            log.info("sidecar mode: watching this process's own network namespace as %r", cfg.sidecar_name)
        else:
            self.inventory = Inventory(self.client, cfg.node_name)
        self.collector = NetCollector(
            cfg.hostfs,
            loopback=cfg.collect_loopback,
            host_netns=cfg.collect_host_netns and not cfg.sidecar,
            ignore=cfg.collect_interfaces_ignore,
            host_ignore=cfg.collect_host_interfaces_ignore,
            sidecar=cfg.sidecar,
        )
        self.scraper = Scraper(self.inventory, self.collector, interval=cfg.collect_interval)
        self.stopping = asyncio.Event()
        wants_logs = bool(cfg.log_sink or cfg.logs_sinks)
        hostname = engine_hostname(cfg) if wants_logs else None
        self.logs = build_log_pipeline(cfg, self.client, self.inventory, hostname)
        if self.logs is not None:
            self.scraper.registry.register(LogMetrics(self.logs))
        self._wire_netmap(cfg)

    # --- issue 11 (Docker networking): wiring to re-point onto the collector registry (issue 10) ---
    def _wire_netmap(self, cfg: Config) -> None:
        """Always-on network/port metrics from the Engine API; the opt-in connection tier."""
        self.swarm = None if cfg.sidecar else SwarmView(self.client, self.inventory)
        if self.swarm is not None:
            self.inventory.add_event_listener(self.swarm.on_event)
        self.connections: ConnectionCollector | None = None
        if cfg.collect_connections:
            self.connections = ConnectionCollector(
                self.collector,
                host_netns=cfg.collect_host_netns,
                keep_external_ips=cfg.collect_connections_external_ips,
                swarm=self.swarm,
            )
        conns = self.connections
        last = (lambda: conns.last) if conns is not None else None
        self.scraper.registry.register(NetmapMetrics(lambda: self.inventory.snapshot, self.swarm, last))

    async def _connections_loop(self) -> None:
        """The connection tier, off the scrape path; with --collect.tcp-states it feeds the states too
        (one read of net/tcp{,6} for both)."""
        conns = self.connections
        assert conns is not None
        st = self.scraper.status.setdefault("connections", CollectorStatus())
        states = (
            self.scraper.status.setdefault("tcp_states", CollectorStatus())
            if self.cfg.collect_tcp_states
            else None
        )
        await self.inventory.ready.wait()
        while True:
            t0 = time.perf_counter()
            try:
                res = await asyncio.to_thread(conns.collect, self.inventory.snapshot)
            except Exception:  # a bug here must cost the tier one sweep, not the agent
                log.exception("connection tier sweep failed")
                st.success = 0.0
                await asyncio.sleep(self.cfg.collect_connections_interval)
                continue
            st.success = 0.0 if res.errors else 1.0
            st.duration = time.perf_counter() - t0
            if states is not None:
                self.collector.tcp_states = {ns.inode: dict(ns.states) for ns in res.namespaces}
                states.success, states.duration = st.success, st.duration
            await asyncio.sleep(self.cfg.collect_connections_interval)

    # --- end of issue 11 wiring ---

    async def _tcp_states_loop(self) -> None:
        """The opt-in slow tier, off the scrape path: net/tcp{,6} per namespace every interval."""
        st = self.scraper.status.setdefault("tcp_states", CollectorStatus())
        while True:
            t0 = time.perf_counter()
            containers = list(self.inventory.snapshot.containers.values())
            failed = await asyncio.to_thread(self.collector.collect_tcp_states, containers)
            st.success = 0.0 if failed else 1.0
            st.duration = time.perf_counter() - t0
            await asyncio.sleep(self.cfg.collect_tcp_states_interval)

    async def _logs_listing_done(self) -> None:
        await self.inventory.ready.wait()
        assert self.logs is not None
        self.logs.listing_done()
        await self.logs.resume_stopped()
        await asyncio.Event().wait()  # live as long as the app

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        host, port = self.cfg.web_listen_address
        try:
            runner = await serve(make_app(self.scraper, self.inventory), host, port)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
            await self.client.close()
            return 1
        tasks = [asyncio.create_task(self.inventory.run(), name="inventory")]
        if self.cfg.collect_interval > 0:
            tasks.append(asyncio.create_task(self.scraper.run_interval(), name="collect-interval"))
        if self.cfg.collect_tcp_states and self.connections is None:  # else the connection tier feeds it
            tasks.append(asyncio.create_task(self._tcp_states_loop(), name="tcp-states"))
        if self.connections is not None:  # issue 11
            tasks.append(asyncio.create_task(self._connections_loop(), name="connections"))
        if self.swarm is not None:  # issue 11
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
                await self.logs.stop(self.cfg.logs_drain_timeout)
            for t in [stop, *tasks]:
                t.cancel()
            for t in [stop, *tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await runner.cleanup()
            await self.client.close()
        log.info("stopped")
        return rc
