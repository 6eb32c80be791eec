"""The sinks' one upstream: a closed connection is replaced, a failed dial holds back re-dials for
`redial_after` (on a fake clock), TLS option errors name the key, addresses print as written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exporters.sinks.base import SinkConfigError
from exporters.sinks.upstream import Address, Stream, TlsKeys, Upstream, client_tls, why
from tests.support.toolbox import FakeClock, until

KEYS = TlsKeys("x-ca", "x-cert", "x-key")


async def test_a_connection_the_peer_closed_is_replaced_by_a_new_one() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    up = Upstream(Address("tcp", "127.0.0.1", port), Stream, connect_timeout=10)
    try:
        first, fresh = await up.connection()
        assert fresh and (await up.connection()) == (first, False)  # held and reused
        await until(lambda: accepted, what="the server to accept")
        accepted[0].close()  # the peer goes away: its FIN shows as EOF before our next write
        await accepted[0].wait_closed()
        second, fresh = await up.connection()
        assert fresh and second is not first and not first.usable
    finally:
        await up.close()
        server.close()
        await server.wait_closed()


async def test_after_a_failed_dial_redials_wait_for_redial_after(tmp_path: Path) -> None:
    clock = FakeClock()
    up = Upstream(Address("unix", path=str(tmp_path / "nobody")), Stream, redial_after=2.0, clock=clock)
    assert not up.holding_back
    with pytest.raises(OSError):
        await up.connection()
    assert up.holding_back
    clock.advance(1.9)
    assert up.holding_back
    clock.advance(0.2)
    assert not up.holding_back


async def test_a_failed_handshake_closes_the_new_connection_and_counts_as_a_failed_dial() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen: list[Stream] = []

    async def refuse(conn: Stream) -> None:
        seen.append(conn)
        raise ConnectionError("refused by the handshake")

    clock = FakeClock()
    up = Upstream(Address("tcp", "127.0.0.1", port), Stream, handshake=refuse, redial_after=1.0, clock=clock)
    try:
        with pytest.raises(ConnectionError):
            await up.connection()
        assert up.conn is None and seen[0].writer.is_closing() and up.holding_back
    finally:
        server.close()
        await server.wait_closed()


def test_tls_errors_name_the_key(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    opts = {"x-ca": None, "x-cert": str(cert), "x-key": None}
    with pytest.raises(SinkConfigError, match=r"^log-opt x-key=.* for the demo sink: give both"):
        client_tls("demo", {"x-cert": str(cert)}, opts, KEYS, skip_verify=False)
    opts = {"x-ca": str(tmp_path / "none.pem"), "x-cert": None, "x-key": None}
    with pytest.raises(SinkConfigError, match=r"^log-opt x-ca=.*: no such file"):
        client_tls("demo", {}, opts, KEYS, skip_verify=False)
    opts = {"x-ca": str(cert), "x-cert": None, "x-key": None}
    with pytest.raises(SinkConfigError, match=r"^log-opt x-ca=.*: cannot load"):
        client_tls("demo", {}, opts, KEYS, skip_verify=False)


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (Address("tcp", "127.0.0.1", 24224), "tcp://127.0.0.1:24224"),
        (Address("tcp+tls", "::1", 6514), "tcp+tls://[::1]:6514"),
        (Address("unix", path="/run/f.sock"), "unix:///run/f.sock"),
        (Address(""), "the local syslog socket"),
    ],
)
def test_address_prints_as_written(address: Address, text: str) -> None:
    assert str(address) == text


def test_why_is_short() -> None:
    assert why(TimeoutError()) == "timed out"
    assert why(ConnectionRefusedError(111, "Connection refused")) == "[Errno 111] Connection refused"
    assert why(EOFError()) == "EOFError"
