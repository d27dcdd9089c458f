"""The transport every HTTP server answers through: a response's head and body leave in one send."""

from __future__ import annotations

import asyncio
import socket

import pytest

from ticketing_common.http_server import OneSendPerTurn

pytestmark = pytest.mark.unit


async def connected() -> tuple[asyncio.Transport, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    return transport, theirs


async def sends_seen(transport: asyncio.Transport, writes: list[bytes]) -> list[bytes]:
    """The writes ``transport`` itself received after ``writes`` were made through the wrapper in one turn."""
    written: list[bytes] = []
    real_write = transport.write
    transport.write = lambda data: (written.append(bytes(data)), real_write(data))  # type: ignore[method-assign]
    wrapped = OneSendPerTurn(transport, asyncio.get_running_loop())
    for data in writes:
        wrapped.write(data)
    await asyncio.sleep(0)
    return written


async def test_writes_made_in_one_turn_reach_the_socket_as_one_send() -> None:
    transport, peer = await connected()
    try:
        written = await sends_seen(transport, [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"{}"])

        assert written == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        assert peer.recv(1024) == written[0]
    finally:
        transport.close()
        peer.close()


async def test_close_sends_what_is_pending_first_and_later_writes_are_dropped() -> None:
    transport, peer = await connected()
    wrapped = OneSendPerTurn(transport, asyncio.get_running_loop())
    wrapped.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    wrapped.close()
    wrapped.write(b"too late")
    await asyncio.sleep(0.01)

    assert peer.recv(1024) == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert peer.recv(1024) == b""  # closed: nothing after it
    peer.close()


async def test_the_write_buffer_size_counts_what_is_pending() -> None:
    transport, peer = await connected()
    try:
        wrapped = OneSendPerTurn(transport, asyncio.get_running_loop())
        wrapped.write(b"x" * 10)

        assert wrapped.get_write_buffer_size() == 10 + transport.get_write_buffer_size()
        assert wrapped.get_extra_info("socket") is transport.get_extra_info("socket")
    finally:
        transport.close()
        peer.close()
