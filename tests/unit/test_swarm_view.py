"""agent/swarm.py against a fake engine client: managers list services, workers answer 503."""

from __future__ import annotations

from typing import Any

from agent.docker.client import Event
from agent.docker.models import EngineError, Network, NetworkService, NotFound, Service
from agent.inventory import Inventory, Snapshot
from agent.swarm import SwarmView


class FakeClient:
    def __init__(self, manager: bool) -> None:
        self.manager = manager
        self.calls: list[str] = []

    async def services(self) -> list[Service]:
        self.calls.append("services")
        if not self.manager:
            raise EngineError("GET /services: 503 This node is not a swarm manager.", 503)
        return [Service("s", "web", vips=(("o", "10.0.0.2"),))]

    async def network_verbose(self, network_id: str) -> Network:
        self.calls.append(f"network {network_id}")
        if network_id == "gone":
            raise NotFound("no such network", 404)
        return Network(network_id, "back", "overlay", "swarm", services=(NetworkService("web", "10.0.0.2"),))


def view(manager: bool, node_id: str = "n1") -> tuple[SwarmView, FakeClient]:
    client = FakeClient(manager)
    inv = Inventory()
    nets = {
        n.id: n
        for n in (
            Network("o", "back", "overlay", "swarm"),
            Network("gone", "old", "overlay", "swarm"),
            Network("b", "bridge", "bridge", "local"),
        )
    }
    inv._snap = Snapshot(networks=nets, node="host1", node_id=node_id)
    fake: Any = client
    return SwarmView(fake, inv), client


async def test_manager_lists_services_and_swarm_networks() -> None:
    sv, client = view(manager=True)
    await sv.refresh_services()
    await sv.refresh_networks()
    assert sv.manager and [s.name for s in sv.services] == ["web"]
    # Only swarm-scoped networks are inspected; one removed meanwhile is skipped.
    assert [n.id for n in sv.networks] == ["o"] and sv.networks[0].services[0].vip == "10.0.0.2"
    assert client.calls == ["services", "network o", "network gone"]


async def test_worker_has_no_service_list_but_resolves_from_networks() -> None:
    sv, _ = view(manager=False)
    await sv.refresh_services()
    await sv.refresh_networks()
    assert not sv.manager and sv.services == ()
    assert [n.id for n in sv.networks] == ["o"]


async def test_outside_a_swarm_nothing_is_asked() -> None:
    sv, client = view(manager=True, node_id="")
    await sv.refresh_services()
    await sv.refresh_networks()
    assert sv.services == () and sv.networks == () and client.calls == []


def test_service_node_and_network_events_trigger_a_refresh() -> None:
    sv, _ = view(manager=True)
    sv.on_event(Event("container", "start", "x"))
    assert not sv._changed.is_set()
    for t in ("service", "node", "network"):
        sv._changed.clear()
        sv.on_event(Event(t, "update", "x"))
        assert sv._changed.is_set()
