"""The collector's hot path, twice: the C module agent/_procnet.c where it was built, and the
pure-Python parsers of agent/procnet.py. Both read a file whole and return the same values for
the same bytes (tests/unit/test_fastproc.py runs both). The C one is the default: it costs about
a fifth of the Python parse per namespace (bench/RESULTS.md, `bench/pool.py`), and releases the
GIL around each read. `--collector.parser=python` picks the Python one; `pip install .` without a C
compiler builds no C module, and the agent says at start which one it runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Protocol

from agent import procnet
from agent.nsfiles import Opened

_CHUNK = 65536

try:
    from agent import _procnet as _c  # type: ignore[attr-defined]

    C_MODULE: ModuleType | None = _c
except ImportError:  # built without a compiler: the Python parsers below
    C_MODULE = None


# A namespace's files as read: net/dev, snmp, netstat, sockstat, if_inet6 (None where not read),
# sockstat6 and snmp6 (None where IPv6 is not read or off).
Raw = tuple[bytes, bytes, bytes, bytes, bytes | None, bytes | None, bytes | None]

# devices, MIB fields (net/snmp and net/netstat), sockstat (+ sockstat6), Udp6 fields
Namespace = tuple[
    dict[str, procnet.DevCounters], dict[str, dict[str, int]], dict[str, dict[str, int]], dict[str, int]
]


class Files(Protocol):
    """One namespace's files by name ("dev", "snmp"...): agent/nsfiles.py's Opened or Kept."""

    def read(self, name: str, single: bool = False) -> bytes: ...


class Parser(Protocol):
    """What NetCollector reads each namespace with."""

    name: str

    def read(self, path: str, single: bool = False) -> bytes:
        """The whole file; OSError (FileNotFoundError, ProcessLookupError...) as os.open/read."""
        ...

    def pread(self, fd: int, single: bool = False) -> bytes:
        """The whole file behind an open descriptor, generated afresh (read from offset 0)."""
        ...

    def net_dev(self, data: bytes) -> dict[str, procnet.DevCounters]: ...

    def pick_mib(self, data: bytes, wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]: ...

    def sockstat(
        self, data: bytes, wanted: Mapping[str, Sequence[str]] | None = None
    ) -> dict[str, dict[str, int]]: ...

    def snmp6(self, data: bytes, prefix: str) -> dict[str, int]: ...

    def has_ipv6(self, data: bytes) -> bool: ...

    def namespace(
        self,
        files: Files | str,
        wanted: Mapping[str, Sequence[str]] | None,
        ipv6: str,
        sockstat: Mapping[str, Sequence[str]] | None = None,
    ) -> Namespace:
        """What NetCollector reads of a namespace's `files` (or those at a prefix
        "<procfs>/<pid>/net/", opened at each read): net/dev,
        the wanted net/snmp + net/netstat fields (None: every field, for tests and tools),
        net/sockstat (the `sockstat` protocols and fields; None: all), and by `ipv6` ("never",
        "always", "auto": where net/if_inet6 shows IPv6 beyond lo) net/sockstat6 and snmp6's Udp6
        fields, absent where IPv6 is off. OSError (naming the file) where a base file cannot be
        read. read_namespace, then parse_namespace."""
        ...

    def read_namespace(self, files: Files, ipv6: str) -> Raw:
        """The files namespace() parses, as they are (the IPv6 ones by `ipv6`)."""
        ...

    def parse_namespace(
        self,
        raw: Raw,
        wanted: Mapping[str, Sequence[str]] | None,
        sockstat: Mapping[str, Sequence[str]] | None = None,
    ) -> Namespace:
        """namespace()'s values from read_namespace's bytes."""
        ...


def read_bytes(path: str, single: bool = False) -> bytes:
    """The whole file, with raw reads: no buffered text layer on the hot path.

    `single`: a file the kernel prints as one record (single_open: net/snmp, netstat, sockstat{,6},
    snmp6): a read shorter than the buffer returned all of it, so the read for EOF is skipped (one
    syscall of six per namespace). Others (seq_file: net/dev, net/tcp) hand out a page per read:
    only an empty read is their end."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return pread_bytes(fd, single)  # on a new descriptor, the same reads (as the C slurp)
    finally:
        os.close(fd)


def pread_bytes(fd: int, single: bool = False) -> bytes:
    """read_bytes of an open descriptor, from offset 0: a seq_file generates the file afresh
    there, so a /proc file kept open reads like a new one (agent/nsfiles.py)."""
    chunks = []
    off = 0
    while True:
        b = os.pread(fd, _CHUNK, off)
        if not b:
            break
        chunks.append(b)
        off += len(b)
        if single and len(b) < _CHUNK:
            break
    return b"".join(chunks)


def has_ipv6_text(if_inet6: str) -> bool:
    """net/if_inet6 lists an address on an interface other than lo. Docker disables IPv6 in a
    container not attached to an IPv6 network (disable_ipv6=1): its if_inet6 is empty."""
    return any(line.split()[-1:] not in ([], ["lo"]) for line in if_inet6.split("\n"))


def _text(data: bytes) -> str:
    return data.decode("ascii", "replace")


class PythonParser:
    """agent/procnet.py's parsers: the fallback, and the reference the C module is tested against."""

    name = "python"

    def read(self, path: str, single: bool = False) -> bytes:
        return read_bytes(path, single)

    def pread(self, fd: int, single: bool = False) -> bytes:
        return pread_bytes(fd, single)

    def net_dev(self, data: bytes) -> dict[str, procnet.DevCounters]:
        return procnet.parse_net_dev(_text(data))

    def pick_mib(self, data: bytes, wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
        return procnet.pick_net_snmp(_text(data), wanted)

    def sockstat(
        self, data: bytes, wanted: Mapping[str, Sequence[str]] | None = None
    ) -> dict[str, dict[str, int]]:
        return procnet.parse_sockstat(_text(data), wanted)

    def snmp6(self, data: bytes, prefix: str) -> dict[str, int]:
        return procnet.pick_net_snmp6(_text(data), prefix)

    def has_ipv6(self, data: bytes) -> bool:
        return has_ipv6_text(_text(data))

    def namespace(
        self,
        files: Files | str,
        wanted: Mapping[str, Sequence[str]] | None,
        ipv6: str,
        sockstat: Mapping[str, Sequence[str]] | None = None,
    ) -> Namespace:
        """File by file, with this parser's read and parse methods (CParser's too). One C call for
        the whole namespace was measured: 3 % less CPU (bench/pool.py), not worth its 170 lines."""
        f = Opened(files, self) if isinstance(files, str) else files
        return self.parse_namespace(self.read_namespace(f, ipv6), wanted, sockstat)

    def read_namespace(self, f: Files, ipv6: str) -> Raw:
        dev, snmp, netstat = f.read("dev"), f.read("snmp", True), f.read("netstat", True)
        socks = f.read("sockstat", True)
        want6 = ipv6 == "always"
        if_inet6 = None
        if ipv6 == "auto":
            try:
                if_inet6 = f.read("if_inet6")
            except (FileNotFoundError, ProcessLookupError):  # IPv6 off in the whole kernel
                pass
            else:
                want6 = self.has_ipv6(if_inet6)
        s6 = u6 = None
        if want6:
            try:  # both, or neither: IPv6 off in this namespace, the files do not exist
                s6, u6 = f.read("sockstat6", True), f.read("snmp6", True)
            except (FileNotFoundError, ProcessLookupError):
                s6 = u6 = None
        return dev, snmp, netstat, socks, if_inet6, s6, u6

    def parse_namespace(
        self,
        raw: Raw,
        wanted: Mapping[str, Sequence[str]] | None,
        sockstat: Mapping[str, Sequence[str]] | None = None,
    ) -> Namespace:
        dev, snmp, netstat, socks_raw, _, s6, u6 = raw
        mib = self._mib(snmp, wanted)
        mib.update(self._mib(netstat, wanted))
        socks = self.sockstat(socks_raw, sockstat)
        udp6: dict[str, int] = {}
        if s6 is not None and u6 is not None:
            socks.update(self.sockstat(s6, sockstat))
            udp6 = self.snmp6(u6, "Udp6")
        return self.net_dev(dev), mib, socks, udp6

    def _mib(self, data: bytes, wanted: Mapping[str, Sequence[str]] | None) -> dict[str, dict[str, int]]:
        return procnet.parse_net_snmp(_text(data)) if wanted is None else self.pick_mib(data, wanted)


class CParser(PythonParser):
    """agent/_procnet.c: the same results, without the text layer and Python's loops."""

    name = "c"

    def __init__(self, module: ModuleType) -> None:
        self._m = module

    def read(self, path: str, single: bool = False) -> bytes:
        out: bytes = self._m.read_file(path, single)
        return out

    def pread(self, fd: int, single: bool = False) -> bytes:
        out: bytes = self._m.pread_fd(fd, single)
        return out

    def net_dev(self, data: bytes) -> dict[str, procnet.DevCounters]:
        out: dict[str, procnet.DevCounters] = self._m.parse_net_dev(data, procnet.DevCounters)
        return out

    def pick_mib(self, data: bytes, wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = self._m.pick_net_snmp(data, wanted)
        return out

    def sockstat(
        self, data: bytes, wanted: Mapping[str, Sequence[str]] | None = None
    ) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = self._m.parse_sockstat(data, wanted)
        return out

    def snmp6(self, data: bytes, prefix: str) -> dict[str, int]:
        out: dict[str, int] = self._m.pick_net_snmp6(data, prefix)
        return out

    def has_ipv6(self, data: bytes) -> bool:
        return bool(self._m.has_ipv6(data))


PYTHON: Parser = PythonParser()
C: Parser | None = CParser(C_MODULE) if C_MODULE is not None else None


def choose(mode: str = "auto") -> Parser:
    """--collector.parser: "c", "python", or "auto" (c where it was built). The config refuses
    "c" where it was not built (agent/config.py), so here that is a caller's bug."""
    if mode == "python" or (mode == "auto" and C is None):
        return PYTHON
    if mode in ("auto", "c") and C is not None:
        return C
    raise ValueError(f"collector.parser: {mode!r} (c built: {C is not None})")
