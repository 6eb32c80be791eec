"""What the engine knows about swarm services: published ports and virtual IPs.

    engine /events (service, node, network) ─► SwarmView.on_event ─┐
    every REFRESH seconds ─────────────────────────────────────────┤
                                                                    ▼
        GET /services (managers only)                 ─► services: tuple[Service]
        GET /networks/{id}?verbose=true, each swarm-   ─► networks: tuple[Network]
        scoped network of the engine (any node)           (their services' VIPs and task IPs)

Both tuples are replaced whole on the event loop: the scrape and the connection tier's thread
read them without locks.

A worker answers GET /services with 503: it then has no service list (the published-ports
metrics are a manager's), but every node can resolve VIPs and remote tasks from the verbose
inspect of the swarm networks it has tasks on.
"""

from __future__ import annotations

import asyncio
import logging

from agent.clock import within
from agent.docker.client import DockerClient, Event
from agent.docker.models import EngineError, Network, NotFound, Service
from agent.inventory import Inventory

log = logging.getLogger(__name__)

REFRESH = 60.0  # seconds between service listings when no service event arrives


class SwarmView:
    def __init__(self, client: DockerClient, inventory: Inventory, refresh: float = REFRESH) -> None:
        self.client = client
        self.inventory = inventory
        self.refresh = refresh
        self.services: tuple[Service, ...] = ()
        self.networks: tuple[Network, ...] = ()
        self.manager = False  # the last GET /services was answered
        self._changed = asyncio.Event()

    def on_event(self, ev: Event) -> None:
        """Inventory event listener: a service, node or network change refreshes the view."""
        if ev.type in ("service", "node", "network"):
            self._changed.set()

    async def refresh_services(self) -> None:
        if not self.inventory.snapshot.node_id:  # not in a swarm
            self.services, self.manager = (), False
            return
        try:
            self.services = tuple(await self.client.services())
            self.manager = True
        except EngineError as exc:
            if exc.status != 503:  # 503: a worker; anything else is worth a line
                log.warning("listing swarm services failed: %s", exc)
            self.services, self.manager = (), False

    async def refresh_networks(self) -> None:
        if not self.inventory.snapshot.node_id:
            self.networks = ()
            return
        self.networks = tuple(await self.swarm_networks(list(self.inventory.snapshot.networks.values())))

    async def swarm_networks(self, networks: list[Network]) -> list[Network]:
        """Verbose inspect of each swarm-scoped network: its services' VIPs and task IPs there.

        Tasks on other nodes come and go with no event on this one: hence the periodic refresh."""
        out: list[Network] = []
        for n in networks:
            if n.scope != "swarm":
                continue
            try:
                out.append(await self.client.network_verbose(n.id))
            except NotFound:
                continue
            except EngineError as exc:
                log.debug("verbose inspect of network %s failed: %s", n.name, exc)
        return out

    async def run(self) -> None:
        await self.inventory.ready.wait()
        while True:
            self._changed.clear()
            try:
                await self.refresh_services()
                await self.refresh_networks()
            except Exception:  # e.g. a field the engine spelled unexpectedly: keep the last view
                log.exception("refreshing the swarm view failed; keeping the last one")
            if await within(self.refresh, self._changed.wait()):
                await asyncio.sleep(0.2)  # a stack deploy is a burst of service events: list once
