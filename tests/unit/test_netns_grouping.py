"""Grouping containers by network namespace when some ns links may not be read (issue 9, item 1).

The real engine and the capability-less agent are in tests/integration/test_host_netns.py; here
the links' readability is scripted, and the net files are the captured ones of tests/data/proc.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent.docker.models import Container
from agent.inventory import Snapshot
from agent.netstats import (
    HOST_KEY,
    CollectResult,
    NetCollector,
    NsKey,
    TcpStatesCollector,
    group_namespaces,
)
from exporters.prometheus import names
from exporters.prometheus.render import Renderer
from tests.support.toolbox import ScriptedFS, captured_procfs
from tests.support.toolbox import container as ctr

HOST_INO = 4026531833
DENIED = None  # a link ptrace rules hide


H = ctr(1, "hostc", "host")  # default capabilities: its link is hidden from a capability-less agent
J = ctr(2, "joiner", "container:hostc")  # --cap-drop ALL itself: its link is readable
JJ = ctr(3, "joiner2", f"container:{J.id}")  # a joiner of the joiner
J2 = ctr(4, "joiner3", "container:hostc")  # default capabilities: hidden
B = ctr(5, "web")
JB = ctr(6, "web-sidecar", "container:web")
ALL = [H, J, JJ, J2, B, JB]
IN_HOST = {H.id, J.id, JJ.id, J2.id}


def members(groups: Mapping[NsKey, Sequence[Container]], key: NsKey) -> set[str]:
    return {c.id for c in groups[key]}


def test_host_joiners_land_in_the_host_group_when_proc_1_is_hidden() -> None:
    fs = ScriptedFS(
        links={
            1: DENIED,
            H.pid: DENIED,
            J.pid: HOST_INO,
            JJ.pid: HOST_INO,
            J2.pid: DENIED,
            B.pid: 7,
            JB.pid: 7,
        }
    )
    g = group_namespaces(fs, ALL)
    assert g.host_key == HOST_INO  # named by the joiner's readable link
    assert set(g.groups) == {HOST_INO, 7}
    assert members(g.groups, HOST_INO) == IN_HOST
    assert members(g.groups, 7) == {B.id, JB.id}


def test_nothing_readable_docker_decides() -> None:
    fs = ScriptedFS(links=dict.fromkeys([1, *(c.pid for c in ALL)], DENIED))
    g = group_namespaces(fs, ALL)
    assert g.host_key == HOST_KEY
    assert members(g.groups, HOST_KEY) == IN_HOST
    assert members(g.groups, f"ns:{B.id}") == {B.id, JB.id}


def test_proc_1_readable_and_a_container_found_only_by_its_link() -> None:
    """A joiner whose target Docker named is not in the inventory: its inode still says host."""
    orphan = ctr(7, "orphan", "container:not-listed")
    fs = ScriptedFS(links={1: HOST_INO, J.pid: HOST_INO, orphan.pid: HOST_INO, B.pid: 7})
    g = group_namespaces(fs, [H, J, orphan, B])
    assert g.host_key == HOST_INO
    assert members(g.groups, HOST_INO) == {H.id, J.id, orphan.id}


def test_a_sidecar_never_calls_its_namespace_the_host() -> None:
    me = ctr(8, "app", "sidecar")
    fs = ScriptedFS(links={1: HOST_INO, me.pid: HOST_INO})
    g = group_namespaces(fs, [me], sidecar=True)
    assert g.host_key == HOST_KEY and members(g.groups, HOST_INO) == {me.id}


def test_joiner_of_a_host_network_container_is_exported_as_the_host(tmp_path: Path) -> None:
    """The exposition: the host namespace once (name=""), joiners with netns_owner="host"."""
    root = captured_procfs(tmp_path, {1: "host", B.pid: "container"})
    links = {1: DENIED, H.pid: DENIED, J.pid: HOST_INO, JJ.pid: HOST_INO, J2.pid: DENIED, B.pid: 7, JB.pid: 7}
    fs = ScriptedFS(procfs=root, links=links)
    snap = Snapshot(containers={c.id: c for c in ALL})
    res = NetCollector(fs).collect(snap)
    assert res.errors == 0 and res.vanished == 0
    assert [s.owner.name if s.owner else "host" for s in res.samples] == ["web", "host"]

    text = Renderer().render("n1", "", res, {}, {}, ALL).text()
    info: dict[str, dict[str, str]] = {}
    rx_names: list[str] = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "dockwatch_container_info":
                info[s.labels["name"]] = s.labels
            elif s.name == "container_network_receive_bytes_total":
                rx_names.append(s.labels["name"])
    assert {n: info[n]["netns_owner"] for n in info} == {
        "hostc": "host",
        "joiner": "host",
        "joiner2": "host",
        "joiner3": "host",
        "web": "web",
        "web-sidecar": "web",
    }
    assert info["joiner"]["network_mode"] == "container"
    assert set(rx_names) == {"web", ""}  # no series of the host's interfaces under a joiner's name

    # The TCP-states tier groups the same way: the host namespace is read once, under its key.
    tcp = TcpStatesCollector(fs).collect(snap)
    assert set(tcp.by_netns) == {HOST_INO, 7} and tcp.errors == 0


def test_reading_only_the_declared_fields_renders_the_same(tmp_path: Path) -> None:
    """names.MIB_FIELDS, derived from the metric declarations and handed to the collector by
    app.py, selects exactly the fields a metric is read from: the exposition equals a full read's."""
    root = captured_procfs(tmp_path, {1: "host", B.pid: "container"})
    fs = ScriptedFS(procfs=root, links={1: HOST_INO, B.pid: 7})
    snap = Snapshot(containers={B.id: B})
    full = NetCollector(fs).collect(snap)
    picked = NetCollector(fs, mib_fields=names.MIB_FIELDS).collect(snap)
    assert len(picked.samples) == 2 and picked.errors == 0
    for s in picked.samples:
        assert {sec: set(fields) for sec, fields in s.mib.items()} == {
            sec: set(fields) for sec, fields in names.MIB_FIELDS.items()
        }
    declared = {m.value_from for m in names.ALL if m.value_from and m.value_from[0] != "dev"}
    assert declared == {(sec, f) for sec, fields in names.MIB_FIELDS.items() for f in fields}

    def text(res: CollectResult) -> str:
        return Renderer().render("n1", "", res, {}, {}, [B]).text()

    assert text(picked) == text(full)


class CountingFS(ScriptedFS):
    """ScriptedFS that records which pids' links were stat()ed."""

    def netns_inode(self, pid: int | str) -> int:
        STATS.append(int(pid))
        return ScriptedFS.netns_inode(self, pid)


STATS: list[int] = []


def test_a_running_container_is_stated_once_and_a_restart_is_seen() -> None:
    """The memo (issue 14): a known (container, pid) is not stat()ed again; a new pid is."""
    import dataclasses

    a, b = ctr(7, "a"), ctr(8, "b")
    fs = CountingFS(links={1: HOST_INO, a.pid: 70, b.pid: 80, 999: 71})
    known: dict[tuple[str, int], NsKey] = {}
    STATS.clear()
    g = group_namespaces(fs, [a, b], known=known)
    assert members(g.groups, 70) == {a.id} and members(g.groups, 80) == {b.id}
    assert sorted(STATS) == sorted([1, a.pid, b.pid])
    STATS.clear()
    group_namespaces(fs, [a, b], known=known)
    assert STATS == [1]  # only the host probe
    a2 = dataclasses.replace(a, pid=999)  # a restarted: a new process, a new namespace
    STATS.clear()
    g = group_namespaces(fs, [a2, b], known=known)
    assert STATS == [1, 999]
    assert members(g.groups, 71) == {a.id} and 70 not in g.groups
    assert set(known) == {(a.id, 999), (b.id, b.pid)}  # the old pid is forgotten
