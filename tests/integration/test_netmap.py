"""Issue 11 on a real engine: networks, published ports, what listens and who talks to whom.

The agent runs as a subprocess with the connection tier on a short interval; containers make
real connections over real Docker networks. The swarm VIP mapping is proven from a socket table
read from a real namespace (this kernel has no IPVS, so a VIP cannot be routed here; see
test_vip_mapping_from_a_real_namespace).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.connections import ConnectionCollector
from agent.docker.client import DockerClient
from agent.docker.models import Container, Network, Service
from agent.hostfs import HostFS
from agent.peers import Direction, Edge, Peer, PeerKind
from tests.support.agentproc import Agent, Series, free_port, one, scrape_until, select
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.prometheus import Prometheus, prom_query
from tests.support.toolbox import wait_for

pytestmark = pytest.mark.docker

PEERS = "container_network_tcp_peer_connections"
LISTEN = "container_network_listening_sockets"
PORT_OK = "dockwatch_container_published_port_listening"
RULES = Path(__file__).resolve().parents[2] / "grafana" / "alerts" / "dockwatch.rules.yml"
# Deadline for what the tier sees: a sweep covers every container on the shared engine (other
# sessions' hundreds too) and takes seconds under load; these wait on conditions, never sleep.
TIER_DEADLINE = 90


def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def agent(engine_session: Engine) -> Iterator[Agent]:
    a = Agent(engine_session, "--collector.connections", "--collector.connections-interval=0.5s").start()
    yield a
    assert a.stop() == 0, a.logtext()


def edges_of(m: dict[str, Series], name: str) -> dict[tuple[str, str, str, str], float]:
    """(direction, peer_kind, peer, port) -> connections, for one container (name="" is the host)."""
    return {
        (lb["direction"], lb["peer_kind"], lb["peer"], lb["port"]): v
        for lb, v in select(m.get(PEERS, []), name=name)
    }


def both_ends(agent: Agent, cli: str, srv: str, port: str, n: int) -> dict[str, Series]:
    """Scrape until the client counts n connections to srv:port and the server n from cli."""
    return scrape_until(
        agent,
        lambda m: (
            edges_of(m, cli).get(("client", "container", srv, port)) == n
            and edges_of(m, srv).get(("server", "container", cli, port)) == n
        ),
        TIER_DEADLINE,
        f"{n} connection(s) to {srv}:{port} on both ends",
    )


def hold(n: int, host: str, port: int) -> str:
    """A shell line holding n TCP connections open to host:port (each nc waits on a sleeping pipe)."""
    return f"for i in $(seq {n}); do (sleep 600 | nc {host} {port}) & done; sleep 600"


def test_three_connections_both_ends_agree(engine: Engine, agent: Agent) -> None:
    net, srv, cli = f"dwt-nm-{uid()}", f"dwt-nms-{uid()}", f"dwt-nmc-{uid()}"
    engine.network(net)
    engine.run("--network", net, BUSYBOX_IMAGE, "httpd", "-f", "-p", "8080", "-h", "/var/www", name=srv)
    engine.run("--network", net, BUSYBOX_IMAGE, "sh", "-c", hold(3, srv, 8080), name=cli)
    m = both_ends(agent, cli, srv, "8080", 3)
    assert edges_of(m, cli) == {("client", "container", srv, "8080"): 3}
    assert edges_of(m, srv) == {("server", "container", cli, "8080"): 3}
    assert one(m, LISTEN, name=srv, protocol="tcp", port="8080") == 1
    assert not select(m.get(LISTEN, []), name=cli)  # Docker's DNS listener (127.0.0.11) left out
    assert one(m, "dockwatch_scrape_collector_success", collector="connections") == 1
    # The always-on inventory: the network, both attachments with their addresses.
    nets = {lb["network"]: lb for lb, _ in m["dockwatch_network_info"]}
    assert nets[net]["driver"] == "bridge" and nets[net]["scope"] == "local"
    assert one(m, "dockwatch_network_containers", network=net) == 2
    ip = engine.inspect(srv)["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert one(m, "dockwatch_container_network_info", name=srv, network=net, ip_address=ip) == 1
    sub = engine.inspect(net)["IPAM"]["Config"][0]
    assert (
        one(m, "dockwatch_network_subnet_info", network=net, subnet=sub["Subnet"], gateway=sub["Gateway"])
        == 1
    )

    # The client goes away: its edges on the server side go with the next sweep.
    engine.docker("rm", "-f", cli)
    scrape_until(agent, lambda m: not edges_of(m, srv) and not edges_of(m, cli), TIER_DEADLINE, "edges gone")


def test_a_server_without_its_listener_is_still_the_server(engine: Engine, agent: Agent) -> None:
    """busybox `nc -l` closes its LISTEN socket once it accepts: the server's end must still say
    server on port 7000 (not client on the other side's ephemeral port), as the client's does."""
    net, srv, cli = f"dwt-nm-{uid()}", f"dwt-nm1s-{uid()}", f"dwt-nm1c-{uid()}"
    engine.network(net)
    engine.run("--network", net, BUSYBOX_IMAGE, "sh", "-c", "sleep 600 | nc -l -p 7000 >/dev/null", name=srv)
    # Retried (bounded) until the listener is up: a refused nc exits at once, a connected one stays.
    engine.run(
        "--network", net, BUSYBOX_IMAGE, "sh", "-c",
        "for i in $(seq 100); do sleep 600 | nc " + srv + " 7000; sleep 0.2; done",
        name=cli,
    )  # fmt: skip
    m = both_ends(agent, cli, srv, "7000", 1)
    assert not select(m.get(LISTEN, []), name=srv)  # nothing listens any more: nc accepted once
    assert edges_of(m, srv) == {("server", "container", cli, "7000"): 1}


def test_more_connections_than_one_read(engine: Engine, agent: Agent, engine_session: Engine) -> None:
    """40 connections: net/tcp hands out 27 lines per read, so the tables take several reads.

    The TCP-states tier alone (--collector.tcp-states) reads them too: with the connection tier
    both come from one read, so each agent's state counts must match the connections."""
    net, srv, cli = f"dwt-nm40-{uid()}", f"dwt-nms40-{uid()}", f"dwt-nmc40-{uid()}"
    engine.network(net)
    engine.run("--network", net, BUSYBOX_IMAGE, "httpd", "-f", "-p", "8080", "-h", "/var/www", name=srv)
    engine.run("--network", net, BUSYBOX_IMAGE, "sh", "-c", hold(40, srv, 8080), name=cli)
    m = scrape_until(
        agent,
        lambda m: (
            edges_of(m, cli).get(("client", "container", srv, "8080")) == 40
            and edges_of(m, srv).get(("server", "container", cli, "8080")) == 40
        ),
        TIER_DEADLINE,
        "40 connections on both ends",
    )
    assert one(m, "container_network_tcp_connections_established", name=srv) == 40  # net/snmp agrees
    states = Agent(engine_session, "--collector.tcp-states", "--collector.tcp-states-interval=0.5s")
    states.start(wait_ready=False)
    try:
        wait_for(lambda: states.get("/readyz")[0] == 200, timeout=TIER_DEADLINE, what="second agent ready")
        est = "container_network_tcp_connections"
        scrape_until(
            states,
            lambda m: [v for _, v in select(m.get(est, []), name=srv, state="established")] == [40.0],
            TIER_DEADLINE,
            "the TCP-states tier counting all 40",
        )
    finally:
        assert states.stop() == 0, states.logtext()


def scraping(agent: Agent, tmp: Path) -> Prometheus:
    """Prometheus scraping the agent every second with the shipped alert rules loaded."""
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: dockwatch\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{agent.port}']}}]\n"
    )
    return Prometheus(cfg, tmp / "tsdb")


def test_published_port_with_nothing_listening(engine: Engine, agent: Agent, tmp_path: Path) -> None:
    """The metric and the alert: nothing listens (0), then only on loopback (0), then on all (1)."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus)")
    name, net = f"dwt-pub-{uid()}", f"dwt-pubn-{uid()}"
    engine.network(net)
    # Published on the host's loopback with a port Docker picks: nothing on this machine is exposed.
    engine.run("--network", net, "-p", "127.0.0.1::8080", BUSYBOX_IMAGE, "sleep", "600", name=name)
    host_port = engine.inspect(name)["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    prom = scraping(agent, tmp_path)
    try:

        def state(m: dict[str, Series]) -> tuple[str, float] | None:
            got = select(m.get(PORT_OK, []), name=name, container_port="8080", protocol="tcp")
            return (got[0][0]["state"], got[0][1]) if len(got) == 1 else None

        m = scrape_until(agent, lambda m: state(m) == ("not_listening", 0.0), TIER_DEADLINE, "not_listening")
        info = select(m["dockwatch_container_published_port_info"], name=name)
        assert [(lb["container_port"], lb["host_ip"], lb["host_port"]) for lb, _ in info] == [
            ("8080", "127.0.0.1", host_port)
        ]
        alert = f'ALERTS{{alertname="ContainerPublishedPortNotListening",name="{name}"}}'
        # The rule matched in a real Prometheus (pending until its `for`; promtool covers firing).
        wait_for(lambda: prom_query(prom.base, alert), timeout=TIER_DEADLINE, what="the alert pending/firing")

        engine.docker("exec", "-d", name, "sh", "-c", "httpd -f -p 127.0.0.1:8080 & echo $! > /tmp/lo.pid")
        scrape_until(agent, lambda m: state(m) == ("loopback_only", 0.0), TIER_DEADLINE, "loopback_only")
        assert prom_query(prom.base, alert)  # still a problem: Docker forwards to the container's address

        engine.docker("exec", name, "sh", "-c", "kill $(cat /tmp/lo.pid)")
        engine.docker("exec", "-d", name, "httpd", "-f", "-p", "8080", "-h", "/var/www")
        scrape_until(agent, lambda m: state(m) == ("listening", 1.0), TIER_DEADLINE, "listening")
        wait_for(lambda: not prom_query(prom.base, alert), timeout=TIER_DEADLINE, what="the alert cleared")
    finally:
        prom.stop()


def test_host_network_joiner_and_two_networks(engine: Engine, agent: Agent) -> None:
    a_net, b_net = f"dwt-nma-{uid()}", f"dwt-nmb-{uid()}"
    engine.network(a_net)
    engine.network(b_net)
    # A server on two networks; a client on each reaches it by its address on that network.
    two, ca, cb = f"dwt-two-{uid()}", f"dwt-ca-{uid()}", f"dwt-cb-{uid()}"
    engine.run("--network", a_net, BUSYBOX_IMAGE, "httpd", "-f", "-p", "8080", "-h", "/var/www", name=two)
    engine.docker("network", "connect", b_net, two)
    nets = engine.inspect(two)["NetworkSettings"]["Networks"]
    engine.run(
        "--network", a_net, BUSYBOX_IMAGE, "sh", "-c", hold(1, nets[a_net]["IPAddress"], 8080), name=ca
    )
    engine.run(
        "--network", b_net, BUSYBOX_IMAGE, "sh", "-c", hold(2, nets[b_net]["IPAddress"], 8080), name=cb
    )
    # A container:X joiner serving on 9090 in X's namespace: its sockets are X's.
    owner, joiner, cj = f"dwt-own-{uid()}", f"dwt-join-{uid()}", f"dwt-cj-{uid()}"
    engine.run("--network", a_net, BUSYBOX_IMAGE, "sleep", "600", name=owner)
    engine.run("--network", f"container:{owner}", BUSYBOX_IMAGE, "httpd", "-f", "-p", "9090", name=joiner)
    engine.run("--network", a_net, BUSYBOX_IMAGE, "sh", "-c", hold(1, owner, 9090), name=cj)
    # A host-network server; a client on a bridge network reaches it through that bridge's gateway.
    hport = free_port()
    hsrv, hcli = f"dwt-hsrv-{uid()}", f"dwt-hcli-{uid()}"
    engine.run("--network", "host", BUSYBOX_IMAGE, "httpd", "-f", "-p", str(hport), name=hsrv)
    gw = engine.inspect(a_net)["IPAM"]["Config"][0]["Gateway"]
    engine.run("--network", a_net, BUSYBOX_IMAGE, "sh", "-c", hold(1, gw, hport), name=hcli)

    node = agent.scrape()["dockwatch_build_info"][0][0]["node"]
    want = {
        ca: {("client", "container", two, "8080"): 1},
        cb: {("client", "container", two, "8080"): 2},
        two: {("server", "container", ca, "8080"): 1, ("server", "container", cb, "8080"): 2},
        cj: {("client", "container", owner, "9090"): 1},
        owner: {("server", "container", cj, "9090"): 1},
        hcli: {("client", "host", node, str(hport)): 1},
    }

    def settled(m: dict[str, Series]) -> bool:
        host = edges_of(m, "")
        return all(edges_of(m, c) == e for c, e in want.items()) and (
            host.get(("server", "container", hcli, str(hport))) == 1
        )

    m = scrape_until(agent, settled, TIER_DEADLINE, "every edge on both ends")
    # The joiner and the host-network container have no series of their own: their sockets are
    # their namespace owner's (owner; the host, name="").
    assert not select(m.get(PEERS, []), name=joiner) and not select(m.get(LISTEN, []), name=joiner)
    assert not select(m.get(PEERS, []), name=hsrv) and not select(m.get(LISTEN, []), name=hsrv)
    assert one(m, LISTEN, name=owner, protocol="tcp", port="9090") == 1
    assert select(m[LISTEN], name="", protocol="tcp", port=str(hport))
    att = {lb["network"] for lb, _ in select(m["dockwatch_container_network_info"], name=two)}
    assert att == {a_net, b_net}


def test_macvlan_peers(engine: Engine, agent: Agent, veth_parent: str) -> None:
    net = f"dwt-nmv-{uid()}"
    engine.network(net, "-d", "macvlan", "--subnet", "10.124.46.0/24", "-o", f"parent={veth_parent}")
    srv, cli = f"dwt-mvs-{uid()}", f"dwt-mvc-{uid()}"
    engine.run("--network", net, "--ip", "10.124.46.10", BUSYBOX_IMAGE, "httpd", "-f", "-p", "8080", name=srv)
    engine.run("--network", net, BUSYBOX_IMAGE, "sh", "-c", hold(2, "10.124.46.10", 8080), name=cli)
    scrape_until(
        agent,
        lambda m: (
            edges_of(m, cli) == {("client", "container", srv, "8080"): 2}
            and edges_of(m, srv) == {("server", "container", cli, "8080"): 2}
        ),
        TIER_DEADLINE,
        "macvlan edges on both ends",
    )
    m = agent.scrape()
    nets = {lb["network"]: lb for lb, _ in m["dockwatch_network_info"]}
    assert nets[net]["driver"] == "macvlan"


def test_vip_mapping_from_a_real_namespace(engine: Engine) -> None:
    """A swarm VIP, resolved from the engine's own service data, read from a real socket table.

    This machine's kernel has no IPVS, so a connection to a real service VIP fails here ("no route
    to host"). Instead the test puts the VIP on the server container's interface inside its own
    namespace, so a client's socket shows exactly what it shows behind IPVS: the VIP as remote.
    The service comes from GET /services JSON (Endpoint.VirtualIPs) as a manager returns it.
    """
    net, srv, cli = f"dwt-vip-{uid()}", f"dwt-vips-{uid()}", f"dwt-vipc-{uid()}"
    # Containers get addresses from the lower half; the VIP sits in the upper half, on the same L2.
    nid = engine.network(net, "--subnet", "10.125.47.0/24", "--ip-range", "10.125.47.0/25")
    vip = "10.125.47.200"
    engine.run("--network", net, BUSYBOX_IMAGE, "httpd", "-f", "-p", "8080", name=srv)
    subprocess.run(
        ["nsenter", "-t", str(engine.pid(srv)), "-n", "ip", "addr", "add", f"{vip}/32", "dev", "eth0"],
        check=True,
    )
    engine.run("--network", net, BUSYBOX_IMAGE, "sh", "-c", hold(3, vip, 8080), name=cli)
    service = Service.from_api(
        {
            "ID": "svc1",
            "Spec": {"Name": "shop_web", "Labels": {"com.docker.stack.namespace": "shop"}},
            "Endpoint": {"Spec": {"Mode": "vip"}, "VirtualIPs": [{"NetworkID": nid, "Addr": f"{vip}/24"}]},
        }
    )

    async def inventory() -> tuple[str, list[Container], list[Network]]:
        async with DockerClient(engine.host) as client:
            await client.negotiate()
            info = await client.info()
            cs = [await client.inspect(i) for i in (srv, cli)]
            return info.name, cs, await client.networks()

    node, containers, networks = asyncio.run(inventory())
    tier = ConnectionCollector(HostFS(), host_netns=False)

    def sweep_edges() -> tuple[dict[Edge, int], dict[Edge, int]] | None:
        res = tier.sweep(node, containers, networks, [service])
        got = {ns.owner.name: dict(ns.edges) for ns in res.namespaces if ns.owner is not None}
        c, s = got.get(cli, {}), got.get(srv, {})
        return (c, s) if sum(c.values()) == 3 and sum(s.values()) == 3 else None

    client_edges, server_edges = wait_for(sweep_edges, timeout=TIER_DEADLINE, what="3 connections to the VIP")
    assert client_edges == {Edge(Direction.CLIENT, Peer(PeerKind.SERVICE, "shop_web", "shop_web"), 8080): 3}
    # The server's end shows the client's own address: a container.
    assert server_edges == {Edge(Direction.SERVER, Peer(PeerKind.CONTAINER, cli), 8080): 3}
    # Without the service data the same address is nobody we know.
    res = tier.sweep(node, containers, networks, [])
    ext = next(ns for ns in res.namespaces if ns.owner is not None and ns.owner.name == cli)
    assert set(ext.edges) == {Edge(Direction.CLIENT, Peer(PeerKind.EXTERNAL, "external"), 8080)}
