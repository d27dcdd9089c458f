"""The flash sale's HTTP client against real servers on 127.0.0.1: uvicorn as the services run it, and a scripted
asyncio server for what uvicorn never does on its own (chunked bodies, closing a connection, never answering)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from ticketing_bench import http1
from ticketing_bench.client import User
from ticketing_common.http_server import server_config

BUYER = User("u1", "b@example.com", "session=abc.def")


# -- uvicorn, configured as every service is ----------------------------------------------------------------------


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with what it received, and where from (the client's port names its connection)."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/signup":
        status, extra = 201, [(b"set-cookie", b"session=new.one; Path=/; HttpOnly"), (b"set-cookie", b"other=1")]
    else:
        status, extra = (404 if scope["path"] == "/missing" else 200), []
    answer = json.dumps(
        {
            "method": scope["method"],
            "target": scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else ""),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            "body": body.decode(),
            "port": scope["client"][1],
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def uvicorn_server() -> AsyncIterator[str]:
    # IPPROTO_TCP, as the sockets asyncio makes itself: its transports set TCP_NODELAY only on those (with
    # socket.socket()'s protocol 0, Nagle's algorithm would hold uvicorn's body behind its head for ~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(echo_app, host="127.0.0.1", port=0, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def test_keep_alive_one_connection_serves_every_sequential_request() -> None:
    async with uvicorn_server() as base, http1.Pool(base, 4) as pool:
        replies = [await pool.call("GET", base + f"/tickets?limit={i}") for i in range(20)]
    assert [r.status for r in replies] == [200] * 20
    assert replies[7].body["target"] == "/tickets?limit=7"
    assert len({r.body["port"] for r in replies}) == 1
    assert pool.connections_opened == 1
    assert all(r.seconds > 0 for r in replies)


async def test_concurrent_calls_use_at_most_the_pools_connections_and_keep_them() -> None:
    async with uvicorn_server() as base, http1.Pool(base, 4) as pool:
        replies = await asyncio.gather(*(pool.call("GET", "/x") for _ in range(40)))
        again = await asyncio.gather(*(pool.call("GET", "/x") for _ in range(40)))
    assert {r.status for r in replies + again} == {200}
    assert len({r.body["port"] for r in replies + again}) == pool.connections_opened <= 4


async def test_a_post_carries_its_json_body_and_the_users_session_cookie() -> None:
    async with uvicorn_server() as base, http1.Pool(base, 1) as pool:
        reply = await pool.call("POST", "/api/orders", user=BUYER, json={"ticketId": "t1"}, headers={"X-Try": "1"})
        empty = await pool.call("POST", "/api/nothing")
    sent = reply.body
    assert sent["method"] == "POST"
    assert json.loads(sent["body"]) == {"ticketId": "t1"}
    assert sent["headers"]["cookie"] == "session=abc.def"
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["headers"]["x-try"] == "1"
    assert sent["headers"]["host"] == base.removeprefix("http://")
    assert empty.body["headers"]["content-length"] == "0"


async def test_a_sign_up_answer_carries_its_cookies_like_client_call() -> None:
    async with uvicorn_server() as base, http1.Pool(base, 1) as pool:
        signed_up = await pool.call("POST", "/signup", json={"email": "a@example.com"})
        as_user = await pool.call("POST", "/signup", user=BUYER, json={})
        missing = await pool.call("GET", "/missing")
        raw = await pool.call("GET", "/x", decode=False)
    assert signed_up.status == 201
    assert signed_up.body["__cookie"] == ["session=new.one; Path=/; HttpOnly", "other=1"]
    assert signed_up.body["method"] == "POST"
    assert "__cookie" not in as_user.body
    assert missing.status == 404
    assert isinstance(raw.body, bytes)
    assert json.loads(raw.body)["target"] == "/x"


async def test_only_its_own_origin_is_called() -> None:
    async with http1.Pool("http://127.0.0.1:9", 1) as pool:
        with pytest.raises(ValueError, match="is not on"):
            await pool.call("GET", "http://example.com/x")
        with pytest.raises(ValueError, match="is not on"):
            await pool.call("GET", "http://127.0.0.1:99/x")
    with pytest.raises(ValueError, match="not an origin"):
        http1.Pool("http://127.0.0.1:9/api", 1)


# -- a scripted server ------------------------------------------------------------------------------------------

Script = Callable[[int, bytes], Awaitable[tuple[bytes, str]]]  # (request number, request) -> (answer, then)


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that answers each request as ``script`` says; then "keep" (the connection), "close" it, or
    "hang" (read on, never answer). Yields its origin and, per connection accepted, the requests it read."""
    connections: list[int] = []
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        connections.append(0)
        me = len(connections) - 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                connections[me] += 1
                served += 1
                answer, then = await script(served, request)
                writer.write(answer)
                await writer.drain()
                if then == "close":
                    return
                if then == "hang":
                    await reader.read()
                    return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", connections
    finally:
        server.close()
        await server.wait_closed()


def ok(body: bytes = b'{"ok": true}', *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"".join(h + b"\r\n" for h in extra)
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


async def test_a_chunked_body_is_joined_and_the_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        b'7\r\n{"ticke\r\n'
        b'A;name=value\r\nts": [1, 2\r\n'
        b"2\r\n]}\r\n"
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )

    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        return (chunked if n % 2 else ok()), "keep"

    async with scripted(script) as (base, connections), http1.Pool(base, 1) as pool:
        replies = [await pool.call("GET", "/api/tickets") for _ in range(4)]
    assert [r.body for r in replies] == [{"tickets": [1, 2]}, {"ok": True}] * 2
    assert connections == [4]


async def test_a_body_without_length_runs_to_the_close_and_204_has_none() -> None:
    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        if n == 1:
            return b"HTTP/1.1 204 No Content\r\n\r\n", "keep"
        if n == 2:
            return b"HTTP/1.0 200 OK\r\n\r\n" + b'{"until": "close"}', "close"
        return ok(), "keep"

    async with scripted(script) as (base, connections), http1.Pool(base, 1) as pool:
        empty = await pool.call("DELETE", "/x")
        to_close = await pool.call("GET", "/x")
        after = await pool.call("GET", "/x")
    assert (empty.status, empty.body) == (204, None)
    assert to_close.body == {"until": "close"}
    assert after.body == {"ok": True}
    assert connections == [2, 1]


async def test_connection_close_from_the_server_is_honoured() -> None:
    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        return ok(b"{}", b"Connection: close"), "close"

    async with scripted(script) as (base, connections), http1.Pool(base, 2) as pool:
        for _ in range(3):
            assert (await pool.call("POST", "/api/orders", json={})).status == 200
    assert connections == [1, 1, 1]
    assert pool.retries == 0


async def test_a_connection_the_server_closed_while_idle_is_replaced_before_anything_is_sent() -> None:
    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        return ok(), "close"  # closes without saying so, as uvicorn does after its keep-alive timeout

    async with scripted(script) as (base, connections), http1.Pool(base, 1) as pool:
        await pool.call("POST", "/api/orders", json={})
        await asyncio.sleep(0.05)  # the close has arrived: the connection is seen closed, a POST is safe
        reply = await pool.call("POST", "/api/orders", json={})
    assert reply.status == 200
    assert connections == [1, 1]
    assert pool.retries == 0


async def test_a_connection_closed_unanswered_retries_a_get_but_not_a_post() -> None:
    """The server closes as the request arrives, before answering: a GET goes again on a new connection; a POST
    may have been handled, so it fails."""
    closing = asyncio.Event()

    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        if closing.is_set():
            closing.clear()
            return b"", "close"
        return ok(), "keep"

    async with scripted(script) as (base, connections), http1.Pool(base, 1) as pool:
        await pool.call("GET", "/x")
        closing.set()
        reply = await pool.call("GET", "/x")
        assert reply.body == {"ok": True}
        assert pool.retries == 1
        closing.set()
        with pytest.raises(http1.ConnectionClosed, match="before any answer"):
            await pool.call("POST", "/api/orders", json={})
        assert (await pool.call("POST", "/api/orders", json={})).status == 200
    assert connections == [2, 2, 1]


async def test_a_connection_idle_too_long_is_not_reused() -> None:
    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        return ok(), "keep"

    async with scripted(script) as (base, connections), http1.Pool(base, 1, idle_seconds=0.05) as pool:
        await pool.call("GET", "/x")
        await pool.call("GET", "/x")
        await asyncio.sleep(0.1)
        await pool.call("GET", "/x")
    assert connections == [2, 1]


async def test_a_server_that_never_answers_times_out_and_its_connection_is_dropped() -> None:
    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        return (b"", "hang") if n == 1 else (ok(), "keep")

    async with scripted(script) as (base, connections), http1.Pool(base, 1, timeout=0.2) as pool:
        with pytest.raises(TimeoutError):
            await pool.call("GET", "/slow")
        assert isinstance(TimeoutError(), http1.ERRORS)
        assert (await pool.call("GET", "/x")).body == {"ok": True}
    assert connections == [1, 1]


async def test_a_body_running_to_the_close_that_stalls_times_out_rather_than_come_back_cut() -> None:
    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        return b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"tickets": [', "hang"

    async with scripted(script) as (base, _), http1.Pool(base, 1, timeout=0.2) as pool:
        with pytest.raises(TimeoutError):
            await pool.call("GET", "/x")


async def test_a_call_that_ends_after_the_pool_closed_does_not_keep_its_connection() -> None:
    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        await asyncio.sleep(0.05)
        return ok(), "keep"

    async with scripted(script) as (base, _):
        pool = http1.Pool(base, 1)
        pending = asyncio.create_task(pool.call("GET", "/x"))
        await asyncio.sleep(0.01)
        await pool.close()
        assert (await pending).status == 200
        assert not pool._idle


async def test_an_answer_cut_short_or_not_http_fails_and_the_next_call_recovers() -> None:
    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        if n == 1:
            return b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"half', "close"
        if n == 2:
            return b"SSH-2.0-OpenSSH\r\n\r\n", "close"
        return ok(), "keep"

    async with scripted(script) as (base, _), http1.Pool(base, 1) as pool:
        with pytest.raises(http1.ConnectionClosed, match="middle of the body"):
            await pool.call("GET", "/x")
        with pytest.raises(http1.ProtocolError):
            await pool.call("GET", "/x")
        assert (await pool.call("GET", "/x")).status == 200


async def test_a_refused_connection_is_an_os_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once it is closed
    async with http1.Pool(f"http://127.0.0.1:{port}", 1) as pool:
        with pytest.raises(http1.ERRORS):
            await pool.call("GET", "/x")


def test_keep_alive_chunks_and_the_timeout_hold_on_uvloop_the_bench_runs_on() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def script(n: int, _: bytes) -> tuple[bytes, str]:
        if n == 2:
            return b"", "hang"
        if n == 3:
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1]\r\n0\r\n\r\n", "keep"
        return ok(), "keep"

    async def scenario() -> tuple[list[Any], list[int], int]:
        async with scripted(script) as (base, connections), http1.Pool(base, 1, timeout=0.2) as pool:
            bodies: list[Any] = [(await pool.call("GET", "/a")).body]
            with pytest.raises(TimeoutError):
                await pool.call("GET", "/slow")
            bodies += [(await pool.call("GET", "/b")).body for _ in range(3)]
        return bodies, connections, pool.connections_opened

    with ThreadPoolExecutor(1) as thread:  # a loop of its own, away from the tests' asyncio loop
        bodies, connections, opened = thread.submit(uvloop.run, scenario()).result(timeout=30)
    assert bodies == [{"ok": True}, [1], {"ok": True}, {"ok": True}]
    assert connections == [2, 3]
    assert opened == 2
