"""Builds the gateway's app: a small reverse proxy that routes like the cluster's ingress-nginx.

A plain ASGI app (no framework in the hot path) forwarding over a pooled aiohttp client. It forwards only to a
route's own base URL, with a path it has checked (``routes.target_problem``) and never an internal one; request
bodies are read whole, up to the services' body limit, before anything is forwarded; responses (small JSON and
HTML) are buffered; every ``Set-Cookie`` survives; errors answer in the shared format. ``/healthz`` is 200 only
when every configured service reports ready on its ``/readyz`` (checked at most once a second, however many ask).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import aiohttp
from starlette.types import Receive, Scope, Send
from yarl import URL

from ticketing_common import tracing
from ticketing_common.errors import error_body
from ticketing_common.http_server import is_operational_path
from ticketing_common.logging import configure_observability
from ticketing_common.process import freeze_startup_heap
from ticketing_common.routes import route_for
from ticketing_gateway.config import Settings
from ticketing_gateway.routes import target_problem

logger = logging.getLogger("ticketing.gateway")

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
        # The client's own claims about where it came from: the gateway states them itself.
        b"forwarded",
        b"x-real-ip",
    }
)
RESPONSE_SKIP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"})
HEALTH_CACHE_SECONDS = 1.0
_HOST = re.compile(rb"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
UNAVAILABLE_PAGE = (
    b"<!doctype html><html lang=en><head><meta charset=utf-8><title>Unavailable \xc2\xb7 Ticketing</title></head>"
    b"<body><h1>Ticketing is unavailable right now</h1>"
    b'<p role="alert">Please try again in a few seconds.</p></body></html>'
)


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class Gateway:
    """The ASGI app: its own lifespan (the pooled client to the services), ``/healthz``, and the proxy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.upstreams = settings.upstreams()
        self._session: aiohttp.ClientSession | None = None
        self._health_lock = asyncio.Lock()
        self._health: tuple[float, int, dict[str, Any]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        problem = target_problem(scope.get("raw_path") or path.encode(), scope.get("query_string", b""))
        if problem is None:
            problem = _host_problem(scope["headers"])
        if problem is not None:
            await _send_json(send, 400, error_body([{"message": problem}]))
            return
        if path == "/healthz":
            await self._health_check(send)
            return
        route = route_for(path)
        base = self.upstreams.get(route.service) if route else None
        if base is None or route is None or is_operational_path(path):
            await _send_json(send, 404, error_body([{"message": "Not Found"}]))
            return
        try:
            body = await self._read_body(scope, receive)
        except _BodyTooLarge:
            # Not "Connection: close": closing with the body still arriving resets the connection, and the client
            # may lose the answer; uvicorn reads and drops the rest of the body instead.
            await _send_json(send, 413, error_body([{"message": "Request body too large"}]))
            return
        except _ClientGone:
            return
        if tracing.tracer is None:
            await self._proxy(scope, send, base, route.service, body)
            return
        with tracing.server_span(scope) as span:
            status = await self._proxy(scope, send, base, route.service, body)
            tracing.finish_server_span(span, method=scope["method"], route=route.prefix, status=status)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole request body, refused before it is read when its declared length is over the limit."""
        limit = self.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Idle connections are not reused after 4 s, before the services' uvicorn closes them (5 s): a post
                # sent on a connection being closed fails (503), and aiohttp retries only idempotent calls.
                connector = aiohttp.TCPConnector(limit=self.settings.max_connections, keepalive_timeout=4)
                self._session = aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(total=self.settings.upstream_timeout_seconds),
                    auto_decompress=False,
                    cookie_jar=aiohttp.DummyCookieJar(),
                )
                freeze_startup_heap()
                logger.info("gateway started", extra={"upstreams": {k: str(v) for k, v in self.upstreams.items()}})
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await asyncio.to_thread(tracing.flush_tracing)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, send: Send, base: URL, service: str, body: bytes) -> int:
        """Forward the request and relay the answer; returns its status."""
        assert self._session is not None
        started = time.perf_counter()
        method: str = scope["method"]
        status = 502
        try:
            async with self._session.request(
                method,
                _upstream_url(base, scope),
                headers=_forwarded_headers(scope),
                data=body or None,
                allow_redirects=False,
            ) as upstream:
                status = upstream.status
                await _relay(upstream, send)
        except (TimeoutError, aiohttp.ClientError) as exc:
            status = 503
            logger.warning("upstream unavailable", extra={"service": service, "error": repr(exc)})
            await _send_unavailable(send, service, scope["headers"])
        finally:
            logger.debug(
                "proxied",
                extra={
                    "upstream": service,
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return status

    async def _health_check(self, send: Send) -> None:
        async with self._health_lock:  # one round of checks at a time, its answer shared for a moment
            if self._health is None or time.monotonic() - self._health[0] > HEALTH_CACHE_SECONDS:
                results = await asyncio.gather(*(self._ready(url) for url in self.upstreams.values()))
                services = dict(zip(self.upstreams, results, strict=True))
                status = 200 if all(results) else 503
                body: dict[str, Any] = {"status": "ready" if status == 200 else "unavailable", "services": services}
                if status != 200:
                    body["errors"] = [{"message": f"{name} is not ready"} for name, ok in services.items() if not ok]
                self._health = (time.monotonic(), status, body)
            _, status, body = self._health
        await _send_json(send, status, body)

    async def _ready(self, base: URL) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(base.with_path("/readyz"), timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False


def _upstream_url(base: URL, scope: Scope) -> URL:
    """Only the route's own scheme, host and port, and the path and query ``target_problem`` accepted."""
    return URL.build(
        scheme=base.scheme,
        host=base.raw_host or "",
        port=base.explicit_port,
        path=(scope.get("raw_path") or scope["path"].encode()).decode("ascii"),
        query_string=scope.get("query_string", b"").decode("ascii"),
        encoded=True,
    )


def _forwarded_headers(scope: Scope) -> list[tuple[str, str]]:
    """The request's end-to-end headers, and where it came from as the gateway saw it (never as the client says)."""
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in scope["headers"]
        if name not in HOP_BY_HOP and not name.startswith(b"x-forwarded-")
    ]
    client = scope.get("client")
    host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
    if tracing.tracer is not None:  # the caller's trace context continues from the gateway's span
        context: dict[str, str] = {}
        tracing.inject(context)
        headers = [(name, value) for name, value in headers if name not in ("traceparent", "tracestate")]
        headers.extend(context.items())
    return [
        *headers,
        ("X-Forwarded-For", client[0] if client else ""),
        ("X-Forwarded-Proto", scope.get("scheme", "http")),
        ("X-Forwarded-Host", host),
    ]


async def _relay(upstream: aiohttp.ClientResponse, send: Send) -> None:
    """The upstream's answer, buffered, with every header (each ``Set-Cookie``) but the hop-by-hop ones."""
    headers = [(k.lower(), v) for k, v in upstream.raw_headers if k.decode("latin-1").lower() not in RESPONSE_SKIP]
    body = await upstream.read()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_unavailable(send: Send, service: str, headers: list[tuple[bytes, bytes]]) -> None:
    if service == "client" and _accepts_html(headers):
        # The web client cannot render its own 503 page while it is down: a browser still gets a page.
        await _send(send, 503, UNAVAILABLE_PAGE, b"text/html; charset=utf-8", (b"retry-after", b"5"))
    else:
        await _send_json(send, 503, error_body([{"message": "Service unavailable"}]))


def _host_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The Host header is passed on (as X-Forwarded-Host, which the client's form checks trust): one, and a name."""
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) > 1 or (hosts and not _HOST.fullmatch(hosts[0])):
        return "The Host header must be a single host name or address"
    return None


def _accepts_html(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"accept" and b"text/html" in value for name, value in headers)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    await _send(send, status, json.dumps(body).encode(), b"application/json")


async def _send(send: Send, status: int, raw: bytes, content_type: bytes, *extra: tuple[bytes, bytes]) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(raw)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


def create_app(settings: Settings | None = None) -> Gateway:
    settings = settings or Settings()
    configure_observability(settings)
    return Gateway(settings)
