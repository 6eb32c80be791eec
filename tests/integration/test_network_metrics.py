"""Issue 2 on a real engine: real containers, real traffic, numbers equal to the kernel's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import procnet
from tests.support.agentproc import Agent, Series, one, scrape_until, select
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import wait_for

pytestmark = pytest.mark.docker

RX, TX = "container_network_receive_bytes_total", "container_network_transmit_bytes_total"
RXP, TXP = "container_network_receive_packets_total", "container_network_transmit_packets_total"
# Deadlines only a broken agent reaches: the machine may be loaded (timing goals are in bench/).
WAIT = 30


def uid() -> str:
    return uuid.uuid4().hex[:8]


def kernel_dev(pid: int) -> dict[str, procnet.DevCounters]:
    return procnet.parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text())


def host_dev() -> dict[str, procnet.DevCounters]:
    return procnet.parse_net_dev(Path("/proc/self/net/dev").read_text())


def host_veth_of(engine: Engine, container: str) -> str:
    """The host end of a container's eth0 veth pair, found by ifindex (an independent kernel view)."""
    iflink = engine.docker("exec", container, "cat", "/sys/class/net/eth0/iflink").strip()
    for d in Path("/sys/class/net").iterdir():
        if (d / "ifindex").read_text().strip() == iflink:
            return d.name
    raise AssertionError(f"no host interface with ifindex {iflink}")


def quiescent_compare(agent: Agent, pid: int, name: str) -> tuple[dict[str, Series], procnet.DevCounters]:
    """Scrape between two identical kernel readings, so agent and kernel saw the same instant.

    In interval mode the agent's figure is from its last collection, so we also wait (a few
    seconds at most) for a collection made after the traffic; equality stays exact.
    """

    def same_instant() -> tuple[dict[str, Series], procnet.DevCounters] | None:
        before = kernel_dev(pid)["eth0"]
        m = agent.scrape()
        after = kernel_dev(pid)["eth0"]
        got = select(m.get(RX, []), name=name, interface="eth0")
        return (m, before) if before == after and got and got[0][1] == before.rx_bytes else None

    return wait_for(same_instant, timeout=WAIT, what=f"{name}'s eth0 quiet and the agent caught up")


def test_traffic_equals_kernel_counters_exactly(engine: Engine, agent: Agent) -> None:
    net = f"dwt-net-{uid()}"
    engine.network(net)
    server, client = f"dwt-srv-{uid()}", f"dwt-cli-{uid()}"
    size = 200_000
    engine.run(
        "--network",
        net,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        f"dd if=/dev/zero of=/var/www/blob bs=1000 count={size // 1000} 2>/dev/null "
        "&& httpd -f -p 80 -h /var/www",
        name=server,
    )
    engine.run("--network", net, BUSYBOX_IMAGE, "sleep", "600", name=client)
    wait_for(lambda: select(agent.scrape().get(RX, []), name=server), timeout=WAIT, what="server series")
    wait_for(
        lambda: engine.ok("exec", client, "wget", "-q", "-O", "/dev/null", f"http://{server}/blob"),
        timeout=WAIT,
        what="server httpd up",
    )
    cpid = engine.pid(client)
    m0, _ = quiescent_compare(agent, cpid, client)
    before_rx = one(m0, RX, name=client, interface="eth0")

    n = 3
    engine.docker(
        "exec",
        client,
        "sh",
        "-c",
        f"for i in $(seq {n}); do wget -q -O /dev/null http://{server}/blob || exit 1; done",
    )

    for name in (server, client):
        pid = engine.pid(name)
        m, k = quiescent_compare(agent, pid, name)
        labels = {"name": name, "interface": "eth0", "network": net}
        assert one(m, RX, **labels) == k.rx_bytes
        assert one(m, TX, **labels) == k.tx_bytes
        assert one(m, RXP, **labels) == k.rx_packets
        assert one(m, TXP, **labels) == k.tx_packets
        assert one(m, "container_network_receive_errors_total", **labels) == k.rx_errors
        assert one(m, "container_network_transmit_packets_dropped_total", **labels) == k.tx_dropped
        # Independent view: the host end of the veth pair sees the mirror image.
        veth = host_dev()[host_veth_of(engine, name)]
        assert one(m, RX, **labels) == veth.tx_bytes
        assert one(m, TX, **labels) == veth.rx_bytes

    m, _ = quiescent_compare(agent, cpid, client)
    assert one(m, RX, name=client, interface="eth0") - before_rx >= n * size
    assert one(m, TX, name=server, interface="eth0") >= n * size


def test_failed_connection_attempts_count_exactly(engine: Engine, agent: Agent) -> None:
    net = f"dwt-net-{uid()}"
    engine.network(net)
    server, client = f"dwt-srv-{uid()}", f"dwt-cli-{uid()}"
    engine.run("--network", net, BUSYBOX_IMAGE, "sleep", "600", name=server)
    engine.run("--network", net, BUSYBOX_IMAGE, "sleep", "600", name=client)
    fails = "container_network_tcp_failed_connection_attempts_total"
    wait_for(lambda: select(agent.scrape().get(fails, []), name=client), timeout=WAIT, what="client series")
    before = one(agent.scrape(), fails, name=client)
    before_rst = one(agent.scrape(), "container_network_tcp_resets_sent_total", name=server)
    k = 7
    engine.docker("exec", client, "sh", "-c", f"for i in $(seq {k}); do nc {server} 9 </dev/null; done; true")
    # The exec has returned: all k happened. At scrape time the first scrape has them; in interval
    # mode a collection that ran during the loop has only some, and a later one has all.
    m = scrape_until(
        agent, lambda m: one(m, fails, name=client) - before >= k, WAIT, "failed connects counted"
    )
    assert one(m, fails, name=client) - before == k
    # Each refused SYN was answered with a RST from the server's namespace.
    assert one(m, "container_network_tcp_resets_sent_total", name=server) - before_rst == k
    assert one(m, "container_network_tcp_active_opens_total", name=client) >= k


def test_shared_namespaces_are_counted_once(engine: Engine, agent: Agent) -> None:
    net = f"dwt-net-{uid()}"
    engine.network(net)
    owner, j1, j2, hostc = (f"dwt-{p}-{uid()}" for p in ("own", "j1", "j2", "host"))
    engine.run("--network", net, BUSYBOX_IMAGE, "sleep", "600", name=owner)
    engine.run("--network", f"container:{owner}", BUSYBOX_IMAGE, "sleep", "600", name=j1)
    engine.run("--network", f"container:{owner}", BUSYBOX_IMAGE, "sleep", "600", name=j2)
    engine.run("--network", "host", BUSYBOX_IMAGE, "sleep", "600", name=hostc)
    engine.docker("exec", j1, "ping", "-c", "3", "-i", "0.2", "-W", "1", f"{owner}", check=False)

    m = scrape_until(
        agent,
        lambda m: {owner, j1, j2, hostc} <= {lbl["name"] for lbl, _ in m.get("dockwatch_container_info", [])},
        timeout=WAIT,
        what="all four containers in the inventory",
    )
    info = {lbl["name"]: lbl for lbl, _ in m["dockwatch_container_info"]}
    assert info[j1]["netns_owner"] == owner and info[j1]["network_mode"] == "container"
    assert info[j2]["netns_owner"] == owner
    assert info[owner]["netns_owner"] == owner
    assert info[hostc]["netns_owner"] == "host" and info[hostc]["network_mode"] == "host"

    # Every exported series is unique, and no joiner or host-network container has traffic of its own.
    for name, series in m.items():
        keys = [tuple(sorted(lbl.items())) for lbl, _ in series]
        assert len(keys) == len(set(keys)), f"duplicate series in {name}"
    rx = m[RX]
    assert not select(rx, name=j1) and not select(rx, name=j2) and not select(rx, name=hostc)
    # The host namespace is exported once: one series per host interface, with name="".
    host_ifaces = [lbl["interface"] for lbl, _ in select(rx, name="")]
    assert host_ifaces and len(host_ifaces) == len(set(host_ifaces))
    assert all(not i.startswith(("veth", "docker", "br-")) for i in host_ifaces)

    # The owner's namespace: the sum over all four containers equals the kernel's figure once.
    pid = engine.pid(owner)
    m, k = quiescent_compare(agent, pid, owner)
    members = [(lbl, v) for lbl, v in m[RX] if lbl["name"] in (owner, j1, j2, hostc)]
    assert sum(v for _, v in members) == k.rx_bytes == one(m, RX, name=owner, interface="eth0")


def test_network_label_for_every_mode(engine: Engine, agent: Agent) -> None:
    a_net, b_net = f"dwt-a-{uid()}", f"dwt-b-{uid()}"
    engine.network(a_net)
    engine.network(b_net)
    default, two, none, host = (f"dwt-{p}-{uid()}" for p in ("def", "two", "none", "host"))
    engine.run(BUSYBOX_IMAGE, "sleep", "600", name=default)
    engine.run("--network", a_net, BUSYBOX_IMAGE, "sleep", "600", name=two)
    engine.docker("network", "connect", b_net, two)
    engine.run("--network", "none", BUSYBOX_IMAGE, "sleep", "600", name=none)
    engine.run("--network", "host", BUSYBOX_IMAGE, "sleep", "600", name=host)

    def ifaces(m: dict[str, Series], name: str) -> dict[str, str]:
        return {lbl["interface"]: lbl["network"] for lbl, _ in select(m.get(RX, []), name=name)}

    def all_four(m: dict[str, Series]) -> bool:
        # Each container started after the one before: wait for the last ones too, not only for
        # the two-network container (an interval collection may land between two starts).
        est = "container_network_tcp_connections_established"
        named = {lbl["name"] for lbl, _ in m.get("dockwatch_container_info", [])}
        return (
            len(ifaces(m, two)) == 2
            and bool(ifaces(m, default))
            and bool(select(m.get(est, []), name=none))
            and host in named
        )

    m = scrape_until(agent, all_four, timeout=WAIT, what="the four containers, two interfaces for one")
    assert ifaces(m, default) == {"eth0": "bridge"}
    assert ifaces(m, two) == {"eth0": a_net, "eth1": b_net}
    assert ifaces(m, none) == {}  # only lo, which is skipped by default
    assert one(m, "container_network_tcp_connections_established", name=none) == 0  # still a namespace
    assert ifaces(m, host) == {}
    info = {lbl["name"]: lbl for lbl, _ in m["dockwatch_container_info"]}
    assert info[none]["network_mode"] == "none" and info[default]["network_mode"] == "default"

    # Disconnecting is followed as well.
    engine.docker("network", "disconnect", b_net, two)
    wait_for(
        lambda: ifaces(agent.scrape(), two) == {"eth0": a_net},
        timeout=WAIT,
        what="eth1 gone after disconnect",
    )


def test_macvlan_network_label(engine: Engine, agent: Agent, veth_parent: str) -> None:
    net = f"dwt-mv-{uid()}"
    engine.network(net, "-d", "macvlan", "--subnet", "10.123.45.0/24", "-o", f"parent={veth_parent}")
    c = f"dwt-mvc-{uid()}"
    engine.run("--network", net, BUSYBOX_IMAGE, "sleep", "600", name=c)
    m = scrape_until(
        agent, lambda m: bool(select(m.get(RX, []), name=c)), timeout=WAIT, what="macvlan series"
    )
    assert {lbl["interface"]: lbl["network"] for lbl, _ in select(m[RX], name=c)} == {"eth0": net}


def test_container_appears_on_start_and_leaves_on_removal(engine: Engine, agent: Agent) -> None:
    """Followed from events, both ways; how fast is measured in bench/appear.py, not asserted."""
    name = f"dwt-new-{uid()}"
    cid = engine.run(BUSYBOX_IMAGE, "sleep", "600", name=name)
    wait_for(lambda: select(agent.scrape().get(RX, []), name=name), timeout=WAIT, what="new series")
    engine.docker("rm", "-f", cid)

    def gone() -> bool:
        m = agent.scrape()
        return not any(select(series, name=name) for series in m.values())

    wait_for(gone, timeout=WAIT, what="series removed")


def test_self_metrics(engine: Engine, agent: Agent) -> None:
    name = f"dwt-self-{uid()}"
    engine.run(BUSYBOX_IMAGE, "sleep", "600", name=name)  # at least one event since the agent started
    # In interval mode the body is from the last collection: wait for one that has the container.
    m = scrape_until(
        agent, lambda m: bool(select(m.get(RX, []), name=name)), WAIT, "a scrape with the container"
    )
    assert one(m, "dockwatch_scrape_collector_success", collector="netns") == 1
    assert one(m, "dockwatch_engine_connected") == 1

    # The count follows the engine's own list; containers of earlier tests may still be leaving,
    # and in interval mode the body is from the last collection: wait until the two agree.
    def tracked_is_running(m: dict[str, Series]) -> bool:
        return one(m, "dockwatch_containers_tracked") == len(engine.docker("ps", "-q").split())

    m = scrape_until(agent, tracked_is_running, WAIT, "containers_tracked equal to docker ps")
    # One namespace, one CurrEstab series: the gauge counts exactly what the scrape exported.
    assert one(m, "dockwatch_network_namespaces_tracked") == len(
        m["container_network_tcp_connections_established"]
    )
    ev = {(lbl["type"], lbl["action"]): v for lbl, v in m["dockwatch_docker_events_total"]}
    assert ev.get(("container", "start"), 0) >= 1
    assert agent.get("/healthz")[0] == 200 and agent.get("/readyz")[0] == 200


def test_health_and_container_event_counters(engine: Engine, agent: Agent) -> None:
    name = f"dwt-hc-{uid()}"
    engine.run(
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        BUSYBOX_IMAGE,
        "sleep",
        "600",
        name=name,
    )
    healthy = "dockwatch_container_healthy"
    scrape_until(
        agent,
        lambda m: [v for _, v in select(m.get(healthy, []), name=name)] == [0.0],
        WAIT,
        "starting/unhealthy reported as 0",
    )
    engine.docker("exec", name, "touch", "/tmp/ok")
    scrape_until(
        agent,
        lambda m: [v for _, v in select(m.get(healthy, []), name=name)] == [1.0],
        WAIT,
        "healthy reported",
    )

    engine.docker("restart", "-t", "0", name)
    ev = "dockwatch_container_events_total"
    m = scrape_until(
        agent,
        lambda m: dict((lbl["action"], v) for lbl, v in select(m.get(ev, []), name=name)).get("start") == 2,
        WAIT,
        "second start counted",
    )
    counts = {lbl["action"]: v for lbl, v in select(m[ev], name=name)}
    assert counts["die"] == 1 and counts["restart"] == 1 and counts["health_status"] >= 1
    # The per-container counter survives the die: a restart loop shows as a rising counter.


@pytest.fixture(scope="module")
def tcp_agent(engine_session: Engine) -> Iterator[Agent]:
    a = Agent(engine_session, "--collector.tcp-states", "--collector.tcp-states-interval=0.5s").start()
    yield a
    assert a.stop() == 0, a.logtext()


def test_tcp_states_tier(engine: Engine, tcp_agent: Agent) -> None:
    server, client = f"dwt-ts-{uid()}", f"dwt-tc-{uid()}"
    engine.run(BUSYBOX_IMAGE, "httpd", "-f", "-p", "80", "-h", "/var/www", name=server)
    ip = engine.inspect(server)["NetworkSettings"]["IPAddress"]
    # One connection held open: the server has it ESTABLISHED, plus its one LISTEN socket.
    engine.run(BUSYBOX_IMAGE, "sh", "-c", f"sleep 600 | nc {ip} 80", name=client)
    states = "container_network_tcp_connections"

    def server_states(m: dict[str, Series]) -> dict[str, float]:
        return {lbl["state"]: v for lbl, v in select(m.get(states, []), name=server)}

    m = scrape_until(
        tcp_agent, lambda m: server_states(m).get("established") == 1, WAIT, "established on server"
    )
    got = server_states(m)
    assert got["listen"] == 1 and sum(got.values()) == 2
    assert {lbl["state"]: v for lbl, v in select(m[states], name=client)}["established"] == 1
    assert one(m, "dockwatch_scrape_collector_success", collector="tcp_states") == 1
    # The cheap gauge agrees: CurrEstab counts the same connection.
    assert one(m, "container_network_tcp_connections_established", name=server) == 1
