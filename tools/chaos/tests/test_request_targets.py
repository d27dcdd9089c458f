"""Hostile request targets and framing against the whole system, as raw HTTP: nothing escapes a route, the
services' operational endpoints are not public, oversized bodies are 413 and slow clients are cut off, every
refusal a 4xx in the shared format, and no process names its server."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from yarl import URL

from ticketing_chaos.hostile import System
from ticketing_common.http_server import OPERATIONAL_PATHS
from ticketing_common.routes import ROUTES
from ticketing_common.testing.raw_http import RawResponse, exchange, exchange_while_sending

pytestmark = pytest.mark.e2e

PREFIXES = [route.prefix.rstrip("/") for route in ROUTES]
SERVICES = ["auth", "tickets", "orders", "payments", "client"]
TRAVERSALS = ["/../", "/%2e%2e/", "/%2E%2e/", "/..%2f", "/..%5c", "/%252e%252e/", "/..;/", "/x/../../"]


def _port(url: str) -> int:
    port = URL(url).port
    assert port is not None
    return port


def _get(target: str, headers: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: ticketing.dev\r\n{headers}\r\n".encode()


def _refused(response: RawResponse, status: int) -> None:
    assert response.status == status, response
    assert response.header("server") is None
    assert response.json()["errors"][0]["message"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_traversal_to_an_operational_endpoint_is_400_through_every_route(system: System, prefix: str) -> None:
    port = _port(system.gateway)
    for traversal in TRAVERSALS:
        for path in OPERATIONAL_PATHS:
            _refused(await exchange(port, _get(prefix + traversal + path.lstrip("/"))), 400)


@pytest.mark.parametrize("path", [p for p in OPERATIONAL_PATHS if p != "/healthz"])
async def test_the_operational_endpoints_are_404_through_the_gateway(system: System, path: str) -> None:
    _refused(await exchange(_port(system.gateway), _get(path)), 404)


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_answers_its_operational_endpoints_only_to_direct_requests(
    system: System, service: str
) -> None:
    port = _port(system.url(service))
    direct = await exchange(port, _get("/metrics"))
    assert direct.status == 200
    assert direct.header("server") is None
    for path in OPERATIONAL_PATHS:
        _refused(await exchange(port, _get(path, "X-Forwarded-For: 203.0.113.7\r\n")), 404)


@pytest.mark.parametrize("target", ["*", "http://127.0.0.1:9/x", "@127.0.0.1:9/x", "127.0.0.1:9", "/a\\b"])
@pytest.mark.parametrize("where", ["gateway", *SERVICES])
async def test_a_target_that_is_not_a_path_is_400_everywhere(system: System, where: str, target: str) -> None:
    port = _port(system.gateway if where == "gateway" else system.url(where))
    method = "OPTIONS" if target == "*" else "GET"
    response = await exchange(port, f"{method} {target} HTTP/1.1\r\nHost: ticketing.dev\r\n\r\n".encode())
    _refused(response, 400)


@pytest.mark.parametrize("prefix", PREFIXES[:-1])
@pytest.mark.parametrize("expect", ["", "Expect: 100-continue\r\n"])
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_of_a_few_megabytes_is_413_on_every_api(
    system: System, prefix: str, expect: str, chunked: bool
) -> None:
    size = 3 * 1024 * 1024
    piece = b"x" * 65536
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {size}\r\n"
    head = (
        f"POST {prefix} HTTP/1.1\r\nHost: ticketing.dev\r\nContent-Type: application/json\r\n{framing}{expect}\r\n"
    ).encode()
    chunks = [b"10000\r\n" + piece + b"\r\n" if chunked else piece] * (size // len(piece))
    _refused(await exchange_while_sending(_port(system.gateway), head, chunks), 413)


@pytest.mark.parametrize("where", ["gateway", "auth"])
async def test_headers_over_the_limit_are_431(system: System, where: str) -> None:
    port = _port(system.gateway if where == "gateway" else system.url(where))
    _refused(await exchange(port, _get("/api/users/currentuser", f"Cookie: {'a' * 40_000}\r\n")), 431)


@pytest.mark.parametrize("where", ["gateway", "tickets"])
async def test_a_client_sending_half_a_header_line_is_disconnected(system: System, where: str) -> None:
    port = _port(system.gateway if where == "gateway" else system.url(where))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/tickets HTTP/1.1\r\nHost: ticketing.dev\r\nX-Slow: a")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with contextlib.suppress(ConnectionError):
        assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    assert loop.time() - started < 4  # HEADER_TIMEOUT_SECONDS is 2 in this suite
