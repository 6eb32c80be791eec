"""netstats._read against the real kernel: a seq_file of many records is read to its end."""

from __future__ import annotations

import os
import socket

from agent import procnet
from agent.netstats import _read


def test_net_tcp_with_more_sockets_than_one_page_is_read_whole() -> None:
    # net/tcp hands out about 27 lines per read(): 60 listeners need several reads.
    socks = []
    try:
        for _ in range(60):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen()
            socks.append(s)
        ports = {s.getsockname()[1] for s in socks}
        # Other sockets of this namespace may come and go meanwhile; ours stay put.
        text = _read(f"/proc/{os.getpid()}/net/tcp")
        seen = {int(line.split()[1].split(":")[1], 16) for line in text.splitlines()[1:]}
        assert ports <= seen, f"{len(ports - seen)} of {len(ports)} listeners missing"
        counts = procnet.count_tcp_states(text)
        assert counts.get("listen", 0) >= len(ports)
    finally:
        for s in socks:
            s.close()
