"""A namespace's /proc files kept open (agent/nsfiles.py): read again from offset 0 they are
generated afresh; the collector closes them when their namespace leaves, when idle, and at close;
a budget bounds the descriptors; the soft open-files limit is raised to the hard one."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from agent import fastproc, netstats
from agent.collector import Registry
from agent.docker.models import Container
from agent.inventory import Snapshot
from agent.netstats import NetCollector, NetnsSample
from agent.nsfiles import Budget, Kept, Opened
from exporters.prometheus import names
from tests.support.toolbox import ScriptedFS, captured_procfs, container

PARSERS = [p for p in (fastproc.PYTHON, fastproc.C) if p is not None]
HOST_INO = 4026531833


def udp_out(snmp: bytes) -> int:
    head, vals = [ln.split() for ln in snmp.decode().splitlines() if ln.startswith("Udp:")][:2]
    return int(vals[head.index("OutDatagrams")])


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
def test_a_kept_file_read_again_is_generated_afresh(parser: fastproc.Parser) -> None:
    """What the whole change rests on: pread at offset 0 of a /proc/<pid>/net file kept open
    gives the kernel's counters of now, not those of the first read."""
    kept = Kept(f"/proc/{os.getpid()}/net/", parser, Budget(10))
    try:
        before = udp_out(kept.read("snmp", True))
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.bind(("127.0.0.1", 0))
            for _ in range(25):
                tx.sendto(b"x", rx.getsockname())
        after = udp_out(kept.read("snmp", True))
        fresh = udp_out(Opened(f"/proc/{os.getpid()}/net/", parser).read("snmp", True))
        assert len(kept.fds) == 1
    finally:
        kept.close()
    assert before + 25 <= after <= fresh  # others in this namespace may send UDP too: only more
    # A seq_file (net/dev, one record per interface): read to the end again, every time.
    kept = Kept(f"/proc/{os.getpid()}/net/", parser, Budget(10))
    try:
        first, second = kept.read("dev"), kept.read("dev")
    finally:
        kept.close()
    assert first.splitlines()[:2] == second.splitlines()[:2] and len(second.splitlines()) == len(
        first.splitlines()
    )
    assert second.count(b"\n") == len(Path("/proc/self/net/dev").read_bytes().splitlines())


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 131073, 300_000])
@pytest.mark.parametrize("single", [False, True])
def test_pread_reads_every_byte_from_the_start_each_time(tmp_path: Path, size: int, single: bool) -> None:
    f = tmp_path / "f"
    data = bytes(range(251)) * (size // 251) + bytes(size % 251)
    f.write_bytes(data)
    fd = os.open(f, os.O_RDONLY)
    try:
        for p in PARSERS:
            assert p.pread(fd, single) == data
            assert p.pread(fd, single) == data  # again: from offset 0, not where the last one ended
    finally:
        os.close(fd)


def test_the_budget_bounds_the_descriptors_and_the_rest_are_read_by_path(tmp_path: Path) -> None:
    root = captured_procfs(tmp_path, {5: "container"})
    budget = Budget(3)  # the process's directory (for alive()) and two files
    kept = Kept(f"{root}/5/net/", fastproc.PYTHON, budget)
    for name in ("dev", "snmp", "netstat"):
        assert kept.read(name) == (root / "5" / "net" / name).read_bytes()
    assert set(kept.fds) == {"dev", "snmp"} and kept.pid_fd is not None
    assert budget.used == 3 and budget.refused == 1
    with pytest.raises(FileNotFoundError):  # a failed open takes nothing from the budget
        kept.read("nothing")
    assert budget.used == 3
    fds = [*kept.fds.values(), kept.pid_fd]
    kept.close()
    assert budget.used == 0 and kept.fds == {}
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def pids_held(root: Path) -> set[str]:
    """The <pid> directories under root that this process holds descriptors in (or on)."""
    return {Path(p).relative_to(root).parts[0] for p in fds_under(root)}


def fds_under(root: Path) -> set[str]:
    """This process's descriptors open on files under root."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)):
            out.add(target)
    return out


def test_the_collector_closes_the_files_of_namespaces_that_left(tmp_path: Path) -> None:
    web, api = container(1, "web"), container(2, "api")
    root = captured_procfs(tmp_path, {1: "host", web.pid: "container", api.pid: "container"})
    fs = ScriptedFS(procfs=root, links={1: HOST_INO, web.pid: 11, api.pid: 12})
    col = NetCollector(fs, mib_fields=names.MIB_FIELDS)

    def snap(*cs: object) -> Snapshot:
        return Snapshot(containers={c.id: c for c in (web, api) if c in cs})

    first = col.collect(snap(web, api))
    assert pids_held(root) == {"1", str(web.pid), str(api.pid)}
    assert col.kept_files == len(fds_under(root)) >= 3 * 4
    # api left the inventory: its namespace's files are closed at this collection.
    second = col.collect(snap(web))
    assert pids_held(root) == {"1", str(web.pid)}
    # The kept files give what files opened afresh give.
    fresh = NetCollector(fs, mib_fields=names.MIB_FIELDS, keep_open=False).collect(snap(web))
    assert [s.devices for s in second.samples] == [s.devices for s in fresh.samples]
    assert [s.mib for s in second.samples] == [s.mib for s in fresh.samples]
    assert len(first.samples) == 3 and len(second.samples) == 2
    # Idle: nothing closed before the time is up; everything after it.
    assert col.release_idle(3600) == 0 and fds_under(root)
    assert col.release_idle(0) > 0 and not fds_under(root) and col.kept_files == 0
    col.collect(snap(web))
    assert fds_under(root)
    col.close()
    assert not fds_under(root)


def test_without_keeping_nothing_stays_open(tmp_path: Path) -> None:
    web = container(1, "web")
    root = captured_procfs(tmp_path, {1: "host", web.pid: "container"})
    fs = ScriptedFS(procfs=root, links={1: HOST_INO, web.pid: 11})
    col = NetCollector(fs, mib_fields=names.MIB_FIELDS, keep_open=False)
    assert len(col.collect(Snapshot(containers={web.id: web})).samples) == 2
    assert not fds_under(root) and col.kept_files == 0


def test_a_namespace_read_halfway_keeps_nothing_open(tmp_path: Path) -> None:
    """Its process went away between two of its files: counted as vanished, and the files
    opened before that are closed, not kept for a namespace that is gone."""
    web = container(1, "web")
    root = captured_procfs(tmp_path, {1: "host", web.pid: "container"})
    (root / str(web.pid) / "net" / "netstat").unlink()
    fs = ScriptedFS(procfs=root, links={1: HOST_INO, web.pid: 11})
    col = NetCollector(fs, mib_fields=names.MIB_FIELDS)
    res = col.collect(Snapshot(containers={web.id: web}))
    assert res.vanished == 1 and len(res.samples) == 1
    assert pids_held(root) == {"1"}


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256 if hard == resource.RLIM_INFINITY else min(256, hard)
    code = (
        "import resource; from agent.nsfiles import raise_open_files_limit as r; "
        "print(r(), resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    if low == hard:  # nothing to raise
        assert out.strip() == f"({low}, {low}) ({low}, {low})"
    else:
        assert out.strip() == f"({low}, {hard}) ({hard}, {hard})"


def rewrite(path: Path, old: bytes, new: bytes) -> None:
    """Change a file in place (the kept descriptor sees it, as it sees the kernel's next numbers)."""
    data = path.read_bytes()
    assert old in data
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data.replace(old, new, 1))


def test_unchanged_files_give_the_same_sample_and_any_change_a_new_one(tmp_path: Path) -> None:
    """An idle namespace's files read the same bytes: its last sample is reused as it is (the
    renderer then hits its cache by identity). Any change of the files, of the sockets in use or
    of the owner gives a new sample with the new values."""
    web = container(1, "web")
    root = captured_procfs(tmp_path, {1: "host", web.pid: "container"})
    net = root / str(web.pid) / "net"
    fs = ScriptedFS(procfs=root, links={1: HOST_INO, web.pid: 11})
    col = NetCollector(fs, mib_fields=names.MIB_FIELDS, sockstat_fields=names.SOCKSTAT_FIELDS)

    def sample(*cs: Container) -> NetnsSample:
        snap = Snapshot(containers={c.id: c for c in cs})
        (s,) = [s for s in col.collect(snap).samples if s.owner is not None]
        return s

    first = sample(web)
    assert sample(web) is first
    # A counter moved (net/dev: eth0's received bytes).
    eth0 = next(ln for ln in (net / "dev").read_bytes().splitlines() if b"eth0:" in ln)
    rx = eth0.split(b":")[1].split()[0]
    rewrite(
        net / "dev", b"eth0:" + eth0.split(b":")[1], b"eth0:" + eth0.split(b":")[1].replace(rx, rx + b"7", 1)
    )
    moved = sample(web)
    assert moved is not first and moved.devices["eth0"].rx_bytes == int(rx + b"7")
    assert sample(web) is moved
    # Only net/sockstat's per-namespace numbers moved (TIME_WAIT sockets).
    rewrite(net / "sockstat", b"tw 0", b"tw 5")
    tw = sample(web)
    assert tw is not moved and tw.sockstat["TCP"]["tw"] == 5
    # Only its kernel-wide fields moved: nothing exported changed, the sample is the same.
    rewrite(net / "sockstat", b"mem 39", b"mem 40")
    assert sample(web) is tw
    # A new owner object (the inventory's: renamed, say) is a new sample, with it as owner.
    renamed = replace(web, name="web2")
    again = sample(renamed)
    assert again is not tw and again.owner is renamed and again.devices == tw.devices
    # Without kept files nothing is reused.
    plain = NetCollector(fs, mib_fields=names.MIB_FIELDS, keep_open=False)
    snap = Snapshot(containers={web.id: web})
    assert plain.collect(snap).samples[0] is not plain.collect(snap).samples[0]


def test_the_registry_releases_idle_collectors_and_closes_them(tmp_path: Path) -> None:
    """What App's release task and shutdown call: through the registry, under each unit's lock."""
    web = container(1, "web")
    root = captured_procfs(tmp_path, {1: "host", web.pid: "container"})
    fs = ScriptedFS(procfs=root, links={1: HOST_INO, web.pid: 11})
    reg = Registry(NetCollector(fs, mib_fields=names.MIB_FIELDS))
    snap = Snapshot(containers={web.id: web})
    reg.collect(snap)
    assert fds_under(root) and reg.release_idle(3600) == 0 and fds_under(root)
    assert reg.release_idle(0) > 0 and not fds_under(root)
    reg.collect(snap)
    assert fds_under(root)
    reg.close()
    assert not fds_under(root)


def bump(path: Path, section: str, field: str, by: int = 1000) -> int:
    """Add `by` to one field of a net/snmp or net/netstat pair of lines, in place; the new value."""
    lines = path.read_bytes().decode().split("\n")
    i = next(k for k, ln in enumerate(lines) if ln.startswith(section + ":"))
    names_, values = lines[i].split(), lines[i + 1].split()
    j = names_.index(field)
    values[j] = str(int(values[j]) + by)
    lines[i + 1] = " ".join(values)
    rewrite(path, path.read_bytes(), "\n".join(lines).encode())
    return int(values[j])


def test_every_file_read_is_in_the_comparison(tmp_path: Path) -> None:
    """net/snmp, net/netstat, net/if_inet6 and net/snmp6 moving each give a new sample: none of
    them is left out of what decides that a namespace did not change."""
    web = container(1, "web")
    root = captured_procfs(tmp_path, {1: "host", web.pid: "container"})
    net = root / str(web.pid) / "net"
    fs = ScriptedFS(procfs=root, links={1: HOST_INO, web.pid: 11})
    col = NetCollector(fs, mib_fields=names.MIB_FIELDS, sockstat_fields=names.SOCKSTAT_FIELDS)
    snap = Snapshot(containers={web.id: web})

    def sample() -> NetnsSample:
        (s,) = [s for s in col.collect(snap).samples if s.owner is not None]
        return s

    last = sample()
    assert sample() is last
    tcp_field = names.MIB_FIELDS["Tcp"][0]
    want = bump(net / "snmp", "Tcp", tcp_field)
    new = sample()
    assert new is not last and new.mib["Tcp"][tcp_field] == want
    ext_field = names.MIB_FIELDS["TcpExt"][0]
    want = bump(net / "netstat", "TcpExt", ext_field)
    last, new = new, sample()
    assert new is not last and new.mib["TcpExt"][ext_field] == want
    # An IPv6 address appears (auto): the IPv6 files are read from now on.
    assert "TCP6" not in new.sockstat and new.udp6 == {}
    rewrite(
        net / "if_inet6",
        (net / "if_inet6").read_bytes(),
        b"fd000000000000000000000000000002 04 40 00 82     eth0\n",
    )
    last, new = new, sample()
    assert new is not last and "TCP6" in new.sockstat and "InDatagrams" in new.udp6
    assert sample() is new
    rewrite(net / "snmp6", b"Udp6InDatagrams                 \t0", b"Udp6InDatagrams                 \t42")
    last, new = new, sample()
    assert new is not last and new.udp6["InDatagrams"] == 42


def test_a_process_gone_while_still_listed_is_vanished_not_frozen(tmp_path: Path) -> None:
    """A kept file reads on after its process exits (it holds the namespace): a container that
    exited while the inventory still lists it (engine unreachable) must be counted as vanished,
    as opening its files by path found it, and its files closed: not exported frozen."""
    web = container(1, "web")
    root = captured_procfs(tmp_path, {1: "host", web.pid: "container"})
    fs = ScriptedFS(procfs=root, links={1: HOST_INO, web.pid: 11})
    col = NetCollector(fs, mib_fields=names.MIB_FIELDS)
    snap = Snapshot(containers={web.id: web})
    assert len(col.collect(snap).samples) == 2 and str(web.pid) in pids_held(root)
    shutil.rmtree(root / str(web.pid))  # what /proc/<pid> becomes when the process exits
    res = col.collect(snap)
    assert res.vanished == 1 and [s.owner for s in res.samples] == [None]
    assert not {p for p in fds_under(root) if f"/{web.pid}/" in p or p.endswith(f"/{web.pid}")}


def test_a_dead_namespace_s_last_moves_are_exported_once_then_it_is_vanished(tmp_path: Path) -> None:
    """Only a namespace whose bytes did not change is looked up in /proc at every read (a moving one
    was alive a moment ago): counters that moved just before the process exited are its final
    figures, given once; at the next collection the bytes are the same, the lookup fails, and it
    is gone."""
    web = container(1, "web")
    col, snap, net, root = _one_container(tmp_path, web)
    estab = _bump_estab(net, 5)
    shutil.rmtree(root / str(web.pid))  # ... and the process exits
    res = col.collect(snap)
    (last,) = [s for s in res.samples if s.owner is web]
    assert res.vanished == 0 and last.mib["Tcp"]["CurrEstab"] == estab + 5
    res = col.collect(snap)
    assert res.vanished == 1 and [s.owner for s in res.samples] == [None]
    assert not {p for p in fds_under(root) if f"/{web.pid}/" in p or p.endswith(f"/{web.pid}")}


def test_a_dead_namespace_whose_counters_keep_moving_is_gone_within_alive_every_reads(
    tmp_path: Path,
) -> None:
    """A namespace can outlive its process with counters moving (Docker's sandbox, its veth still on
    the bridge while the engine is down): the process is looked up every ALIVE_EVERY reads anyway."""
    web = container(1, "web")
    col, snap, net, _ = _one_container(tmp_path, web)
    # The process is gone (its /proc lookup fails) while the files it opened live on.
    moved = net.rename(net.with_name("net-of-the-namespace"))
    exported = 0
    for _ in range(netstats.ALIVE_EVERY + 1):
        _bump_estab(moved, 1)  # moving, every time
        res = col.collect(snap)
        if res.vanished:
            break
        exported += 1
    assert res.vanished == 1 and exported < netstats.ALIVE_EVERY


def _one_container(tmp_path: Path, web: Container) -> tuple[NetCollector, Snapshot, Path, Path]:
    """A collector that has read `web`'s namespace once (its files kept), and that namespace's files."""
    root = captured_procfs(tmp_path, {1: "host", web.pid: "container"})
    fs = ScriptedFS(procfs=root, links={1: HOST_INO, web.pid: 11})
    col = NetCollector(fs, mib_fields=names.MIB_FIELDS)
    snap = Snapshot(containers={web.id: web})
    assert [s for s in col.collect(snap).samples if s.owner is web]
    return col, snap, root / str(web.pid) / "net", root


def _bump_estab(net: Path, by: int) -> int:
    """Add `by` to Tcp CurrEstab (the 9th value of the Tcp line) in place; its value before."""
    line = (net / "snmp").read_bytes().split(b"\nTcp: ")[2].split(b"\n")[0]
    fields = line.split()
    before = int(fields[8])
    fields[8] = b"%d" % (before + by)
    rewrite(net / "snmp", b"Tcp: " + line, b"Tcp: " + b" ".join(fields))
    return before


def test_alive_follows_a_real_process() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    kept = Kept(f"/proc/{proc.pid}/net/", fastproc.PYTHON, Budget(10))
    try:
        assert kept.alive()  # nothing kept yet
        kept.read("dev")
        assert kept.alive() and kept.pid_fd is not None
        proc.kill()
        proc.wait()
        assert not kept.alive()
        assert kept.read("dev")  # what alive() is for: the kept file still reads the namespace
    finally:
        kept.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
