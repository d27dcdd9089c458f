"""The two ASGI layers every service runs under: the body limit, and the request's errors, metrics and log line."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from opentelemetry.trace import Span
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketing_common import tracing
from ticketing_common.db import is_connection_error
from ticketing_common.errors import (
    CustomError,
    DatabaseConnectionError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    error_body,
)
from ticketing_common.http_server import came_through_proxy, is_operational_path
from ticketing_common.logging import DEFAULT_SLOW_SECONDS, RoutineLog
from ticketing_common.metrics import Metrics

logger = logging.getLogger("ticketing.http")

UNMATCHED_ROUTE = "<unmatched>"


class BodyLimitMiddleware:
    """413 for a body over ``max_body_bytes``: at once for a declared length, and as soon as a chunked body outgrows
    it, even when the app's body parser has already turned the error into an answer of its own."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared = int(dict(scope["headers"]).get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > self.max_body_bytes:
            raise PayloadTooLargeError()
        received = 0
        too_large = False
        replacement: bytes | None = None

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise PayloadTooLargeError()
            return message

        async def replacing_send(message: Message) -> None:
            nonlocal replacement
            if too_large:
                if message["type"] == "http.response.start":
                    replacement = json.dumps(error_body(PayloadTooLargeError().serialize())).encode()
                    message = {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(replacement)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                elif message["type"] == "http.response.body":
                    if replacement is None:
                        return  # the rest of the replaced answer
                    message, replacement = {"type": "http.response.body", "body": replacement}, None
            await send(message)

        await self.app(scope, limited_receive, replacing_send)


class RequestMiddleware:
    """Request id, metrics, a log line for each failed (5xx), slow or sampled request (every one at DEBUG), operational
    paths refused through a proxy, the last-resort error answer in the shared format, and the request's span when
    tracing is on."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, slow_seconds: float = DEFAULT_SLOW_SECONDS, sample_every: int = 0
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routine = RoutineLog(logger, slow_seconds=slow_seconds, sample_every=sample_every)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif tracing.tracer is None or is_operational_path(scope["path"]):  # probes and scrapes make no traces
            await self._serve(scope, receive, send, None)
        else:
            with tracing.server_span(scope) as span:
                await self._serve(scope, receive, send, span)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, span: Span | None) -> None:
        started = time.perf_counter()
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")[:100] or uuid.uuid4().hex
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            if is_operational_path(scope["path"]) and came_through_proxy(scope["headers"]):
                raise NotFoundError()  # for probes, scrapes and the launcher, which come directly
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if response_started:
                raise
            status = await self._answer_error(exc, scope, send, request_id)
        finally:
            route = self._observe(scope, status, time.perf_counter() - started, request_id)
            tracing.finish_server_span(span, method=scope["method"], route=route, status=status)

    async def _answer_error(self, exc: Exception, scope: Scope, send: Send, request_id: str) -> int:
        error: CustomError | None = exc if isinstance(exc, CustomError) else None
        if error is None and is_connection_error(exc):
            error = DatabaseConnectionError()
            if (db := getattr(scope["app"].state, "db", None) if "app" in scope else None) is not None:
                await db.connection_failed()
        if error is None:
            logger.exception("unhandled error", extra={"request_id": request_id, "path": scope["path"]})
        status = error.status_code if error else 500
        body = error_body(error.serialize() if error else [{"message": "Something went wrong"}])
        headers = [
            (b"content-type", b"application/json"),
            (b"x-request-id", request_id.encode("latin-1")),
            *[(k.lower().encode(), v.encode()) for k, v in ((error.headers or {}) if error else {}).items()],
        ]
        if isinstance(error, PayloadTooLargeError | ServiceUnavailableError):
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})
        return status

    def _observe(self, scope: Scope, status: int, duration: float, request_id: str) -> str:
        """Count and maybe log the request; returns its route template."""
        route = _route_template(scope)
        method = scope["method"]
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.request_latency.labels(method, route).observe(duration)
        if is_operational_path(route):
            return route
        level = logging.WARNING if status >= 500 else self.routine.level(duration)
        if level is not None:
            logger.log(
                level,
                "request",
                extra={
                    "request_id": request_id,
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration * 1000, 2),
                },
            )
        return route


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    app: Any = scope.get("app")
    router = getattr(app, "router", None)
    for candidate in getattr(router, "routes", ()):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", UNMATCHED_ROUTE))
    return UNMATCHED_ROUTE
