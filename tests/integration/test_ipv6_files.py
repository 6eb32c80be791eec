"""--collector.ipv6=auto on a real engine: a container with an IPv6 address has its IPv6 series,
equal to the kernel's; one with IPv6 off (Docker's default bridge: disable_ipv6=1) has none."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from agent import procnet
from tests.support.agentproc import Agent, Series, scrape_until, select
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import wait_for

pytestmark = pytest.mark.docker

WAIT = 60  # only a broken agent reaches it: the machine may be loaded
TCP_INUSE, UDP_INUSE = "container_network_tcp_sockets_in_use", "container_network_udp_sockets_in_use"
UDP_SENT = "container_network_udp_datagrams_sent_total"


def udp6_sent(pid: int) -> int:
    return procnet.pick_net_snmp6(Path(f"/proc/{pid}/net/snmp6").read_text(), "Udp6")["OutDatagrams"]


def v6_series(m: dict[str, Series], name: str) -> list[str]:
    return [
        metric
        for metric, series in m.items()
        for lbl, _ in series
        if lbl.get("name") == name and lbl.get("ip_version") == "6"
    ]


def test_ipv6_series_only_for_a_namespace_with_ipv6(engine: Engine, agent: Agent) -> None:
    net = f"dwt-v6-{secrets.token_hex(4)}"
    prefix = f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64"
    engine.network(net, "--ipv6", "--subnet", prefix)
    v6, v4 = f"dwt-v6c-{secrets.token_hex(4)}", f"dwt-v4c-{secrets.token_hex(4)}"
    # httpd (without -f) goes to the background listening on [::]:80: one TCP6 socket in use.
    engine.run("--network", net, BUSYBOX_IMAGE, "sh", "-c", "httpd -p 80 -h /tmp; exec sleep 600", name=v6)
    engine.run(BUSYBOX_IMAGE, "sleep", "600", name=v4)
    pid6, pid4 = engine.pid(v6), engine.pid(v4)
    # The premise, from the kernel: only the first has IPv6 beyond lo.
    assert Path(f"/proc/{pid4}/net/if_inet6").read_text().strip() == ""
    assert any(
        line.split()[-1] == "eth0" for line in Path(f"/proc/{pid6}/net/if_inet6").read_text().splitlines()
    )
    # One UDP datagram over IPv6 (a DNS query to nobody on ::1), so the v6 counter is not 0.
    engine.docker("exec", v6, "sh", "-c", "nslookup -timeout=1 x ::1 >/dev/null 2>&1; true")
    wait_for(lambda: udp6_sent(pid6) > 0, timeout=WAIT, what="a UDP datagram sent over IPv6")

    def caught_up(m: dict[str, Series]) -> bool:
        sent = select(m.get(UDP_SENT, []), name=v6, ip_version="6")
        return bool(sent) and sent[0][1] == udp6_sent(pid6) and bool(select(m.get(UDP_SENT, []), name=v4))

    m = scrape_until(agent, caught_up, WAIT, "both containers, and the v6 one's UDP counter caught up")
    assert select(m[TCP_INUSE], name=v6, ip_version="6")[0][1] == 1  # httpd on [::]:80
    assert select(m[UDP_INUSE], name=v6, ip_version="6")[0][1] == 0
    assert select(m[UDP_SENT], name=v6, ip_version="6")[0][1] == udp6_sent(pid6) > 0
    # IPv6 off: its v6 files were not read, so its v6 series are absent (not 0); its v4 ones are there.
    assert v6_series(m, v4) == []
    for metric in (TCP_INUSE, UDP_INUSE, UDP_SENT):
        assert len(select(m[metric], name=v4, ip_version="4")) == 1
