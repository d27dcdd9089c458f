"""The application factory every service uses: routers + listeners in, a production-ready FastAPI app out.

It wires the database, the event runtime (outbox publisher and listeners), the shared error handlers, health
(``/healthz`` alive, ``/readyz`` database and NATS reachable), Prometheus ``/metrics``, a body size limit and
a structured log line for each failed, slow or sampled request.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketing_common.config import ServiceSettings
from ticketing_common.db import Database, create_database, is_connection_error
from ticketing_common.errors import (
    ERROR_DESCRIPTIONS,
    CustomError,
    DatabaseConnectionError,
    ErrorBody,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    error_body,
    install_error_handlers,
)
from ticketing_common.events.catalogue import Event
from ticketing_common.events.listener import Listener
from ticketing_common.events.runtime import EventRuntime
from ticketing_common.http_server import came_through_proxy, is_operational_path
from ticketing_common.logging import DEFAULT_SLOW_SECONDS, RoutineLog, configure_logging
from ticketing_common.metrics import Metrics
from ticketing_common.process import freeze_startup_heap

logger = logging.getLogger("ticketing.http")

UNMATCHED_ROUTE = "<unmatched>"


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    listeners: Callable[[ServiceSettings], Sequence[Listener[Event]]] | None = None,
    configure: Callable[[FastAPI], None] | None = None,
    while_running: Callable[[FastAPI], AbstractAsyncContextManager[object]] | None = None,
) -> FastAPI:
    """Build a service app. ``listeners`` builds the service's event listeners from its settings;
    ``while_running`` is entered once the database and the event runtime are started, and exited before they
    stop (a service's own background work)."""
    configure_logging(settings.service_name, level=settings.log_level, json_lines=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await create_database(
            settings.database_dsn, service=settings.service_name, size=settings.database_pool_size
        )
        app.state.db = db
        events = EventRuntime(
            settings,
            db=db,
            listeners=listeners(settings) if listeners else (),
            metrics=app.state.metrics,
        )
        app.state.events = events
        events.start()
        freeze_startup_heap()
        logger.info("service started", extra={"port": settings.port})
        try:
            async with while_running(app) if while_running is not None else nullcontext():
                yield
        finally:
            await events.stop()
            await db.pool.close()

    app = FastAPI(title=title, lifespan=lifespan, version="1.0.0")
    app.state.settings = settings
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", app.state.metrics.endpoint, include_in_schema=False)
    for router in routers:
        app.include_router(router)
    if configure is not None:
        configure(app)
    if blocking := thread_pool_callables(app):
        raise TypeError(f"declare these with async def, not def: {', '.join(blocking)}")
    app.add_middleware(
        RequestMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_body_bytes,
        slow_seconds=settings.log_slow_seconds,
        sample_every=settings.log_sample_every,
    )
    app.openapi = _openapi_with_shared_errors(app)  # type: ignore[method-assign]
    return app


def thread_pool_callables(app: FastAPI) -> list[str]:
    """Endpoints and dependencies declared with a plain ``def``, which FastAPI runs in its thread pool.

    Every request would hop to a worker thread and back for each of them, and the workers contend with the
    event loop for the GIL: on the order path three such hops cost more CPU than the JWT check they wrapped.
    """
    found: list[str] = []

    def visit(dependant: Dependant) -> None:
        call = dependant.call
        if call is not None and not _is_async(call):
            found.append(f"{getattr(call, '__module__', '?')}.{getattr(call, '__qualname__', repr(call))}")
        for dependency in dependant.dependencies:
            visit(dependency)

    for route in app.routes:
        # Included routers are wrappers (FastAPI >= 0.16x) that list their routes as "effective route contexts".
        contexts = getattr(route, "effective_route_contexts", None)
        for candidate in contexts() if contexts is not None else [route]:
            dependant = getattr(candidate, "dependant", None)
            if isinstance(dependant, Dependant):
                visit(dependant)
    return sorted(set(found))


def _is_async(call: Callable[..., Any]) -> bool:
    method = getattr(call, "__call__", None)  # noqa: B004 (a class instance used as a dependency)
    return any(inspect.iscoroutinefunction(c) or inspect.isasyncgenfunction(c) for c in (call, method) if c is not None)


def _openapi_with_shared_errors(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents a 422 in its own format for every route with input; the shared handlers answer 400 in
    the shared format instead, and any route can answer 503 (database down) and, with a body, 413. Say so."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(error_schema.pop("$defs", {}))
        components["ErrorBody"] = error_schema
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                codes = ["503"]
                if responses.pop("422", None) is not None:
                    codes.append("400")
                if "requestBody" in operation:
                    codes.append("413")
                for code in codes:
                    responses.setdefault(
                        code,
                        {
                            "description": ERROR_DESCRIPTIONS[int(code)],
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                        },
                    )
        app.openapi_schema = schema
        return schema

    return openapi


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    problems: list[str] = []
    try:
        await request.app.state.db.pool.fetchval("SELECT 1")
    except Exception:
        problems.append("database unreachable")
    if not request.app.state.events.connected:
        problems.append("nats unreachable")
    if problems:
        return JSONResponse(error_body([{"message": p} for p in problems]), status_code=503)
    return JSONResponse({"status": "ready"})


async def _database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


DatabaseDep = Annotated[Database, Depends(_database)]
"""The service's database: use cases open a unit of work on it, or read from its pool."""


async def _settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[ServiceSettings, Depends(_settings)]


class RequestMiddleware:
    """Request id, body size limit, metrics, a log line for each failed (5xx), slow or sampled request (every one at
    DEBUG), and the last-resort error answer."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        slow_seconds: float = DEFAULT_SLOW_SECONDS,
        sample_every: int = 0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.routine = RoutineLog(logger, slow_seconds=slow_seconds, sample_every=sample_every)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:100] or uuid.uuid4().hex
        status = 500
        response_started = False

        too_large = False
        replacement: bytes | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started, replacement
            if too_large:
                # The body outgrew the limit while the app read it (a chunked body declares no length), and the
                # app's body parser turned the error into its own answer (a 400): answer the 413 instead.
                if message["type"] == "http.response.start" and not response_started:
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
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise PayloadTooLargeError()
            return message

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        try:
            if is_operational_path(scope["path"]) and came_through_proxy(scope["headers"]):
                raise NotFoundError()  # for probes, scrapes and the launcher, which come directly
            if declared > self.max_body_bytes:
                raise PayloadTooLargeError()
            await self.app(scope, limited_receive, send_wrapper)
        except Exception as exc:
            error: CustomError | None = exc if isinstance(exc, CustomError) else None
            if error is None and is_connection_error(exc):
                error = DatabaseConnectionError()
                db: Database | None = getattr(scope["app"].state, "db", None) if "app" in scope else None
                if db is not None:
                    await db.connection_failed()
            if error is None:
                logger.exception("unhandled error", extra={"request_id": request_id, "path": scope["path"]})
            if response_started:
                raise
            status = error.status_code if error else 500
            body = error_body(error.serialize() if error else [{"message": "Something went wrong"}])
            raw_headers = [
                (b"content-type", b"application/json"),
                (b"x-request-id", request_id.encode("latin-1")),
                *[(k.lower().encode(), v.encode()) for k, v in ((error.headers or {}) if error else {}).items()],
            ]
            if isinstance(error, PayloadTooLargeError | ServiceUnavailableError):
                raw_headers.append((b"connection", b"close"))
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": json.dumps(body).encode()})
        finally:
            duration = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.request_latency.labels(method, route).observe(duration)
            level = logging.WARNING if status >= 500 else self.routine.level(duration)
            if level is not None and route not in ("/healthz", "/readyz", "/metrics"):
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
