"""Hostile requests, spoken as raw HTTP: the gateway forwards only where its route table says, only paths inside
a route, never an internal path, never an oversized body, and answers every refusal with a 4xx in the shared
format. Every route's upstream is a listener of the test's own that records each connection it gets; it is
also the address the attacker names, so its record proves what was (not) forwarded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn

from ticketing_common.embedded import free_port
from ticketing_common.http_server import OPERATIONAL_PATHS, server_config
from ticketing_common.routes import ROUTES
from ticketing_common.testing.raw_http import (
    Listener,
    RawResponse,
    exchange,
    exchange_while_sending,
    listening,
    read_response,
)
from ticketing_gateway.config import Settings
from ticketing_gateway.main import create_app

HEADER_TIMEOUT = 1.0
MAX_BODY = 64 * 1024
FEW_MB = 4 * 1024 * 1024
PREFIXES = [route.prefix.rstrip("/") for route in ROUTES]  # "" is the client's "/"


@dataclass
class Running:
    port: int
    upstream: Listener

    async def send(self, request: bytes) -> RawResponse:
        response = await exchange(self.port, request)
        assert response.status < 500, response
        assert response.header("server") is None
        return response


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async with listening() as upstream, _gateway(upstream) as port:
        yield Running(port, upstream)


@contextlib.asynccontextmanager
async def _gateway(upstream: Listener) -> AsyncIterator[int]:
    settings = Settings(
        **{f"{route.service}_url": upstream.url for route in ROUTES},
        max_body_bytes=MAX_BODY,
        log_json=False,
    )
    port = free_port()
    config = server_config(create_app(settings), host="127.0.0.1", port=port, header_timeout_seconds=HEADER_TIMEOUT)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


def get(target: bytes | str, *, method: bytes = b"GET", headers: bytes = b"Host: ticketing.dev\r\n") -> bytes:
    raw = target.encode() if isinstance(target, str) else target
    return method + b" " + raw + b" HTTP/1.1\r\n" + headers + b"\r\n"


def assert_refused(response: RawResponse, status: int) -> None:
    assert response.status == status, response
    body = response.json()
    assert list(body) == ["errors"]
    assert body["errors"]
    assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"])


def request_targets(attacker: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"OPTIONS", b"*"),
        (b"GET", b"*"),
        (b"GET", f"http://127.0.0.1:{attacker}/x".encode()),
        (b"GET", f"http://127.0.0.1:{attacker}".encode()),
        (b"CONNECT", f"127.0.0.1:{attacker}".encode()),
        (b"GET", f"127.0.0.1:{attacker}/x".encode()),
        (b"GET", f"@127.0.0.1:{attacker}/x".encode()),
        (b"GET", f"//127.0.0.1:{attacker}/x".encode()),
        (b"GET", f"/api/users@127.0.0.1:{attacker}/x".encode().replace(b"/api/users", b"")),
        (b"GET", b"\\\\evil\\x"),
        (b"GET", b"/api/users\\..\\..\\metrics"),
        (b"GET", b"/api/users/\x01"),
        (b"GET", b"/api/users/\x7f"),
        (b"GET", b"/api/users/\xc3\xa9"),
        (b"GET", b"api/users"),
        (b"GET", b"/api/users#x"),
    ]


@pytest.mark.parametrize("case", range(16))
async def test_returns_400_when_the_request_target_is_not_a_plain_path(running: Running, case: int) -> None:
    method, target = request_targets(running.upstream.port)[case]
    response = await running.send(get(target, method=method))
    assert_refused(response, 400)
    assert running.upstream.connections == 0


TRAVERSALS = [
    "/../metrics",
    "/./metrics",
    "/%2e%2e/metrics",
    "/%2E%2e/metrics",
    "/.%2e/metrics",
    "/..%2fmetrics",
    "/%2f..%2fmetrics",
    "/..%5cmetrics",
    "/%5c..%5cmetrics",
    "/%252e%252e/metrics",
    "/%25252e/metrics",
    "/..;/metrics",
    "/x;/../metrics",
    "/.../metrics",
    "/x/..",
    "//metrics",
    "/%2",
    "/%zz/metrics",
    "/%00/metrics",
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("traversal", TRAVERSALS)
async def test_returns_400_for_traversal_out_of_every_route(running: Running, prefix: str, traversal: str) -> None:
    response = await running.send(get(prefix + traversal))
    assert_refused(response, 400)
    assert running.upstream.connections == 0


@pytest.mark.parametrize("path", OPERATIONAL_PATHS)
async def test_returns_404_for_the_operational_endpoints_of_the_root_route(running: Running, path: str) -> None:
    # The gateway's own /healthz is its only answer there: a summary, never a service's.
    targets = (path + "/", path + "/x") if path == "/healthz" else (path, path + "/", path + "/x", path + "?x=1")
    for target in targets:
        assert_refused(await running.send(get(target)), 404)
    assert running.upstream.connections == 0


@pytest.mark.parametrize("prefix", PREFIXES[:-1])
async def test_forwards_operational_names_under_an_api_prefix_only_as_paths_inside_it(
    running: Running, prefix: str
) -> None:
    for path in OPERATIONAL_PATHS:
        assert (await running.send(get(prefix + path + "."))).status == 200
    assert [r.target for r in running.upstream.requests] == [prefix + path + "." for path in OPERATIONAL_PATHS]


async def test_forwards_a_plain_request_to_its_route_with_the_gateways_own_forwarding_headers(
    running: Running,
) -> None:
    spoofed = (
        b"Host: ticketing.dev\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: evil.example\r\n"
        b"Forwarded: for=10.0.0.1;host=evil.example\r\nX-Real-IP: 10.0.0.1\r\n"
    )
    response = await running.send(get("/api/tickets/a%20b?x=%2e%2e/y", headers=spoofed))
    assert response.status == 200
    assert response.body == b"{}"
    [forwarded] = running.upstream.requests
    assert forwarded.request_line == "GET /api/tickets/a%20b?x=%2e%2e/y HTTP/1.1"
    assert forwarded.header("x-forwarded-for") == ["127.0.0.1"]
    assert forwarded.header("x-forwarded-host") == ["ticketing.dev"]
    assert forwarded.header("forwarded") == []
    assert forwarded.header("x-real-ip") == []
    assert forwarded.header("host") == [f"127.0.0.1:{running.upstream.port}"]


@pytest.mark.parametrize(
    "host",
    [
        b"Host: ticketing.dev\r\nHost: evil.example\r\n",
        b"Host: evil.example/x@y\r\n",
        b"Host: evil.example\\x\r\n",
        b"Host: user@evil.example\r\n",
    ],
)
async def test_returns_400_when_the_host_header_is_not_one_host_name(running: Running, host: bytes) -> None:
    assert_refused(await running.send(get("/api/users", headers=host)), 400)
    assert running.upstream.connections == 0


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5\r\nContent-Length: 5\r\n",
        b"Content-Length: +5\r\n",
        b"Content-Length: 5, 5\r\n",
        b"Transfer-Encoding: chunked, identity\r\n",
        b"Transfer-Encoding: xchunked\r\n",
    ],
)
async def test_returns_400_for_ambiguous_body_framing(running: Running, framing: bytes) -> None:
    request = get("/api/users", method=b"POST", headers=b"Host: ticketing.dev\r\n" + framing) + b"0\r\n\r\nhello"
    assert_refused(await running.send(request), 400)
    assert running.upstream.connections == 0


def _chunked(size: int) -> list[bytes]:
    piece = b"x" * 65536
    return [b"%x\r\n%s\r\n" % (len(piece), piece)] * (size // len(piece)) + [b"0\r\n\r\n"]


@pytest.mark.parametrize("expect", [b"", b"Expect: 100-continue\r\n"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_returns_413_for_a_body_over_the_limit(
    running: Running, expect: bytes, framing: str, caplog: pytest.LogCaptureFixture
) -> None:
    length = b"Content-Length: %d\r\n" % FEW_MB if framing == "content-length" else b"Transfer-Encoding: chunked\r\n"
    head = get("/api/tickets", method=b"POST", headers=b"Host: ticketing.dev\r\n" + length + expect)
    chunks = [b"x" * 65536] * (FEW_MB // 65536) if framing == "content-length" else _chunked(FEW_MB)
    response = await exchange_while_sending(running.port, head, chunks)
    assert_refused(response, 413)
    assert response.header("server") is None
    assert running.upstream.connections == 0
    await asyncio.sleep(0.1)
    assert [r.getMessage() for r in caplog.records if r.levelno >= 30] == []  # no traceback, no warning


async def test_forwards_a_body_at_the_limit_whole(running: Running) -> None:
    head = get("/api/tickets", method=b"POST", headers=b"Host: ticketing.dev\r\nTransfer-Encoding: chunked\r\n")
    response = await exchange_while_sending(running.port, head, _chunked(MAX_BODY))
    assert response.status == 200
    [forwarded] = running.upstream.requests
    assert len(forwarded.body) == MAX_BODY
    assert forwarded.header("content-length") == [str(MAX_BODY)]
    assert forwarded.header("transfer-encoding") == []


@pytest.mark.parametrize(
    "headers",
    [
        b"Host: ticketing.dev\r\nCookie: " + b"a" * 40_000 + b"\r\n",
        b"Host: ticketing.dev\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(400)),
    ],
)
async def test_returns_431_when_the_request_headers_are_over_the_limit(running: Running, headers: bytes) -> None:
    assert_refused(await running.send(get("/api/users", headers=headers)), 431)
    assert running.upstream.connections == 0


async def test_returns_431_when_endless_headers_trickle_in(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"GET /api/users HTTP/1.1\r\nHost: ticketing.dev\r\n")
    with contextlib.suppress(ConnectionError):
        for i in range(100):
            writer.write(b"X-H%d: %s\r\n" % (i, b"v" * 1000))
            await writer.drain()
    response = await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    assert_refused(response, 431)


@pytest.mark.parametrize(
    ("first_bytes", "trickle"),
    [(b"", b""), (b"GET /api/users HTTP/1.1\r\nHost: ticketing.dev\r\nX-Slow: ab", b"c")],
    ids=["idle", "half-a-header-line-then-a-byte-now-and-then"],
)
async def test_disconnects_a_client_that_does_not_finish_its_headers_in_time(
    running: Running, first_bytes: bytes, trickle: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(first_bytes)
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = b""
    with contextlib.suppress(ConnectionError):
        while not reader.at_eof() and loop.time() - started < HEADER_TIMEOUT + 3:
            writer.write(trickle)
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                received += await asyncio.wait_for(reader.read(1024), 0.2)
    waited = loop.time() - started
    writer.close()
    assert received == b""  # closed without an answer
    assert HEADER_TIMEOUT - 0.1 < waited < HEADER_TIMEOUT + 1
    assert running.upstream.connections == 0


async def test_the_header_timeout_starts_again_for_each_request_on_a_kept_alive_connection(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    for _ in range(3):
        await asyncio.sleep(HEADER_TIMEOUT * 0.6)
        writer.write(get("/api/users"))
        assert (await asyncio.wait_for(read_response(reader), 5)).status == 200
    writer.close()
    assert running.upstream.connections == 1


async def test_healthz_asks_each_service_once_however_many_clients_ask(running: Running) -> None:
    responses = await asyncio.gather(*(running.send(get("/healthz")) for _ in range(50)))
    assert {r.status for r in responses} == {200}
    assert [r.target for r in running.upstream.requests] == ["/readyz"] * len({r.service for r in ROUTES})
