"""agent/fastproc.py: the C module (agent/_procnet.c) returns exactly what the pure-Python parsers
return, on captured files, on the real kernel's files and on thousands of mutated ones; errors
are the same kinds; the collector gives the same samples with either; the choice is explicit."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from agent import config, fastproc, procnet
from agent.config import ConfigError
from agent.inventory import Snapshot
from agent.netstats import NetCollector
from exporters.prometheus import names
from tests.support.toolbox import CAPTURED_PROC, ScriptedFS, captured_procfs
from tests.support.toolbox import container as ctr


def test_the_c_module_is_built_where_the_tests_run() -> None:
    # `pip install -e .` (tests/run.sh) builds it in place; were the build to fail quietly
    # (setup.py: optional=True), every C case below would be skipped, so this one fails instead.
    assert fastproc.C is not None, "agent._procnet was not built: is gcc installed?"


C = fastproc.C if fastproc.C is not None else fastproc.PYTHON
GLOBAL_V6 = "fd000000000000000000000000000002 04 40 00 82     eth0\n"
PY = fastproc.PYTHON
WANTED = names.MIB_FIELDS


# As the exporter asks (names.SOCKSTAT_FIELDS), and with what else a mapping may hold.
SOCKSTAT_WANTED = {"TCP": ("inuse", "tw"), "UDP": ("inuse",), "TCP6": ("inuse",), "UDP6": ("inuse",)}


def calls(data: bytes) -> dict[str, Callable[[fastproc.Parser], object]]:
    """Every parse the collector makes, on `data`."""
    return {
        "net_dev": lambda p: p.net_dev(data),
        "pick_mib": lambda p: p.pick_mib(data, WANTED),
        "pick_mib_all_of_tcp": lambda p: p.pick_mib(data, {"Tcp": ("MaxConn", "CurrEstab", "Nope")}),
        "sockstat": lambda p: p.sockstat(data),
        "sockstat_picked": lambda p: p.sockstat(data, SOCKSTAT_WANTED),
        "sockstat_picked_odd": lambda p: p.sockstat(data, {"TCP": ["tw", "nope"], "UDP": (), "RAW": None}),
        "snmp6": lambda p: p.snmp6(data, "Udp6"),
        "has_ipv6": lambda p: p.has_ipv6(data),
    }


def outcome(f: Callable[[fastproc.Parser], object], p: fastproc.Parser) -> object:
    try:
        return f(p)
    except (ValueError, IndexError) as exc:  # what int() and indexing raise in the Python parsers
        return type(exc)


def same(data: bytes) -> None:
    for name, f in calls(data).items():
        assert outcome(f, C) == outcome(f, PY), (name, data)


@pytest.mark.parametrize("kind", ["container", "host"])
def test_same_results_on_the_captured_files(kind: str) -> None:
    for path in sorted((CAPTURED_PROC / kind).iterdir()):
        same(path.read_bytes())
    dev = C.net_dev((CAPTURED_PROC / kind / "dev").read_bytes())
    assert dev and all(type(v) is procnet.DevCounters for v in dev.values())
    assert C.pick_mib((CAPTURED_PROC / kind / "snmp").read_bytes(), WANTED)["Tcp"]


def test_same_results_on_this_process_namespace_files() -> None:
    net = f"/proc/{os.getpid()}/net/"
    for name in ("dev", "snmp", "netstat", "sockstat", "sockstat6", "snmp6", "if_inet6"):
        try:
            data = PY.read(net + name)
        except FileNotFoundError:  # IPv6 off in this kernel
            continue
        assert C.read(net + name, True) != b"" or data == b""
        same(data)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few edits drawn from what a kernel line is made of (and a little more)."""
    # str.split() and splitlines() also cut at \r \v \f and \x1c-\x1f; non-ASCII decodes to U+FFFD.
    alphabet = b"0123456789 \t\n:-abXYZlo\r\v\f\x1c\x1f\xff"
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            del b[i : i + rng.randint(1, 20)]
        elif op == 1:
            b[i:i] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
        elif op == 2 and b:
            b[min(i, len(b) - 1)] = rng.choice(alphabet)
        else:  # a huge number, or a negative one, where a value was
            b[i:i] = rng.choice([b" 18446744073709551616", b" -5", b" 99999999999999999999999"])
    return bytes(b)


@pytest.mark.parametrize("kind", ["container", "host"])
def test_same_results_on_mutated_files(kind: str) -> None:
    rng = random.Random(14)  # fixed: a failure names its input and repeats
    files = [
        p.read_bytes() for p in sorted((CAPTURED_PROC / kind).iterdir()) if p.name not in ("tcp", "tcp6")
    ]
    for _ in range(3000):
        same(mutate(rng, rng.choice(files)))


def test_edge_inputs() -> None:
    for data in (
        b"",
        b"\n",
        b"Tcp: MaxConn\nTcp: -1\n",
        b"Tcp: MaxConn CurrEstab\nTcp: -1",  # no final newline
        b"Tcp: MaxConn CurrEstab\n",  # a names line without values
        b"Ip: a\nIp: 1\nTcp: CurrEstab CurrEstab\nTcp: 1 2\n",  # the last column of a name wins
        b"x\ny\n  eth0: " + b" ".join(b"%d" % i for i in range(16)) + b"\n",
        b"x\ny\neth0:" + b" 1" * 15 + b"\n",  # 15 values: skipped
        b"Ip6InReceives 1\nUdp6InDatagrams                 \t7\nUdp6 3\n",  # name == prefix
        b"Ip6InReceives 1\nUdp6InDatagrams\t7\nUdpLite6InDatagrams 2\n",  # no space: int("")
        b"TCP: inuse 1 orphan\nUDP: inuse x\n",
        b"fe80 02 40 20 80 lo\n\n",
        b"Tcp: " + b" ".join(b"F%d" % i for i in range(700)) + b"\nTcp: " + b" 1" * 700 + b"\n",
        b"TCP: inuse 1\rUDP: inuse 2\r\nRAW: inuse 3\n",  # splitlines() cuts at \r too
    ):
        same(data)
    # A wanted column past the 512th (an early version stopped there): the last of a name wins.
    wide = (
        b"Tcp: "
        + b" ".join(b"F%d" % i for i in range(700))
        + b" F10\nTcp: "
        + b" ".join(b"%d" % i for i in range(701))
        + b"\n"
    )
    assert C.pick_mib(wide, {"Tcp": ("F10", "F599")}) == {"Tcp": {"F10": 700, "F599": 599}}
    assert PY.pick_mib(wide, {"Tcp": ("F10", "F599")}) == {"Tcp": {"F10": 700, "F599": 599}}


def test_net_dev_rows_are_only_built_as_plain_tuple_classes() -> None:
    # A struct sequence has hidden fields past its 8 items: building one here would read beyond them.
    assert fastproc.C_MODULE is not None
    dev = (CAPTURED_PROC / "container" / "dev").read_bytes()
    with pytest.raises(TypeError):
        fastproc.C_MODULE.parse_net_dev(dev, time.struct_time)
    assert fastproc.C_MODULE.parse_net_dev(dev)["eth0"][0] == 52620  # plain tuples by default


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 131072, 131073, 300_000])
@pytest.mark.parametrize("single", [False, True])
def test_read_file_at_and_around_the_buffer_sizes(tmp_path: Path, size: int, single: bool) -> None:
    """The C reader reads into the space left and grows only when full (64 KiB, then doubling)."""
    f = tmp_path / "f"
    f.write_bytes(bytes(range(251)) * (size // 251) + bytes(size % 251))
    assert C.read(str(f), single) == PY.read(str(f), single) == f.read_bytes()


def test_read_file_returns_every_byte_and_names_a_missing_path(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * 1000)  # several 64 KiB reads
    assert C.read(str(big)) == PY.read(str(big)) == big.read_bytes()
    with pytest.raises(FileNotFoundError) as err:
        C.read(str(tmp_path / "gone"))
    assert err.value.filename == str(tmp_path / "gone")


@pytest.mark.parametrize("ipv6", ["always", "auto", "never"])
def test_the_collector_gives_the_same_samples_with_either_parser(tmp_path: Path, ipv6: str) -> None:
    b, c, gone = ctr(1, "b"), ctr(2, "c"), ctr(3, "gone")
    root = captured_procfs(tmp_path, {1: "host", b.pid: "container", c.pid: "container"})
    for name in ("sockstat6", "snmp6"):  # c: IPv6 off in its namespace, the files do not exist
        (root / str(c.pid) / "net" / name).unlink()
    (root / str(c.pid) / "net" / "if_inet6").write_text(GLOBAL_V6)  # but auto would want them
    fs = ScriptedFS(procfs=root, links={1: 4026531833, b.pid: 7, c.pid: 8, gone.pid: 9})
    snap = Snapshot(containers={x.id: x for x in (b, c, gone)})
    got = {p.name: NetCollector(fs, mib_fields=WANTED, parser=p, ipv6=ipv6).collect(snap) for p in (C, PY)}
    assert got[C.name] == replace(got[PY.name], duration=got[C.name].duration)
    res = got[C.name]
    assert len(res.samples) == 3 and res.vanished == 1 and res.errors == 0
    by_owner = {s.owner.name if s.owner else "": s for s in res.samples}
    assert ("TCP6" in by_owner[""].sockstat) == (ipv6 != "never")
    assert "TCP6" not in by_owner["c"].sockstat and by_owner["c"].udp6 == {}


def test_read_namespace_names_the_file_it_could_not_read(tmp_path: Path) -> None:
    root = captured_procfs(tmp_path, {5: "container"})
    (root / "5" / "net" / "netstat").unlink()
    for p in (C, PY):
        with pytest.raises(FileNotFoundError) as err:
            p.namespace(f"{root}/5/net/", WANTED, "auto")
        assert err.value.filename == f"{root}/5/net/netstat"
    (root / "5" / "net" / "if_inet6").unlink()  # IPv6 off in the whole kernel: no v6 files read
    (root / "5" / "net" / "netstat").write_bytes((CAPTURED_PROC / "container" / "netstat").read_bytes())
    assert C.namespace(f"{root}/5/net/", WANTED, "auto") == PY.namespace(f"{root}/5/net/", WANTED, "auto")
    assert C.namespace(f"{root}/5/net/", WANTED, "auto")[3] == {}


def test_the_parser_is_chosen_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fastproc.choose("python") is fastproc.PYTHON
    assert fastproc.choose("auto") is fastproc.C is fastproc.choose("c")
    cfg = config.load({"collector.parser": "python"}, env={})
    assert cfg.collector_parser == "python"
    with pytest.raises(ConfigError, match=r"--collector\.parser: 'rust' is invalid"):
        config.load({"collector.parser": "rust"}, env={})
    monkeypatch.setattr(fastproc, "C", None)  # as where no compiler built it
    assert fastproc.choose("auto") is fastproc.PYTHON
    with pytest.raises(ConfigError, match=r"collector\.parser: 'c', but the C module .* was not built"):
        config.load({}, env={"DOCKWATCH_COLLECTOR_PARSER": "c"})
