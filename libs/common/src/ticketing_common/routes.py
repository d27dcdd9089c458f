"""The route table: which path prefix goes to which service.

The local gateway routes with it, the web client calls each API where it lives with it, and the Kubernetes
Ingress is checked against it, so none of them can drift. The first matching prefix wins; ``/`` (the web client)
matches everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import field_validator
from pydantic_settings import BaseSettings
from yarl import URL


@dataclass(frozen=True)
class Route:
    prefix: str
    service: str

    def matches(self, path: str) -> bool:
        return self.prefix == "/" or path == self.prefix or path.startswith(self.prefix + "/")


ROUTES: tuple[Route, ...] = (
    Route("/api/users", "auth"),
    Route("/.well-known/jwks.json", "auth"),
    Route("/api/tickets", "tickets"),
    Route("/api/events", "tickets"),
    Route("/api/orders", "orders"),
    Route("/api/payments", "payments"),
    Route("/api/queue", "queue"),
    Route("/", "client"),
)


def route_for(path: str) -> Route | None:
    return next((route for route in ROUTES if route.matches(path)), None)


class ServiceUrls(BaseSettings):
    """Where each service of the route table listens, ``<SERVICE>_URL`` (empty: not set here); for the processes that
    call the services over HTTP (the gateway, the web client)."""

    auth_url: str = ""
    tickets_url: str = ""
    orders_url: str = ""
    payments_url: str = ""
    queue_url: str = ""
    client_url: str = ""

    @field_validator("auth_url", "tickets_url", "orders_url", "payments_url", "queue_url", "client_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        """Scheme, host and port only, so a request's path is all a caller adds."""
        if not value:
            return value
        parsed = URL(value.rstrip("/"))
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.host
            or parsed.user
            or parsed.path not in ("", "/")
            or parsed.query_string
            or parsed.fragment
        ):
            raise ValueError(f"must be http(s)://host:port with nothing else, not {value!r}")
        return str(parsed)

    def service_urls(self) -> dict[str, URL]:
        """The services with a URL, by their route table name."""
        urls = {route.service: getattr(self, f"{route.service}_url") for route in ROUTES}
        return {service: URL(url) for service, url in urls.items() if url}
