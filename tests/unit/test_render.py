"""The exposition: valid text format, right labels, escaping, one series per namespace."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.collector import Registry
from agent.docker.models import Container
from agent.hostfs import HostFS
from agent.inventory import Inventory, Snapshot
from agent.netstats import CollectResult, Membership, NetCollector, NetnsSample
from agent.procnet import DevCounters
from exporters.prometheus import names as n
from exporters.prometheus import render as render_module
from exporters.prometheus.render import Renderer, escape
from exporters.prometheus.scrape import Scraper
from tests.support import toolbox


def container(cid: str, name: str, mode: str = "bridge", **labels: str) -> Container:
    return replace(toolbox.container(1, name, mode, **labels), id=cid * 64, created=cid)


def sample(owner: Container | None, rx: int) -> NetnsSample:
    ctr = DevCounters(rx, 2, 3, 4, 5, 6, 7, 8)
    return NetnsSample(
        inode=rx,
        owner=owner,
        devices={"eth0": ctr},
        networks={"eth0": "host" if owner is None else "front"},
        mib={
            "Tcp": {"CurrEstab": 9, "AttemptFails": 11},
            "TcpExt": {"ListenOverflows": 12},
            "Udp": {"NoPorts": 13},
        },
        udp6={"NoPorts": 14},
        sockstat={"TCP": {"inuse": 15, "tw": 16}, "TCP6": {"inuse": 17}},
    )


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_escape() -> None:
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert escape("plain") == "plain"


def test_render_round_trips_through_the_reference_parser() -> None:
    web = container(
        "a", 'we"b', **{"com.docker.compose.project": "shop", "com.docker.swarm.service.name": "s1"}
    )
    joiner = container("b", "sidecar", mode="container:" + "a" * 64)
    hostc = container("c", "hostnet", mode="host")
    res = CollectResult(
        samples=[sample(web, 100), sample(None, 1000)],
        members=[Membership(web, 100, web), Membership(joiner, 100, web), Membership(hostc, 1000, None)],
    )
    text = Renderer().render("node1", "nid", res, {web.id: {"die": 2}}, {web.id: web}, [web]).text()
    got = parse(text)

    rx = got["container_network_receive_bytes_total"]
    assert len(rx) == 2  # one per namespace: the joiner and the host-network container add none
    by_name = {labels["name"]: (labels, v) for labels, v in rx}
    labels, v = by_name['we"b']
    assert v == 100
    assert labels["compose_project"] == "shop" and labels["service"] == "s1" and labels["node"] == "node1"
    assert labels["interface"] == "eth0" and labels["network"] == "front"
    host_labels, hv = by_name[""]
    assert hv == 1000 and host_labels["image"] == "" and host_labels["network"] == "host"

    assert got["container_network_transmit_packets_dropped_total"][0][1] == 8
    fails = {lbl["name"]: v for lbl, v in got["container_network_tcp_failed_connection_attempts_total"]}
    assert fails == {'we"b': 11, "": 11}
    udp = {(lbl["name"], lbl["ip_version"]): v for lbl, v in got["container_network_udp_no_port_total"]}
    assert udp == {('we"b', "4"): 13, ('we"b', "6"): 14, ("", "4"): 13, ("", "6"): 14}
    assert {
        lbl["ip_version"]: v for lbl, v in got["container_network_tcp_sockets_in_use"] if lbl["name"]
    } == {
        "4": 15,
        "6": 17,
    }

    info = {lbl["name"]: lbl for lbl, _ in got["dockwatch_container_info"]}
    assert info["sidecar"]["netns_owner"] == 'we"b' and info["sidecar"]["network_mode"] == "container"
    assert info["hostnet"]["netns_owner"] == "host" and info["hostnet"]["network_mode"] == "host"
    assert got["dockwatch_container_events_total"] == [
        ({**labels_without_device(labels), "action": "die"}, 2)
    ]


def labels_without_device(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k in n.IDENTITY}


def test_every_family_has_help_and_type_and_counters_end_in_total() -> None:
    for m in n.ALL:
        if m.kind == n.Kind.COUNTER:
            assert m.name.endswith("_total"), m.name
        else:
            assert not m.name.endswith("_total"), m.name
        assert m.help.endswith("."), m.name


def test_identity_cache_follows_container_changes() -> None:
    r = Renderer()
    a = container("a", "old")
    assert 'name="old"' in r.identity(a, "n")
    renamed = replace(a, name="new")
    assert 'name="new"' in r.identity(renamed, "n")


def test_identity_cache_keeps_running_containers_without_events() -> None:
    """Scraper.forget_except keeps running containers: their identity is rendered once, not per scrape."""
    c = container("a", "web")
    inv = Inventory()
    inv._snap = Snapshot(containers={c.id: c}, node="n")  # listed at start: no events for it
    scraper = Scraper(inv, Registry(NetCollector(HostFS(procfs=Path("/nonexistent")))))
    scraper.renderer.identity(c, "n")
    scraper._scrape_blocking()
    assert c.id in scraper.renderer._ident


def test_a_kept_rendering_equals_a_fresh_one_at_every_step() -> None:
    """The per-namespace render cache (issue 14) never serves stale lines: across renders where
    a counter moves, a container is renamed, the TCP-states tier appears and a namespace goes,
    one long-lived Renderer gives exactly what a new one gives."""
    import dataclasses

    a, b = container("a", "web"), container("b", "db")
    sa, sb, host = sample(a, 100), sample(b, 200), sample(None, 300)
    kept = Renderer()

    def both(*samples: NetnsSample, joined: Container | None = None) -> str:
        """Each sample's owner is a member of its namespace; `joined` shares the first one's."""
        members = [Membership(s.owner, s.inode, s.owner) for s in samples if s.owner is not None]
        if joined is not None:
            members.append(Membership(joined, samples[0].inode, samples[0].owner))
        res = CollectResult(samples=samples, members=tuple(members))
        fresh = Renderer().render("n1", "id", res, {}, {}, []).text()
        got = kept.render("n1", "id", res, {}, {}, []).text()
        assert got == fresh
        return got

    first = both(sa, sb, host)
    assert both(sa, sb, host) == first  # the same objects
    # Equal values in new objects: still the same text.
    assert both(dataclasses.replace(sa), dataclasses.replace(sb), host) == first
    moved = dataclasses.replace(sa, devices={"eth0": DevCounters(101, 2, 3, 4, 5, 6, 7, 8)})
    text = both(moved, sb, host)
    rx = n.DEVICE_METRICS[0][0].name
    assert any(line.startswith(rx + "{") and line.endswith(" 101") for line in text.splitlines())
    renamed = dataclasses.replace(sb, owner=dataclasses.replace(b, name="db2"))
    assert 'name="db2"' in both(moved, renamed, host)
    mib = {**sa.mib, "Tcp": {"CurrEstab": 10, "AttemptFails": 11}}
    both(dataclasses.replace(moved, mib=mib, tcp_states={"ESTABLISHED": 1}), renamed, host)
    assert 'name="web"' not in both(renamed, host)
    # A container sharing a namespace (container:<id>): its info line names the owner, and follows
    # a change of owner while the container object stays the same.
    side = container("c", "side", mode="container:" + "b" * 64)

    def side_info(text: str) -> str:
        (line,) = [
            ln for ln in text.splitlines() if ln.startswith(n.CONTAINER_INFO.name) and 'name="side"' in ln
        ]
        return line

    assert 'netns_owner="db2"' in side_info(both(renamed, host, joined=side))
    assert 'netns_owner="web"' in side_info(both(sa, renamed, joined=side))


def test_kernel_wide_sockstat_fields_are_not_kept_so_an_idle_namespace_is_not_rendered_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """net/sockstat's TCP mem/alloc/orphan and UDP mem count the whole kernel: they move with any
    socket on the host. Kept, every idle namespace looked changed at every scrape and was
    rendered again (issue 14: ~18 ms of a scrape at 500). Only SOCKSTAT_FIELDS are kept, and the
    text is the same as with every field."""
    b = toolbox.container(1, "b")
    root = toolbox.captured_procfs(tmp_path, {1: "host", b.pid: "container"})
    fs = toolbox.ScriptedFS(procfs=root, links={1: 4026531833, b.pid: 7})
    snap = Snapshot(containers={b.id: b})
    picked = NetCollector(fs, mib_fields=n.MIB_FIELDS, sockstat_fields=n.SOCKSTAT_FIELDS)
    every = NetCollector(fs, mib_fields=n.MIB_FIELDS)
    stat = root / str(b.pid) / "net" / "sockstat"
    captured = stat.read_text()
    assert "TCP: inuse 1 orphan 0 tw 0 alloc 3 mem 39\nUDP: inuse 1 mem 0\n" in captured
    kept = Renderer()
    rendered: list[str] = []
    real = render_module._render_namespace

    def counting(s: NetnsSample, ident: str) -> list[bytes]:
        rendered.append(ident)
        return real(s, ident)

    def scrape() -> tuple[str, int]:
        """The kept renderer's text (equal to a fresh one's with every field) and how many times
        it rendered b's namespace."""
        fresh = Renderer().render("n", "", every.collect(snap), {}, {}, []).text()
        rendered.clear()
        with monkeypatch.context() as m:
            m.setattr(render_module, "_render_namespace", counting)
            got = kept.render("n", "", picked.collect(snap), {}, {}, []).text()
        assert got == fresh
        return got, sum('name="b"' in ident for ident in rendered)

    assert scrape()[1] == 1
    stat.write_text(
        captured.replace("orphan 0 tw 0 alloc 3 mem 39", "orphan 2 tw 0 alloc 977 mem 412").replace(
            "UDP: inuse 1 mem 0", "UDP: inuse 1 mem 7"
        )
    )
    assert scrape()[1] == 0
    assert {p: set(f) for p, f in picked.collect(snap).samples[0].sockstat.items()} == {
        "TCP": {"inuse", "tw"},
        "UDP": {"inuse"},
    }
    stat.write_text(captured.replace("TCP: inuse 1", "TCP: inuse 5"))
    text, renders = scrape()
    assert renders == 1
    assert any(
        line.startswith(n.TCP_INUSE.name)
        and 'name="b"' in line
        and 'ip_version="4"' in line
        and line.endswith(" 5")
        for line in text.splitlines()
    )
