"""The flash sale's load generator alone: its CPU per request against a trivial server in another process.

    uv run python bench/profiling/loadgen_cpu.py                     # aiohttp and http1 at the sale's pace, uvloop
    uv run python bench/profiling/loadgen_cpu.py --client http1 --loop asyncio --delay 0   # flat out

The server (uvicorn with the services' own configuration, a bare ASGI app, in a subprocess so its CPU is not
counted) answers like the gateway does in a sale: ``GET /api/tickets?limit=100`` a page of 100 tickets (~17 KB of
JSON), ``POST /api/orders`` mostly a 400 with the error body and every tenth a 201, ``POST /api/payments`` a 201.
``--delay`` makes the server wait before each answer (default 0.13 s), so 64 loops send ~480 requests/s, the pace
of the last full sale (~460/s), rather than as many as the client can (``--delay 0``); the pace matters, as fewer
answers per loop iteration cost more each. ``--connections`` buyer loops send the sale's mix (69% orders, 27%
listing reads, 4% payments, the shares of the last full run) through one client; ``time.process_time()`` of this
process over the run, divided by the requests, is the figure (user + system; system apart). Each client is
measured ``--repeat`` times, alternating, after a warm-up of 500 requests. ``--client bare`` is the floor: an
asyncio protocol that writes each request whole and cuts each answer by its Content-Length, parsing nothing else
(the JSON bodies are still decoded, as the buyers need them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ticketing_bench import client, http1
from ticketing_bench.client import User

USER = User(str(uuid.uuid4()), "buyer@example.com", "session=" + "x" * 400)  # a real session cookie is ~400 bytes
MIX = ("order",) * 69 + ("listing",) * 27 + ("payment",) * 4


def _ticket(i: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "title": f"Flash sale seat {i}",
        "price": f"{5 + i * 37 % 10000 / 100:.2f}",
        "userId": str(uuid.uuid4()),
        "orderId": None,
        "version": 0,
    }


def serve(port: int, delay: float) -> None:
    from ticketing_common.http_server import serve as run

    listing = json.dumps({"tickets": [_ticket(i) for i in range(100)], "next": "abc"}).encode()
    taken = json.dumps({"errors": [{"message": "Ticket is already reserved"}]}).encode()
    order = json.dumps(
        {"id": str(uuid.uuid4()), "status": "created", "expiresAt": "2026-11-29T20:00:00+00:00", "ticket": _ticket(0)}
    ).encode()
    payment = json.dumps({"id": str(uuid.uuid4())}).encode()
    count = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal count
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if delay:
            await asyncio.sleep(delay)
        path = scope["path"]
        if path == "/api/tickets":
            status, body = 200, listing
        elif path == "/api/orders":
            count += 1
            status, body = (201, order) if count % 10 == 0 else (400, taken)
        elif path == "/api/payments":
            status, body = 201, payment
        else:
            status, body = 200, b"{}"
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    run(app, host="127.0.0.1", port=port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("the trivial server did not start")


Call = Callable[[str, str, Any], Awaitable[client.Reply]]


async def drive(call: Call, base: str, requests: int, connections: int) -> tuple[float, float, float]:
    """CPU seconds (user + system), system CPU seconds and wall seconds of ``requests`` requests of the sale's mix
    over ``connections`` loops."""
    left = requests
    order_body = {"ticketId": str(uuid.uuid4())}
    payment_body = {"orderId": str(uuid.uuid4()), "token": "tok_visa"}

    async def loop(offset: int) -> None:
        nonlocal left
        i = offset
        while left > 0:
            left -= 1
            kind = MIX[i % len(MIX)]
            i += 7
            if kind == "order":
                reply = await call("POST", base + "/api/orders", order_body)
                if reply.status == 201:
                    assert reply.body["expiresAt"]
            elif kind == "listing":
                reply = await call("GET", base + "/api/tickets?limit=100", None)
                assert len([t["id"] for t in reply.body["tickets"] if t.get("orderId") is None]) == 100
            else:
                reply = await call("POST", base + "/api/payments", payment_body)
            assert reply.status in (200, 201, 400), reply

    cpu, system, wall = time.process_time(), os.times().system, time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(connections)))
    return time.process_time() - cpu, os.times().system - system, time.perf_counter() - wall


async def measure(kind: str, base: str, requests: int, connections: int) -> tuple[float, float, float]:
    if kind == "aiohttp":
        async with client.session(connections) as session:

            async def via_aiohttp(method: str, url: str, body: Any) -> client.Reply:
                return await client.call(session, method, url, user=USER, json=body)

            await drive(via_aiohttp, base, 500, connections)
            return await drive(via_aiohttp, base, requests, connections)
    if kind == "bare":
        return await measure_bare(base, requests, connections)
    async with http1.Pool(base, connections) as pool:

        async def via_http1(method: str, url: str, body: Any) -> client.Reply:
            return await pool.call(method, url, user=USER, json=body)

        await drive(via_http1, base, 500, connections)
        return await drive(via_http1, base, requests, connections)


class _Bare(asyncio.Protocol):
    """The floor: one connection, the request written whole, the answer cut by its Content-Length and nothing
    else parsed (no status check beyond the code, no header but that one, no timeout, no reconnection)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.end = 0
        self.answer: asyncio.Future[bytes] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.end:
            head = self.buffer.find(b"\r\n\r\n")
            if head < 0:
                return
            at = self.buffer.find(b"content-length: ", 0, head) + 16
            self.end = head + 4 + int(self.buffer[at : self.buffer.find(b"\r\n", at)])
        if len(self.buffer) >= self.end and self.answer is not None:
            self.answer.set_result(bytes(self.buffer[: self.end]))
            del self.buffer[: self.end]
            self.end = 0

    async def call(self, request: bytes) -> client.Reply:
        started = time.perf_counter()
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        raw = await self.answer
        body = raw[raw.index(b"\r\n\r\n") + 4 :]
        return client.Reply(int(raw[9:12]), json.loads(body) if body else None, time.perf_counter() - started)


async def measure_bare(base: str, requests: int, connections: int) -> tuple[float, float, float]:
    port = int(base.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    free = [(await loop.create_connection(_Bare, "127.0.0.1", port))[1] for _ in range(connections)]

    async def via_bare(method: str, url: str, body: Any) -> client.Reply:
        target = url.removeprefix(base)
        payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nCookie: {USER.cookie}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        connection = free.pop()
        try:
            return await connection.call((head + "\r\n").encode() + payload)
        finally:
            free.append(connection)

    await drive(via_bare, base, 500, connections)
    result = await drive(via_bare, base, requests, connections)
    for connection in free:
        assert connection.transport is not None
        connection.transport.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs="+", default=["aiohttp", "http1"], choices=["aiohttp", "http1", "bare"])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop", help="uvloop: as the bench runs")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--delay", type=float, default=0.13, help="seconds the server waits before each answer (0: flat out)"
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.delay)
        return
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--delay", str(args.delay)])
    try:
        _wait_listening(port)
        base = f"http://127.0.0.1:{port}"
        for round_ in range(args.repeat):
            for kind in args.client:
                work = measure(kind, base, args.requests, args.connections)
                if args.loop == "uvloop":
                    import uvloop

                    cpu, system, wall = uvloop.run(work)
                else:
                    cpu, system, wall = asyncio.run(work)
                print(
                    f"{kind:8} loop={args.loop:7} round {round_ + 1}: {args.requests} requests, "
                    f"{cpu:.2f} s CPU = {cpu / args.requests * 1000:.3f} ms/request "
                    f"(system {system / args.requests * 1000:.3f}) "
                    f"({args.requests / wall:.0f} req/s wall, {args.connections} connections, server delay {args.delay} s)",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
