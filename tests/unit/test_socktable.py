"""agent/socktable.py: socket tables captured from two real containers, and hand-written lines.

tests/data/proc/connections/: `srv` (10.231.0.10) runs httpd on [::]:8080 and on 127.0.0.1:9000,
binds UDP 0.0.0.0:5353 and [::]:5354 and has one connected UDP socket; `cli` (10.231.0.20) holds
three connections to 10.231.0.10:8080. Both sit on a user-defined bridge, so Docker's embedded
DNS listens on 127.0.0.11 in each. Captured on x86_64 (little-endian words).
"""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

import pytest

from agent import socktable as st
from agent.socktable import Connection, Listener

DATA = Path(__file__).parent.parent / "data" / "proc" / "connections"
little = pytest.mark.skipif(sys.byteorder != "little", reason="captured on a little-endian host")


def table(which: str) -> st.SocketTable:
    t = st.parse_tcp((DATA / which / "tcp").read_text())
    st.parse_tcp((DATA / which / "tcp6").read_text(), t)
    st.parse_udp((DATA / which / "udp").read_text(), t)
    st.parse_udp((DATA / which / "udp6").read_text(), t)
    return t


def kernel_hex(addr: str) -> str:
    """An address as the kernel prints it: its bytes as native-order 32-bit words, %08X each."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    raw = socket.inet_pton(fam, addr)
    return "".join(f"{w:08X}" for w in struct.unpack(f"={len(raw) // 4}I", raw))


def line(local: str, lport: int, remote: str, rport: int, state: str) -> str:
    return f"   0: {kernel_hex(local)}:{lport:04X} {kernel_hex(remote)}:{rport:04X} {state} 0:0 00:0 0 0 0 1"


HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


@little
def test_server_captured() -> None:
    t = table("srv")
    assert t.listeners == {
        Listener("tcp", "::", 8080): 1,
        Listener("tcp", "127.0.0.1", 9000): 1,
        Listener("udp", "0.0.0.0", 5353): 1,
        Listener("udp", "::", 5354): 1,
    }  # Docker's DNS on 127.0.0.11 left out; the connected UDP socket is not a listener
    # IPv4-mapped addresses of the v6 socket come out as IPv4.
    assert set(t.connections) == {
        Connection("10.231.0.10", 8080, "10.231.0.20", p) for p in (0x9AD6, 0x9AC6, 0x9AC8)
    }
    assert t.states["listen"] == 3 and t.states["established"] == 3  # the DNS listener is a socket
    assert t.tcp_listen_ports() == {8080, 9000}


@little
def test_client_captured() -> None:
    t = table("cli")
    assert t.listeners == {}
    assert {(c.remote, c.remote_port) for c in t.connections} == {("10.231.0.10", 8080)}
    assert len(t.connections) == 3 and all(c.local == "10.231.0.20" for c in t.connections)


def test_hand_written_lines_any_byte_order() -> None:
    text = HEADER + "\n".join(
        [
            line("0.0.0.0", 80, "0.0.0.0", 0, "0A"),
            line("0.0.0.0", 80, "0.0.0.0", 0, "0A"),  # SO_REUSEPORT: two sockets, one listener
            line("10.0.0.2", 80, "10.0.0.3", 41000, "01"),
            line("10.0.0.2", 80, "10.0.0.4", 41000, "06"),  # TIME-WAIT: counted, not a connection
            line("127.0.0.11", 35000, "0.0.0.0", 0, "0A"),
            "garbage",
            "",
        ]
    )
    t = st.parse_tcp(text)
    assert t.listeners == {Listener("tcp", "0.0.0.0", 80): 2}
    assert t.connections == [Connection("10.0.0.2", 80, "10.0.0.3", 41000)]
    assert (t.states["listen"], t.states["established"], t.states["time_wait"]) == (3, 1, 1)
    v6 = HEADER + line("fd00::2", 443, "fd00::9", 50000, "01") + "\n" + line("::1", 8443, "::", 0, "0A")
    t6 = st.parse_tcp(v6)
    assert t6.connections == [Connection("fd00::2", 443, "fd00::9", 50000)]
    lst = next(iter(t6.listeners))
    assert lst.loopback and not lst.wildcard


def test_udp_connected_and_unbound_are_not_listeners() -> None:
    text = HEADER + "\n".join(
        [
            line("0.0.0.0", 53, "0.0.0.0", 0, "07"),
            line("10.0.0.2", 40000, "10.0.0.9", 53, "01"),  # connected: a client's socket
            line("0.0.0.0", 0, "0.0.0.0", 0, "07"),  # not bound to a port yet
            line("0.0.0.0", 35044, "0.0.0.0", 0, "07"),  # sendto() unbound: an ephemeral port
            line("::", 60999, "::", 0, "07"),  # the top of the range
            line("::", 32767, "::", 0, "07"),  # just below it: a server's choice
        ]
    )
    assert st.parse_udp(text).listeners == {
        Listener("udp", "0.0.0.0", 53): 1,
        Listener("udp", "::", 32767): 1,
    }


def test_decode_address_rejects_odd_lengths() -> None:
    with pytest.raises(ValueError):
        st.decode_address("0100")


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 4
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.17.0.0/16 2 0 2
           |-- 172.17.0.0
              /16 link UNICAST
           |-- 172.17.0.1
              /32 host LOCAL
     |-- 192.0.2.7
        /24 link UNICAST
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 4
           |-- 127.0.0.1
              /32 host LOCAL
"""


def test_fib_trie_local_addresses() -> None:
    # 127.0.0.0 is /8 host LOCAL (the loopback route), not an address; a leaf may carry two routes.
    assert st.parse_fib_trie_local(FIB_TRIE) == {"127.0.0.1", "172.17.0.1", "192.0.2.7"}


def test_fib_trie_of_this_host_has_loopback() -> None:
    text = Path("/proc/self/net/fib_trie").read_text()
    assert "127.0.0.1" in st.parse_fib_trie_local(text)
