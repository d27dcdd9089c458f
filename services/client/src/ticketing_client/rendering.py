"""Jinja2 templates (autoescaped: every title, email and message is HTML-escaped), page responses, and the headers
every answer carries (what a page may load, framing, caching)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketing_client.config import Settings
from ticketing_client.presenters import format_amount, format_clock, format_moment, format_price
from ticketing_common.auth import COOKIE_NAME

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
STRIPE_JS = "https://js.stripe.com/v3/"


def create_environment(settings: Settings) -> Environment:
    """The template environment: HTML autoescaping always on, undefined names are errors, money filters."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["price"] = lambda value: format_price(value, settings.currency)
    env.filters["amount"] = format_amount
    env.filters["clock"] = format_clock
    env.filters["moment"] = format_moment
    env.globals["settings"] = settings
    env.globals["stripe_js"] = STRIPE_JS
    return env


def render_template(env: Environment, name: str, **context: Any) -> str:
    """A template rendered with the defaults every page expects (``user`` unknown, no errors)."""
    defaults: dict[str, Any] = {"user": None, "signed_in": False, "current_path": "", "errors": [], "field_errors": {}}
    return env.get_template(name).render({**defaults, **context})


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page for this request: the header knows who is signed in (or, on an early error, guesses from the
    cookie so the visitor still sees their own links)."""
    env: Environment = request.app.state.templates
    user = getattr(request.state, "user", None)
    resolved = getattr(request.state, "user_resolved", False)
    signed_in = bool(user) if resolved else bool(request.cookies.get(COOKIE_NAME))
    html = render_template(env, name, user=user, signed_in=signed_in, current_path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code)


def content_security_policy(settings: Settings) -> str:
    """Everything from this origin only; Stripe's script, frames and API only in real Stripe mode."""
    script = "'self'"
    frames = "'none'"
    connect = "'self'"
    if settings.stripe_elements:
        script += " https://js.stripe.com"
        frames = "https://js.stripe.com https://hooks.stripe.com"
        connect += " https://api.stripe.com"
    return (
        f"default-src 'self'; script-src {script}; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        f"connect-src {connect}; frame-src {frames}; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'self'; object-src 'none'"
    )


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
