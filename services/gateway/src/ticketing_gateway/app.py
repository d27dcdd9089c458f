"""The gateway: a small reverse proxy that routes like the cluster's ingress-nginx.

A plain ASGI app (no framework in the hot path) forwarding over a pooled aiohttp client. Request bodies
stream through; responses (small JSON and HTML) are buffered; every ``Set-Cookie`` survives; errors answer in the shared format. ``/healthz``
is 200 only when every configured service reports ready on its ``/readyz``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from starlette.types import Message, Receive, Scope, Send

from ticketing_common.errors import error_body
from ticketing_common.process import freeze_startup_heap
from ticketing_gateway.config import GatewaySettings
from ticketing_gateway.routes import route_for

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
    }
)
RESPONSE_SKIP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"})


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.upstreams = settings.upstreams()
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/healthz":
            await self._health(send)
            return
        route = route_for(path)
        base = self.upstreams.get(route.service) if route else None
        if base is None:
            await _send_json(send, 404, error_body([{"message": "Not Found"}]))
            return
        await self._proxy(scope, receive, send, base, route.service if route else "")

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
                logger.info("gateway started", extra={"upstreams": self.upstreams})
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, base: str, service: str) -> None:
        assert self._session is not None
        started = time.perf_counter()
        query = scope.get("query_string", b"")
        url = base + scope["raw_path"].decode("latin-1") if scope.get("raw_path") else base + scope["path"]
        if query:
            url += "?" + query.decode("latin-1")
        client = scope.get("client")
        headers: list[tuple[str, str]] = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in HOP_BY_HOP and not name.startswith(b"x-forwarded-")
        ]
        host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
        headers += [
            ("X-Forwarded-For", client[0] if client else ""),
            ("X-Forwarded-Proto", scope.get("scheme", "http")),
            ("X-Forwarded-Host", host),
        ]
        method: str = scope["method"]
        has_body = any(k == b"content-length" and v != b"0" for k, v in scope["headers"]) or any(
            k == b"transfer-encoding" for k, _ in scope["headers"]
        )
        status = 502
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=_body(receive) if has_body else None,
                allow_redirects=False,
            ) as upstream:
                status = upstream.status
                response_headers = [
                    (k.lower(), v) for k, v in upstream.raw_headers if k.decode("latin-1").lower() not in RESPONSE_SKIP
                ]
                body = await upstream.read()
                response_headers.append((b"content-length", str(len(body)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": response_headers})
                await send({"type": "http.response.body", "body": body})
        except (TimeoutError, aiohttp.ClientError) as exc:
            status = 503
            logger.warning("upstream unavailable", extra={"service": service, "error": repr(exc)})
            await _send_json(send, 503, error_body([{"message": "Service unavailable"}]))
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

    async def _health(self, send: Send) -> None:
        assert self._session is not None
        results = await asyncio.gather(*(self._ready(name, url) for name, url in self.upstreams.items()))
        services = dict(zip(self.upstreams, results, strict=True))
        status = 200 if all(results) else 503
        body: dict[str, Any] = {"status": "ready" if status == 200 else "unavailable", "services": services}
        if status != 200:
            body["errors"] = [{"message": f"{name} is not ready"} for name, ok in services.items() if not ok]
        await _send_json(send, status, body)

    async def _ready(self, name: str, base: str) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(base + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def create_app(settings: GatewaySettings | None = None) -> Gateway:
    return Gateway(settings or GatewaySettings())
