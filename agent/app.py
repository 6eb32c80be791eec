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

from agent.config import Config
from agent.docker.client import DockerClient
from agent.docker.models import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    STACK_NAMESPACE,
    SWARM_SERVICE,
    Container,
)
from agent.inventory import Inventory, SidecarInventory
from agent.netstats import NetCollector
from exporters.prometheus.scrape import CollectorStatus, Scraper
from exporters.prometheus.server import make_app, serve

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
        if self.cfg.collect_tcp_states:
            tasks.append(asyncio.create_task(self._tcp_states_loop(), name="tcp-states"))
        stop = asyncio.create_task(self.stopping.wait(), name="stop")
        rc = 0
        try:
            done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stop and t.exception() is not None:
                    log.error("%s stopped unexpectedly", t.get_name(), exc_info=t.exception())
                    rc = 1
        finally:
            for t in [stop, *tasks]:
                t.cancel()
            for t in [stop, *tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await runner.cleanup()
            await self.client.close()
        log.info("stopped")
        return rc
