"""Builds the web client's app: pages, static files, health, and errors as HTML pages or the shared JSON.

Not built with ``ticketing_common.app.create_app``: the client has no database and no events. It reuses the
shared logging, request middleware (request ids, body limit, metrics, one log line per request) and error
format.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import quote

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketing_client.api import create_http_client
from ticketing_client.config import Settings
from ticketing_client.rendering import STATIC_DIR, content_security_policy, create_environment, render
from ticketing_client.router import router
from ticketing_common.errors import error_body, install_error_handlers
from ticketing_common.logging import configure_logging
from ticketing_common.metrics import Metrics
from ticketing_common.middleware import BodyLimitMiddleware, RequestMiddleware

logger = logging.getLogger("ticketing.client")

ERROR_HEADINGS = {
    400: "That did not work",
    401: "Please sign in",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    413: "Too much data",
    415: "That did not work",
    429: "Too many attempts",
    503: "Service unavailable",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The client app. Its pooled HTTP client to the gateway lives as long as the app."""
    settings = settings or Settings()
    configure_logging(settings.service_name, level=settings.log_level, json_lines=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with create_http_client(settings) as http:
            app.state.http = http
            logger.info("client started", extra={"port": settings.port, "api_url": settings.api_url})
            yield

    app = FastAPI(title="ticketing client", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.templates = create_environment(settings)
    app.state.metrics = Metrics()
    _install_error_pages(app)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", app.state.metrics.endpoint, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    app.add_middleware(UnexpectedErrorMiddleware, handler=cast(Handler, app.exception_handlers[Exception]))
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics)
    app.add_middleware(ErrorPagesOutsideMiddleware)
    # Outermost, so that every answer carries them, the pages made from the request middleware's errors too.
    app.add_middleware(SecurityHeadersMiddleware, policy=content_security_policy(settings))
    return app


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


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


# -- errors ------------------------------------------------------------------------------------------------------


def wants_html(request: Request) -> bool:
    """A browser navigating or posting a form gets an HTML page; API-ish calls (fetch, curl) get the JSON."""
    path = request.url.path
    if path.startswith(("/api/", "/static/")) or path.endswith("/status"):
        return False
    return "text/html" in request.headers.get("accept", "")


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _install_error_pages(app: FastAPI) -> None:
    """The shared handlers decide status and messages; for browsers the same answer is shown as a page."""
    install_error_handlers(app)
    for exc_class, handler in list(app.exception_handlers.items()):
        app.add_exception_handler(exc_class, _as_page(cast(Handler, handler)))


def _as_page(json_handler: Handler) -> Handler:
    async def handler(request: Request, exc: Exception) -> Response:
        response = await json_handler(request, exc)
        if not wants_html(request):
            return response
        return error_page(request, response.status_code, bytes(response.body), response.headers.get("retry-after"))

    return handler


def error_page(request: Request, status: int, json_body: bytes, retry_after: str | None) -> Response:
    """The shared JSON error answer shown as a page (or, for a 401, a redirect to sign in and back)."""
    if status == 401:
        # Back to this page after signing in; a form post cannot be replayed, so home then.
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        here = here if request.method == "GET" else "/"
        return RedirectResponse(f"/signin?next={quote(here, safe='/')}", status_code=303)
    try:
        body: Any = json.loads(json_body) if json_body else {}
    except ValueError:
        body = {}
    errors = body.get("errors", []) if isinstance(body, dict) else []
    messages = [e.get("message", "") for e in errors if isinstance(e, dict)]
    page = render(
        request,
        "error.html",
        status_code=status,
        heading=ERROR_HEADINGS.get(status, "Something went wrong"),
        messages=messages or ["Something went wrong"],
    )
    if retry_after:
        page.headers["retry-after"] = retry_after
    return page


# -- headers -----------------------------------------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """CSP (this origin only), no sniffing, no framing, same-origin referrers; pages are never cached."""

    def __init__(self, app: ASGIApp, *, policy: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + self.headers
                if not static and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ErrorPagesOutsideMiddleware:
    """Errors the shared request middleware answers itself, before any handler runs (a form post over the body
    limit: 413), are pages for browsers too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not wants_html(Request(scope)):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body = b""

        async def to_page(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start" and message["status"] >= 400:
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"application/json"):
                    held = message
                    return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body += message.get("body", b"")
            if message.get("more_body", False):
                return
            headers = dict(held.get("headers", []))
            retry_after = headers.get(b"retry-after", b"").decode("latin-1") or None
            page = error_page(Request(scope), held["status"], body, retry_after)
            for name in (b"x-request-id", b"connection"):
                if name in headers:
                    page.raw_headers.append((name, headers[name]))
            await page(scope, receive, send)

        await self.app(scope, receive, to_page)


class UnexpectedErrorMiddleware:
    """A bug answers 500 like every other error: a page for browsers, the shared JSON otherwise.

    Starlette runs the ``Exception`` handler outside every middleware, where the shared request middleware would
    already have answered with JSON; this brings it inside.
    """

    def __init__(self, app: ASGIApp, *, handler: Handler) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = await self.handler(Request(scope, receive), exc)
            await response(scope, receive, send)
