"""The IPv6 files (net/sockstat6, net/snmp6) are read only where asked (--collector.ipv6), and a
namespace's reads may run in a thread pool: same samples, same order, same error counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config
from agent.collector import Registry
from agent.config import ConfigError
from agent.inventory import Snapshot
from agent.netstats import NetCollector, has_ipv6
from exporters.prometheus import names
from exporters.prometheus.render import Renderer
from tests.support.toolbox import ScriptedFS, captured_procfs
from tests.support.toolbox import container as ctr

HOST_INO = 4026531833
V6 = {"TCP6", "UDP6", "UDPLITE6", "RAW6", "FRAG6"}
LO_ONLY = "00000000000000000000000000000001 01 80 10 80       lo\n"
GLOBAL = "fd000000000000000000000000000002 04 40 00 82     eth0\n"


def test_has_ipv6_means_an_address_beyond_lo() -> None:
    assert not has_ipv6("")
    assert not has_ipv6(LO_ONLY)
    assert has_ipv6(LO_ONLY + GLOBAL)
    assert has_ipv6("fe800000000000007803e5fffec483b7 11 40 20 80 veth807b2c0\n")  # link-local counts


def setup(tmp_path: Path, *, v6_of_b: str = "") -> tuple[ScriptedFS, Snapshot]:
    """Host (IPv6 on its interfaces, as captured) and container b, whose if_inet6 is `v6_of_b`.
    b's v6 files hold garbage: reading them would be an error, so errors == 0 proves no read."""
    b = ctr(1, "b")
    root = captured_procfs(tmp_path, {1: "host", b.pid: "container"})
    net = root / str(b.pid) / "net"
    (net / "if_inet6").write_text(v6_of_b)
    if not v6_of_b:
        (net / "sockstat6").write_text("TCP6: inuse x\n")
        (net / "snmp6").write_text("Udp6InDatagrams x\n")
    return ScriptedFS(procfs=root, links={1: HOST_INO, b.pid: 7}), Snapshot(containers={b.id: b})


def test_auto_reads_the_v6_files_only_where_if_inet6_shows_ipv6_beyond_lo(tmp_path: Path) -> None:
    fs, snap = setup(tmp_path)
    res = NetCollector(fs, mib_fields=names.MIB_FIELDS).collect(snap)
    assert res.errors == 0
    b, host = res.samples
    assert b.owner is not None and host.owner is None
    assert not V6 & set(b.sockstat) and b.udp6 == {}
    assert {"TCP6", "UDP6"} <= set(host.sockstat) and host.udp6["InDatagrams"] >= 0
    # Absent, not 0: b has no ip_version="6" series, the host has them.
    text = Renderer().render("n", "", res, {}, {}, []).text()
    v6_names = {line.split("{")[1].split(",")[0] for line in text.splitlines() if 'ip_version="6"' in line}
    assert v6_names == {'node="n"'} and 'name=""' in text
    assert sum('name="b"' in line and 'ip_version="6"' in line for line in text.splitlines()) == 0
    assert sum('name="b"' in line and 'ip_version="4"' in line for line in text.splitlines()) > 0


def test_auto_with_only_loopback_ipv6_skips_the_v6_files(tmp_path: Path) -> None:
    fs, snap = setup(tmp_path)
    (fs.procfs / "101" / "net" / "if_inet6").write_text(LO_ONLY)
    b, _ = NetCollector(fs).collect(snap).samples
    assert b.udp6 == {} and not V6 & set(b.sockstat)


def test_auto_reads_a_container_with_a_global_address(tmp_path: Path) -> None:
    fs, snap = setup(tmp_path, v6_of_b=LO_ONLY + GLOBAL)
    res = NetCollector(fs).collect(snap)
    b, _ = res.samples
    assert res.errors == 0 and "TCP6" in b.sockstat and "InDatagrams" in b.udp6


def test_always_reads_them_and_never_does_not(tmp_path: Path) -> None:
    fs, snap = setup(tmp_path)
    assert NetCollector(fs, ipv6="always").collect(snap).errors == 1  # b's garbage v6 files were read
    res = NetCollector(fs, ipv6="never").collect(snap)
    assert res.errors == 0
    assert all(s.udp6 == {} and not V6 & set(s.sockstat) for s in res.samples)


def test_always_tolerates_a_namespace_without_the_v6_files(tmp_path: Path) -> None:
    fs, snap = setup(tmp_path)
    for f in ("sockstat6", "snmp6", "if_inet6"):
        (fs.procfs / "101" / "net" / f).unlink()
    res = NetCollector(fs, ipv6="always").collect(snap)
    assert res.errors == 0 and res.samples[0].udp6 == {}


def test_the_mode_is_checked_and_a_bad_one_names_the_key() -> None:
    assert config.load({}, env={}, file_values={}).collector_ipv6 == "auto"
    assert config.load({"collector.ipv6": "never"}, env={}, file_values={}).collector_ipv6 == "never"
    with pytest.raises(ConfigError, match=r"collector\.ipv6"):
        config.load({"collector.ipv6": "sometimes"}, env={}, file_values={})
    with pytest.raises(ValueError, match="ipv6"):
        NetCollector(ScriptedFS(), ipv6="sometimes")


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_a_thread_pool_gives_the_serial_result_in_the_same_order(tmp_path: Path, workers: int) -> None:
    """40 namespaces, one of them unreadable (garbage net/snmp: an error) and one gone (no
    files: vanished): the pool's samples, errors and vanished equal the serial run's."""
    cs = [ctr(i, f"c{i:02d}") for i in range(1, 41)]
    root = captured_procfs(tmp_path, {1: "host", **{c.pid: "container" for c in cs[:-1]}})
    (root / str(cs[5].pid) / "net" / "snmp").write_text("Tcp: CurrEstab\nTcp: x\n")
    links = {1: HOST_INO, **{c.pid: 1000 + i for i, c in enumerate(cs)}}
    fs = ScriptedFS(procfs=root, links=links)
    snap = Snapshot(containers={c.id: c for c in cs})
    serial = NetCollector(fs, mib_fields=names.MIB_FIELDS, workers=1).collect(snap)
    collector = NetCollector(fs, mib_fields=names.MIB_FIELDS, workers=workers)
    pooled = collector.collect(snap)
    # Shutdown releases the threads (App.shutdown → Registry.close); a later collect starts them again.
    assert collector._pool is not None
    threads = list(collector._pool._threads)
    assert threads
    Registry(collector).close()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert collector.collect(snap).samples == pooled.samples
    collector.close()
    assert (serial.errors, serial.vanished) == (pooled.errors, pooled.vanished) == (1, 1)
    assert len(pooled.samples) == 39  # 38 containers and the host
    assert [s.owner.name if s.owner else "host" for s in pooled.samples] == [
        *(c.name for c in cs if c not in (cs[5], cs[-1])),
        "host",
    ]
    assert pooled.samples == serial.samples and pooled.members == serial.members
