"""The /proc parsers against files captured from a container and a host on this kind of machine."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from agent import procnet

PROC = Path(__file__).parent.parent / "data" / "proc"


def text(which: str, name: str) -> str:
    return (PROC / which / name).read_text()


def test_net_dev_container() -> None:
    dev = procnet.parse_net_dev(text("container", "dev"))
    assert set(dev) == {"lo", "eth0"}
    eth0 = dev["eth0"]
    # Columns: rx bytes packets errs drop ... | tx bytes packets errs drop
    assert (eth0.rx_bytes, eth0.rx_packets, eth0.rx_errors, eth0.rx_dropped) == (52620, 64, 0, 0)
    assert (eth0.tx_bytes, eth0.tx_packets, eth0.tx_errors, eth0.tx_dropped) == (1856, 30, 0, 0)


def test_net_dev_host_has_drop_columns_apart_from_errors() -> None:
    dev = procnet.parse_net_dev(text("host", "dev"))
    assert {"lo", "eth0", "docker0"} <= set(dev)
    # docker0 had tx drops and no tx errors when captured: the columns must not be swapped.
    assert dev["docker0"].tx_dropped > 0
    assert dev["docker0"].tx_errors == 0


def test_net_dev_ignores_garbage_and_short_lines() -> None:
    good = "Inter-|\n face |\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  bad: 1 2 3\nnot a line\n"
    assert list(procnet.parse_net_dev(good)) == ["eth0"]
    assert procnet.parse_net_dev(good)["eth0"].tx_dropped == 12


def test_net_snmp_sections() -> None:
    snmp = procnet.parse_net_snmp(text("container", "snmp"))
    tcp = snmp["Tcp"]
    assert tcp["PassiveOpens"] == 1
    assert tcp["OutRsts"] == 3
    assert tcp["MaxConn"] == -1  # signed in the kernel's output
    assert tcp["InSegs"] == 45
    assert snmp["Udp"]["InDatagrams"] == 0
    # IcmpMsg is only printed once a message type was counted; none was in this capture.
    assert set(snmp) == {"Ip", "Icmp", "Tcp", "Udp", "UdpLite"}


def test_net_netstat_tcpext() -> None:
    ext = procnet.parse_net_snmp(text("container", "netstat"))
    assert "ListenOverflows" in ext["TcpExt"]
    assert "ListenDrops" in ext["TcpExt"]
    assert "TCPTimeouts" in ext["TcpExt"]
    assert "IpExt" in ext


def test_snmp6_and_sockstat() -> None:
    s6 = procnet.parse_net_snmp6(text("container", "snmp6"))
    assert s6["Udp6InDatagrams"] == 0
    assert "Udp6NoPorts" in s6
    ss = procnet.parse_sockstat(text("container", "sockstat"))
    assert ss["TCP"] == {"inuse": 1, "orphan": 0, "tw": 0, "alloc": 3, "mem": 39}
    assert ss["UDP"]["inuse"] == 1
    ss6 = procnet.parse_sockstat(text("container", "sockstat6"))
    assert ss6["TCP6"]["inuse"] == 1


def test_net_route_connected_routes() -> None:
    routes = procnet.parse_net_route(text("container", "route"))
    assert routes[0].network == ipaddress.IPv4Network("0.0.0.0/0")
    assert routes[0].gateway == "172.19.0.1"
    connected = [r for r in routes if r.gateway == "0.0.0.0"]
    assert [(r.iface, str(r.network)) for r in connected] == [("eth0", "172.19.0.0/16")]


def test_if_inet6() -> None:
    addrs = procnet.parse_if_inet6(text("host", "if_inet6"))
    assert ipaddress.IPv6Interface("fd00::2/64") in addrs["eth0"]


def test_tcp_states_merge_v4_v6() -> None:
    counts = procnet.count_tcp_states(text("container", "tcp"))
    assert counts["listen"] == 1  # Docker's embedded DNS on 127.0.0.11
    procnet.count_tcp_states(text("container", "tcp6"), into=counts)
    assert counts["listen"] == 2  # plus nc -l on :::9000
    assert sum(counts.values()) == 2


@pytest.mark.parametrize("name", ["dev", "snmp", "netstat", "sockstat", "route", "tcp"])
def test_parsers_survive_empty_and_truncated_input(name: str) -> None:
    parse = {
        "dev": procnet.parse_net_dev,
        "snmp": procnet.parse_net_snmp,
        "netstat": procnet.parse_net_snmp,
        "sockstat": procnet.parse_sockstat,
        "route": procnet.parse_net_route,
        "tcp": procnet.count_tcp_states,
    }[name]
    parse("")
    full = text("container", name)
    parse(full[: len(full) // 2])


@pytest.mark.parametrize("which", ["container", "host"])
def test_pick_agrees_with_full_parse(which: str) -> None:
    wanted = {
        "Tcp": ("CurrEstab", "AttemptFails", "OutRsts"),
        "TcpExt": ("ListenDrops", "TCPTimeouts"),
        "Udp": ("NoPorts",),
    }
    for name in ("snmp", "netstat"):
        full = procnet.parse_net_snmp(text(which, name))
        picked = procnet.pick_net_snmp(text(which, name), wanted)
        for sec, fields in picked.items():
            assert fields == {f: full[sec][f] for f in wanted[sec]}
        assert set(picked) == {s for s in wanted if s in full}
    full6 = procnet.parse_net_snmp6(text(which, "snmp6"))
    udp6 = procnet.pick_net_snmp6(text(which, "snmp6"), "Udp6")
    assert udp6 == {k[4:]: v for k, v in full6.items() if k.startswith("Udp6")}
    assert "InDatagrams" in udp6 and not any(k.startswith("Lite") for k in udp6)
