"""Errors as pages: the shared handlers decide status and messages (``ticketing_common.errors``); a browser gets
the same answer as an HTML page, anything else the shared JSON.

Two middlewares carry that to the errors no handler sees: those the shared request middleware answers itself
(a form post over the body limit) and a bug's 500, which Starlette would answer outside every middleware.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketing_client.rendering import render
from ticketing_common.errors import install_error_handlers

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


def wants_html(request: Request) -> bool:
    """A browser navigating or posting a form gets an HTML page; API-ish calls (fetch, curl) get the JSON."""
    path = request.url.path
    if path.startswith(("/api/", "/static/")) or path.endswith("/status"):
        return False
    return "text/html" in request.headers.get("accept", "")


Handler = Callable[[Request, Exception], Awaitable[Response]]


def install_error_pages(app: FastAPI) -> None:
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
