"""The route table: which path prefix goes to which service.

The local gateway routes with it, the web client calls each API where it lives with it, and the Kubernetes
Ingress is checked against it, so none of them can drift. The first matching prefix wins; ``/`` (the web client)
matches everything else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    prefix: str
    service: str

    def matches(self, path: str) -> bool:
        return self.prefix == "/" or path == self.prefix or path.startswith(self.prefix + "/")


ROUTES: tuple[Route, ...] = (
    Route("/api/users", "auth"),
    Route("/api/tickets", "tickets"),
    Route("/api/orders", "orders"),
    Route("/api/payments", "payments"),
    Route("/", "client"),
)


def route_for(path: str) -> Route | None:
    return next((route for route in ROUTES if route.matches(path)), None)
