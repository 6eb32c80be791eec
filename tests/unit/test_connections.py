"""agent/connections.py's sweep over a procfs tree built from the captured tables (no engine)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from agent.connections import CONNECTIONS, ConnectionCollector
from agent.docker.models import Container, NetworkAttachment
from agent.hostfs import HostFS
from agent.netstats import CollectResult, NetnsSample, namespaces
from agent.peers import Direction, Edge, Peer, PeerKind
from agent.socktable import Listener
from tests.support.toolbox import container

DATA = Path(__file__).parent.parent / "data" / "proc" / "connections"


def sockstat(tcp: int, udp: int, tw: int = 0) -> str:
    return f"sockets: used 9\nTCP: inuse {tcp} orphan 0 tw {tw} alloc 9 mem 1\nUDP: inuse {udp} mem 0\n"


def sockstat6(tcp: int, udp: int) -> str:
    return f"TCP6: inuse {tcp}\nUDP6: inuse {udp}\n"


def make_proc(root: Path, pid: int, which: str, v4: str, v6: str | None, skip: tuple[str, ...] = ()) -> None:
    net = root / str(pid) / "net"
    net.mkdir(parents=True)
    (root / str(pid) / "ns").mkdir()
    (root / str(pid) / "ns" / "net").write_text("")  # its inode is the namespace key
    for f in ("tcp", "tcp6", "udp", "udp6"):
        if f not in skip:
            shutil.copy(DATA / which / f, net / f)
    (net / "sockstat").write_text(v4)
    if v6 is not None:
        (net / "sockstat6").write_text(v6)


def ctr(name: str, pid: int, ip: str) -> Container:
    att = NetworkAttachment("net", "nid", ip, 24)
    return replace(container(1, name, "net"), id=name * 8, pid=pid, networks=(att,))


SRV, CLI = ctr("srv", 100, "10.231.0.10"), ctr("cli", 200, "10.231.0.20")


def test_sweep_resolves_both_ends_and_reads_only_tables_with_sockets(tmp_path: Path) -> None:
    # cli has no IPv6 sockets: its tcp6/udp6 files are absent here, so reading them would fail.
    make_proc(tmp_path, 100, "srv", sockstat(2, 3), sockstat6(4, 1))
    make_proc(tmp_path, 200, "cli", sockstat(4, 1), sockstat6(0, 0), skip=("tcp6", "udp6"))
    tier = ConnectionCollector(HostFS(procfs=tmp_path), host_netns=False, tcp_states=True)
    res = tier.sweep("n1", [SRV, CLI])
    assert (res.errors, res.vanished) == (0, 0)
    srv, cli = res.by_owner[SRV.id], res.by_owner[CLI.id]
    assert dict(cli.edges) == {Edge(Direction.CLIENT, Peer(PeerKind.CONTAINER, "srv"), 8080): 3}
    assert dict(srv.edges) == {Edge(Direction.SERVER, Peer(PeerKind.CONTAINER, "cli"), 8080): 3}
    assert Listener("tcp", "::", 8080) in srv.listeners and cli.listeners == {}
    assert srv.states["established"] == 3 and cli.states["established"] == 3
    assert res.by_netns[srv.inode]["established"] == 3  # what netstats.namespaces() attaches


def test_tcp_states_come_from_the_connection_sweep(tmp_path: Path) -> None:
    """With --collector.connections and --collector.tcp-states, net/tcp is read once: the registry has
    no tcp_states collector, and each namespace's states come from the connection tier's result."""
    from agent.collector import Collection, Outcome
    from agent.collectors import build_collectors
    from agent.config import load
    from agent.inventory import Snapshot

    make_proc(tmp_path, 100, "srv", sockstat(2, 3), sockstat6(4, 1))
    make_proc(tmp_path, 200, "cli", sockstat(4, 1), sockstat6(0, 0), skip=("tcp6", "udp6"))
    both = load({"collector.connections": True, "collector.tcp-states": True}, env={})
    assert build_collectors(both).names == ["netns", "connections"]
    only_states = load({"collector.tcp-states": True}, env={})
    assert build_collectors(only_states).names == ["netns", "tcp_states"]

    fs = HostFS(procfs=tmp_path)
    snap = Snapshot(containers={SRV.id: SRV, CLI.id: CLI}, node="n1")
    conns = ConnectionCollector(fs, host_netns=False, tcp_states=True).collect(snap)
    # The counters collector's samples for the same namespaces (their files are not staged here).
    netns = CollectResult(
        samples=[NetnsSample(ns.inode, ns.owner, {}, {}, {}, {}, {}) for ns in conns.namespaces]
    )
    assert CONNECTIONS.name == "connections"
    col = Collection(
        snap, {"netns": Outcome("netns", netns, True, 0.0), "connections": Outcome("c", conns, True, 0.0)}
    )
    states = {s.owner.name: s.tcp_states for s in namespaces(col).samples if s.owner is not None}
    assert states["srv"] is not None and states["srv"]["established"] == 3
    assert states["cli"] is not None and states["cli"]["established"] == 3
    # The tier off: no states at all (not zeros).
    col = Collection(snap, {"netns": Outcome("netns", netns, True, 0.0)})
    assert all(s.tcp_states is None for s in namespaces(col).samples)
    # The connection tier alone (no --collector.tcp-states): it read the states, exports none.
    assert build_collectors(load({"collector.connections": True}, env={})).names == ["netns", "connections"]
    alone = ConnectionCollector(fs, host_netns=False).collect(snap)
    col = Collection(
        snap, {"netns": Outcome("netns", netns, True, 0.0), "connections": Outcome("c", alone, True, 0.0)}
    )
    assert all(s.tcp_states is None for s in namespaces(col).samples)


def test_no_sockets_no_table_read(tmp_path: Path) -> None:
    """A namespace with nothing in use (and no TIME-WAIT) costs only its two sockstat reads."""
    make_proc(tmp_path, 100, "srv", sockstat(0, 0), None, skip=("tcp", "tcp6", "udp", "udp6"))
    tier = ConnectionCollector(HostFS(procfs=tmp_path), host_netns=False)
    res = tier.sweep("n1", [SRV])
    assert (res.errors, res.vanished) == (0, 0)
    assert res.by_owner[SRV.id].listeners == {} and res.by_owner[SRV.id].edges == {}


def test_time_wait_makes_both_tcp_tables_read(tmp_path: Path) -> None:
    # tw counts v4 and v6 together: either table may hold them, so both are read.
    make_proc(tmp_path, 100, "srv", sockstat(0, 0, tw=2), sockstat6(0, 0), skip=("tcp",))
    res = ConnectionCollector(HostFS(procfs=tmp_path), host_netns=False).sweep("n1", [SRV])
    assert res.vanished == 1  # the missing tcp file was read, as it had to be


def test_vanished_and_unreadable_namespaces(tmp_path: Path) -> None:
    make_proc(tmp_path, 100, "srv", sockstat(2, 3), sockstat6(4, 1))
    (tmp_path / "100" / "net" / "tcp").write_text("  sl  local\n   0: zz:zz 00000000:0000 0A\n")
    gone = ctr("gone", 999, "10.231.0.99")  # no /proc entry: exited since the listing
    res = ConnectionCollector(HostFS(procfs=tmp_path), host_netns=False).sweep("n1", [SRV, gone])
    assert (res.errors, res.vanished, res.namespaces) == (1, 1, ())


def test_collect_takes_the_snapshot_and_the_swarm_view(tmp_path: Path) -> None:
    """collect(snapshot): the registry's shape; services come from the swarm view's tuples."""
    from dataclasses import dataclass

    from agent.docker.models import Network, NetworkService, Service
    from agent.inventory import Snapshot

    make_proc(tmp_path, 200, "cli", sockstat(4, 1), sockstat6(0, 0), skip=("tcp6", "udp6"))

    @dataclass
    class Swarm:
        services: tuple[Service, ...] = ()
        networks: tuple[Network, ...] = ()

    # The client's peer 10.231.0.10 is no container here: only the swarm view can name it.
    swarm = Swarm(
        networks=(Network("o", "back", "overlay", "swarm", services=(NetworkService("api", "10.231.0.10"),)),)
    )
    tier = ConnectionCollector(HostFS(procfs=tmp_path), host_netns=False, swarm=swarm)
    res = tier.collect(Snapshot(containers={CLI.id: CLI}, node="n1"))
    assert dict(res.by_owner[CLI.id].edges) == {
        Edge(Direction.CLIENT, Peer(PeerKind.SERVICE, "api", "api"), 8080): 3
    }
    swarm.networks = ()
    res = tier.collect(Snapshot(containers={CLI.id: CLI}, node="n1"))
    assert {e.peer.kind for e in res.by_owner[CLI.id].edges} == {PeerKind.EXTERNAL}
