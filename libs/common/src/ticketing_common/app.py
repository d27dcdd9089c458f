"""The application factory every service uses: routers + listeners in, a production-ready FastAPI app out.

It wires the database, the event runtime (outbox publisher and listeners), the shared error handlers, health
(``/healthz`` alive, ``/readyz`` database and NATS reachable), Prometheus ``/metrics``, a body size limit and
a structured log line for each failed, slow or sampled request.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse

from ticketing_common.config import ServiceSettings
from ticketing_common.db import Database, create_database
from ticketing_common.errors import (
    ERROR_DESCRIPTIONS,
    ErrorBody,
    error_body,
    install_error_handlers,
)
from ticketing_common.events.catalogue import Event
from ticketing_common.events.listener import Listener
from ticketing_common.events.runtime import EventRuntime
from ticketing_common.logging import configure_logging
from ticketing_common.metrics import Metrics
from ticketing_common.middleware import BodyLimitMiddleware, RequestMiddleware
from ticketing_common.process import freeze_startup_heap

logger = logging.getLogger("ticketing.http")


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
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(  # outermost: it also answers the body limit's 413
        RequestMiddleware,
        metrics=app.state.metrics,
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
