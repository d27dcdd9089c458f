"""Builds the web client's app: pages, static files, health, and errors as HTML pages or the shared JSON.

Not built with ``ticketing_common.app.create_app``: the client has no database and no events. It reuses the
shared logging, request middleware (request ids, body limit, metrics, one log line per request), health check
and error format.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from ticketing_client.api import create_http_client
from ticketing_client.config import Settings
from ticketing_client.error_pages import (
    ErrorPagesOutsideMiddleware,
    Handler,
    UnexpectedErrorMiddleware,
    install_error_pages,
)
from ticketing_client.event_pages import router as event_pages
from ticketing_client.rendering import (
    STATIC_DIR,
    SecurityHeadersMiddleware,
    content_security_policy,
    create_environment,
)
from ticketing_client.router import router
from ticketing_common import tracing
from ticketing_common.app import healthz
from ticketing_common.errors import error_body
from ticketing_common.logging import configure_observability
from ticketing_common.metrics import Metrics
from ticketing_common.middleware import BodyLimitMiddleware, RequestMiddleware

logger = logging.getLogger("ticketing.client")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_observability(settings)
    app = FastAPI(title="ticketing client", lifespan=http_client, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.templates = create_environment(settings)
    app.state.metrics = Metrics()
    install_error_pages(app)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", app.state.metrics.endpoint, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    app.include_router(event_pages)
    app.add_middleware(UnexpectedErrorMiddleware, handler=cast(Handler, app.exception_handlers[Exception]))
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics)
    app.add_middleware(ErrorPagesOutsideMiddleware)
    # Outermost, so that every answer carries them, the pages made from the request middleware's errors too.
    app.add_middleware(SecurityHeadersMiddleware, policy=content_security_policy(settings))
    return app


@asynccontextmanager
async def http_client(app: FastAPI) -> AsyncIterator[None]:
    """The pooled HTTP client to the APIs (``app.state.http``), open as long as the app runs."""
    settings: Settings = app.state.settings
    async with create_http_client(settings) as http:
        app.state.http = http
        logger.info("client started", extra={"port": settings.port, "api_url": settings.api_url})
        yield
    await asyncio.to_thread(tracing.flush_tracing)


async def readyz(request: Request) -> JSONResponse:
    """Ready when the gateway answers. Not its ``/healthz``, which asks this very endpoint: a cheap API call."""
    http: aiohttp.ClientSession = request.app.state.http
    settings: Settings = request.app.state.settings
    try:
        async with http.get(settings.api_url + "/api/users/currentuser", timeout=aiohttp.ClientTimeout(total=2)):
            pass
    except (aiohttp.ClientError, TimeoutError):
        return JSONResponse(error_body([{"message": "gateway unreachable"}]), status_code=503)
    return JSONResponse({"status": "ready"})
