"""dockwatch top's two sources read the same thing: the agent's exposition parsed back equals the
standalone adapter's view of the same collection; and the socket parser on captured files."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest

from agent import procnet
from agent.docker.models import COMPOSE_PROJECT, COMPOSE_SERVICE, Container, NetworkAttachment
from agent.netstats import CollectResult, Membership, NetnsSample
from agent.top.collect import to_sample
from agent.top.model import HOST_NAME, compute
from agent.top.sources import MetricsSource, SourceError, from_exposition, metrics_url
from exporters.prometheus.render import Renderer
from tests.support import toolbox

DATA = Path(__file__).resolve().parents[1] / "data" / "proc"


def container(name: str, cid: str, mode: str = "default", **labels: str) -> Container:
    att = NetworkAttachment("front", "n1", ip="172.20.0.2", prefix_len=16)
    return replace(toolbox.container(1, name, mode, **labels), id=cid, networks=(att,))


def collect_result() -> CollectResult:
    web = container("web", "a" * 64, **{COMPOSE_PROJECT: "shop", COMPOSE_SERVICE: "web"})
    side = container("side", "b" * 64, mode=f"container:{'a' * 64}")
    hostc = container("hostc", "c" * 64, mode="host")
    mib = {
        "Tcp": {"CurrEstab": 3, "AttemptFails": 7, "RetransSegs": 11, "ActiveOpens": 20, "OutRsts": 2},
        "TcpExt": {"ListenDrops": 1},
    }
    sock = {"TCP": {"inuse": 4, "tw": 5}}
    return CollectResult(
        samples=[
            NetnsSample(
                inode=4026531999,
                owner=web,
                devices={
                    "eth0": procnet.DevCounters(1000, 10, 1, 2, 2000, 20, 3, 4),
                    "eth1": procnet.DevCounters(5, 1, 0, 0, 6, 1, 0, 0),
                },
                networks={"eth0": "front", "eth1": ""},
                mib=mib,
                udp6={},
                sockstat=sock,
                tcp_states={"established": 3, "listen": 1},
            ),
            NetnsSample(
                inode=4026531840,
                owner=None,
                devices={"ens3": procnet.DevCounters(9, 9, 0, 0, 9, 9, 0, 0)},
                networks={"ens3": "host"},
                mib={"Tcp": {"CurrEstab": 1, "AttemptFails": 0, "RetransSegs": 0}},
                udp6={},
                sockstat={"TCP": {"tw": 0}},
            ),
        ],
        members=[
            Membership(web, 4026531999, web),
            Membership(side, 4026531999, web),
            Membership(hostc, 4026531840, None),
        ],
    )


def test_url_source_reads_back_what_the_standalone_adapter_sees() -> None:
    res = collect_result()
    body = Renderer().render("node1", "nid", res, {}, {}, []).text()
    over_http = {ns.name: ns for ns in from_exposition(body, 1.0, 2.0).namespaces}
    direct = {ns.name: ns for ns in to_sample(res, "node1", 1.0, 2.0).namespaces}
    assert set(over_http) == set(direct) == {"web", HOST_NAME}
    for name in direct:
        a, b = over_http[name], direct[name]
        assert a.ifaces == b.ifaces, name
        for section, fields in b.mib.items():
            for k, v in fields.items():
                assert a.tcp(section, k) == v, (name, section, k)
        assert (a.time_wait, a.tcp_states, a.node, a.project, a.service, a.members, a.container_id) == (
            b.time_wait,
            b.tcp_states,
            b.node,
            b.project,
            b.service,
            b.members,
            b.container_id,
        ), name
    web = direct["web"]
    assert web.project == "shop" and web.service == "web"
    assert web.members == ("side",)
    assert web.networks == ("front",)
    assert direct[HOST_NAME].members == ("hostc",)
    assert web.addresses == ("172.20.0.2",)  # only the standalone source knows them


def test_url_source_keys_are_stable_across_scrapes_so_rates_work() -> None:
    res = collect_result()
    body1 = Renderer().render("node1", "nid", res, {}, {}, []).text()
    devices = res.samples[0].devices
    assert isinstance(devices, dict)  # the collector's own dict: a later scrape's counters
    devices["eth0"] = procnet.DevCounters(3000, 30, 1, 2, 2000, 20, 3, 4)
    body2 = Renderer().render("node1", "nid", res, {}, {}, []).text()
    f = compute(from_exposition(body1, 10.0, 0), from_exposition(body2, 12.0, 2))
    web = next(r for r in f.rows if r.name == "web")
    assert web.rx_bps == pytest.approx(1000)
    assert web.rx_pps == pytest.approx(10)


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://node1:9105", "http://node1:9105/metrics"),
        ("http://node1:9105/", "http://node1:9105/metrics"),
        ("node1:9105", "http://node1:9105/metrics"),
        ("http://node1:9105/metrics", "http://node1:9105/metrics"),
        ("https://proxy/dockwatch/metrics", "https://proxy/dockwatch/metrics"),
    ],
)
def test_metrics_url(given: str, url: str) -> None:
    assert metrics_url(given) == url


def test_parse_net_sockets_from_captured_files() -> None:
    v4 = procnet.parse_net_sockets((DATA / "container" / "tcp").read_text())
    assert v4 == [
        procnet.Socket(
            ipaddress.ip_address("127.0.0.11"), 40405, ipaddress.ip_address("0.0.0.0"), 0, "listen"
        )
    ]
    v6 = procnet.parse_net_sockets((DATA / "container" / "tcp6").read_text())
    assert v6[0].local == ipaddress.ip_address("::") and v6[0].local_port == 9000 and v6[0].state == "listen"


def test_parse_net_sockets_established_v4_and_mapped_v6() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 020014AC:0050 030014AC:D431 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0\n"
    )
    (s,) = procnet.parse_net_sockets(text)
    assert (str(s.local), s.local_port, str(s.remote), s.remote_port, s.state) == (
        "172.20.0.2",
        80,
        "172.20.0.3",
        54321,
        "established",
    )
    text6 = (
        "  sl  local_address                         remote_address                        st\n"
        "   0: 0000000000000000FFFF0000020014AC:0050 0000000000000000FFFF0000030014AC:D431 01 0\n"
    )
    (s6,) = procnet.parse_net_sockets(text6)
    assert s6.remote == ipaddress.ip_address("::ffff:172.20.0.3")


async def test_metrics_source_over_http_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """MetricsSource against a loopback server: a body is a Sample; an error status, no server at
    all, or a proxy in the environment (ignored: the agent is reached directly) say the URL."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    body = Renderer().render("node1", "nid", collect_result(), {}, {}, []).text().encode()
    statuses = ["200 OK", "500 Internal Server Error"]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        status = statuses.pop(0)
        payload = body if status.startswith("200") else b"broken\n"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    src = MetricsSource(f"127.0.0.1:{port}", timeout=10)
    try:
        await src.start()
        sample = await src.sample()
        assert {ns.name for ns in sample.namespaces} == {"web", HOST_NAME} and sample.node == "node1"
        with pytest.raises(SourceError, match=rf"^http://127\.0\.0\.1:{port}/metrics: HTTP 500$"):
            await src.sample()
    finally:
        await src.close()
        server.close()
        await server.wait_closed()
    with pytest.raises(SourceError, match=rf"^http://127\.0\.0\.1:{port}/metrics: URLError: .*refused"):
        await MetricsSource(f"127.0.0.1:{port}").sample()
