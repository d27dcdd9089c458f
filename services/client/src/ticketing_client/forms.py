"""HTML form posts: reading ``application/x-www-form-urlencoded`` bodies and refusing cross-site posts."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from fastapi import Request

from ticketing_common.errors import ForbiddenError, UnsupportedMediaTypeError

FORM_TYPE = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> dict[str, str]:
    """The posted fields (first value of each). The pages' forms all use the default encoding, which needs no
    multipart parser; the body size is already bounded by the request middleware."""
    check_same_origin(request)
    body = await request.body()
    if not body:
        return {}  # a form with nothing to send (a lone button), whatever its declared type
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise UnsupportedMediaTypeError(f"Content-Type must be {FORM_TYPE}")
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        fields.setdefault(name, value)
    return fields


def check_same_origin(request: Request) -> None:
    """Refuse a post from another site (CSRF). The session cookie is SameSite=Lax, which already keeps it off
    cross-site posts; this also covers posts that need no cookie (signing someone out, or in as someone else).

    Browsers send ``Origin`` on every POST; its host must be the one the visitor sees, which the gateway (or the
    ingress) passes on as ``X-Forwarded-Host``.
    """
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise ForbiddenError("This form was sent from another site")
    origin = request.headers.get("origin")
    if not origin:
        return
    seen_host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    if origin == "null" or _host(urlsplit(origin).netloc) != _host(seen_host.split(",")[0]):
        raise ForbiddenError("This form was sent from another site")


def _host(value: str) -> str:
    """``host[:port]`` compared case-insensitively, the default ports dropped (browsers omit them in Origin)."""
    host = value.strip().lower()
    return host.removesuffix(":80").removesuffix(":443")
