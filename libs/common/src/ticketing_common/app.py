"""The application factory every service uses: routers + listeners in, a production-ready FastAPI app out.

It wires the database, the event runtime (outbox publisher and listeners), the shared error handlers, health
(``/healthz`` alive, ``/readyz`` database and NATS reachable, sessions checkable), Prometheus ``/metrics``, a body size limit and
a structured log line for each failed, slow or sampled request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from ticketing_common import tracing
from ticketing_common.auth import JwksKeys, PublicKeys, SessionVerifier
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
from ticketing_common.logging import configure_observability
from ticketing_common.metrics import Metrics
from ticketing_common.middleware import BodyLimitMiddleware, RequestMiddleware
from ticketing_common.process import freeze_startup_heap
from ticketing_common.revocations import Revocations

logger = logging.getLogger("ticketing.http")

T = TypeVar("T")


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    listeners: Callable[[FastAPI], Sequence[Listener[Event]]] | None = None,
    while_running: Callable[[FastAPI], AbstractAsyncContextManager[object]] | None = None,
    session_keys: PublicKeys | None = None,
) -> FastAPI:
    """Build a service app.

    The one lifecycle hook: ``while_running(app)`` is entered once the database is open and ``app.state.events``
    exists, and exited before they close; a service creates its clients and background work there, on
    ``app.state``. ``listeners(app)`` then builds the event listeners from the running app (its settings,
    database, JetStream and clients), once, when NATS is connected. Session cookies are checked with
    ``session_keys`` (auth's own key ring) or else with the JWK Set at ``JWKS_URL``.
    """
    configure_observability(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await create_database(
            settings.database_dsn, service=settings.service_name, size=settings.database_pool_size
        )
        app.state.db = db
        events = EventRuntime(
            settings,
            db=db,
            listeners=partial(listeners, app) if listeners is not None else None,
            metrics=app.state.metrics,
        )
        app.state.events = events
        keys = session_keys if session_keys is not None else JwksKeys(settings.jwks_url)
        revocations = Revocations(token_seconds=settings.jwt_expires_seconds)
        app.state.sessions = SessionVerifier(keys, revocations)
        events.when_connected(partial(revocations.follow, stream=settings.nats_stream), name="session-revocations")
        loading = asyncio.create_task(keys.keep_loading()) if isinstance(keys, JwksKeys) else None
        try:
            async with while_running(app) if while_running is not None else nullcontext():
                events.start()
                freeze_startup_heap()
                logger.info("service started", extra={"port": settings.port})
                try:
                    yield
                finally:
                    await events.stop()
        finally:
            if loading is not None:
                loading.cancel()
            await db.pool.close()
            await asyncio.to_thread(tracing.flush_tracing)

    app = FastAPI(title=title, lifespan=lifespan, version="1.0.0")
    app.state.settings = settings
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", app.state.metrics.endpoint, include_in_schema=False)
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(  # outermost: it also answers the body limit's 413
        RequestMiddleware,
        metrics=app.state.metrics,
        slow_seconds=settings.log_slow_seconds,
        sample_every=settings.log_sample_every,
    )
    app.openapi = _openapi_with_shared_errors(app)  # type: ignore[method-assign]
    return app


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
    if not request.app.state.sessions.ready:
        problems.append("sessions cannot be checked yet (public keys or revocations not loaded)")
    if problems:
        return JSONResponse(error_body([{"message": p} for p in problems]), status_code=503)
    return JSONResponse({"status": "ready"})


def from_app_state(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A request dependency answering ``app.state.<name>`` (what ``create_app`` or ``while_running`` put there),
    checked to be a ``kind``: each service's ``dependencies.py`` names its own with it."""

    async def dependency(request: Request) -> T:
        value = getattr(request.app.state, name)
        if not isinstance(value, kind):
            raise TypeError(f"app.state.{name} is a {type(value).__name__}, not a {kind.__name__}")
        return value

    dependency.__name__ = f"app_state_{name}"
    return dependency


DatabaseDep = Annotated[Database, Depends(from_app_state("db", Database))]
"""The service's database: use cases open a unit of work on it, or read from its pool."""
