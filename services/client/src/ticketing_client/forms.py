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


CROSS_SITE = "This form was sent from another site"
UNPROVEN = (
    "This form did not say which site it was sent from (no Origin or Referer header); "
    "please send it again from this site's page"
)
DEFAULT_PORTS = {"http": "80", "https": "443"}


def check_same_origin(request: Request) -> None:
    """Refuse a form post that does not prove it comes from one of this site's pages (CSRF), with 403.

    The rule: ``Origin`` present -> it must be this site's origin (``null`` never is); no ``Origin`` -> the
    ``Referer`` must be on this site's origin; neither -> refused too. Browsers send ``Origin`` on every POST (and
    ``null`` when the sending page hides itself), and this site's pages send ``Referer`` to themselves
    (``Referrer-Policy: same-origin``), so only non-browser callers and very old browsers send neither, and the
    latter are exactly the ones a foreign page can strip of its ``Referer``. The session cookie is SameSite=Lax
    besides, but sign-in and sign-out need no cookie.

    This site's origin is the one the visitor's browser used: the scheme and host the gateway (or the ingress)
    saw, which it passes on as ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` after dropping any the visitor sent.
    A foreign page cannot set those headers, nor ``Host``, on the visitor's post, so only the visitor could
    forge them, against themselves.
    """
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise ForbiddenError(CROSS_SITE)
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if not referer:
            raise ForbiddenError(UNPROVEN)
        origin = _origin_of(referer)
    if origin.strip().lower() == "null" or _normalized(origin) != own_origin(request):
        raise ForbiddenError(CROSS_SITE)


def own_origin(request: Request) -> str:
    """``scheme://host[:port]`` as the visitor's browser addressed this site (default ports dropped)."""
    scheme = _first(request.headers.get("x-forwarded-proto")) or request.url.scheme
    host = _first(request.headers.get("x-forwarded-host")) or request.headers.get("host", "")
    return _normalized(f"{scheme}://{host}")


def _first(value: str | None) -> str:
    """The first of a proxy chain's comma-separated values: what the outermost proxy saw."""
    return (value or "").split(",")[0].strip()


def _origin_of(url: str) -> str:
    """The origin part of a ``Referer`` URL (an unreadable one matches nothing)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "null"
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"


def _normalized(origin: str) -> str:
    """An origin compared case-insensitively, without a default port (browsers omit it in ``Origin``)."""
    try:
        parts = urlsplit(origin.strip().lower())
    except ValueError:
        return "null"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    default = DEFAULT_PORTS.get(parts.scheme)
    if default and netloc.endswith(f":{default}"):
        netloc = netloc.removesuffix(f":{default}")
    return f"{parts.scheme}://{netloc}"
