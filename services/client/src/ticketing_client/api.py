"""The APIs as the client sees them: HTTP calls made with the visitor's session cookie and address.

One pooled ``aiohttp.ClientSession`` serves every visitor, so it must never remember cookies: its jar refuses
them all, the visitor's ``session`` is sent per call, and ``Set-Cookie`` answers are handed back to be relayed
to the browser. aiohttp rather than httpx: its pool keeps connections alive under hundreds of calls in flight,
where httpx's reconnected and cost more CPU than the pages (``bench/README.md``, the web client under load).
"""

from __future__ import annotations

import json as jsonlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ticketing_client.config import Settings
from ticketing_client.presenters import retry_after_text
from ticketing_common import tracing
from ticketing_common.auth import COOKIE_NAME
from ticketing_common.errors import CustomError, ErrorItem, ServiceUnavailableError
from ticketing_common.routes import route_for
from ticketing_common.schemas import parse_path_id

logger = logging.getLogger("ticketing.client.api")

UNAVAILABLE_MESSAGE = "The ticketing service is unavailable right now, please try again in a moment"


class ApiError(CustomError):
    """An API answered with an error; shown to the visitor with the API's own status and messages."""

    def __init__(self, status_code: int, errors: list[ErrorItem]) -> None:
        super().__init__(errors[0]["message"] if errors else "Something went wrong")
        self.status_code = status_code
        self.errors = errors or [{"message": "Something went wrong"}]

    def serialize(self) -> list[ErrorItem]:
        return self.errors


@dataclass
class ApiResponse:
    """What an API answered: status, JSON body, and the cookies it set (to relay to the browser)."""

    status: int
    body: Any
    set_cookies: list[str] = field(default_factory=list)
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def errors(self) -> list[ErrorItem]:
        """The shared-format errors of a failed call (a generic one if the body is not in that format)."""
        raw = self.body.get("errors") if isinstance(self.body, dict) else None
        items: list[ErrorItem] = []
        for entry in raw if isinstance(raw, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("message"), str):
                item: ErrorItem = {"message": entry["message"]}
                if isinstance(entry.get("field"), str):
                    item["field"] = entry["field"]
                items.append(item)
        if not items and not self.ok:
            items.append({"message": UNAVAILABLE_MESSAGE if self.status >= 500 else "Something went wrong"})
        when = retry_after_text(self.retry_after) if not self.ok else None
        if when:
            items.append({"message": when})
        return items

    def json_or_raise(self) -> Any:
        """The body of a successful call; otherwise an :class:`ApiError` carrying the API's answer."""
        if not self.ok:
            error = ApiError(self.status, self.errors)
            if self.retry_after:
                error.headers = {"Retry-After": self.retry_after}
            raise error
        return self.body


def create_http_client(settings: Settings) -> aiohttp.ClientSession:
    """The pooled HTTP client of the process: no cookie jar, the API host header, the configured timeout (which
    includes waiting for a free connection), and connections kept open so busy pages do not reconnect."""
    headers = {"Accept": "application/json", "User-Agent": "ticketing-client"}
    if settings.api_host:
        headers["Host"] = settings.api_host
    # Idle connections close after 4 s, before uvicorn's 5 s on the gateway does: a post is never sent on a
    # connection the server is closing (aiohttp retries only idempotent calls on a dropped kept-alive connection).
    connector = aiohttp.TCPConnector(limit=settings.api_max_connections, limit_per_host=0, keepalive_timeout=4)
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=settings.api_timeout_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    )


def as_uuid(value: str) -> str:
    """The id in canonical form; NotFoundError for anything that is not one (it can name no ticket or order)."""
    return str(parse_path_id(value))


class Api:
    """Calls on behalf of one visitor (``session`` is their cookie value, or None when signed out)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        settings: Settings,
        *,
        session: str | None,
        visitor_address: str,
        request_id: str | None = None,
    ) -> None:
        self.http = http
        self.api_url = settings.api_url
        self.api_urls = settings.api_urls()
        self.session = session
        self.visitor_address = visitor_address
        self.request_id = request_id

    def url(self, path: str) -> str:
        """Where ``path`` is served: its service's own URL when configured, else the gateway's."""
        route = route_for(path)
        base = self.api_urls.get(route.service, self.api_url) if route else self.api_url
        return base + path

    async def call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> ApiResponse:
        """One API call; ServiceUnavailableError when the gateway cannot be reached or does not answer in time.

        Any 5xx answer is a 503 to the visitor ("try again in a moment"); only a deliberate 503 keeps its message
        (e.g. the payment provider is unavailable), a crash's or a proxy's page never reaches the visitor."""
        # Believed by a service only from a trusted proxy; the gateway replaces it with its own peer.
        headers: dict[str, str] = {"X-Forwarded-For": self.visitor_address}
        if self.session:
            headers["Cookie"] = f"{COOKIE_NAME}={self.session}"
        if self.request_id:
            headers["X-Request-Id"] = self.request_id
        tracing.inject(headers)
        try:
            async with self.http.request(
                method, self.url(path), json=json, params=params, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                status = response.status
                set_cookies = response.headers.getall("Set-Cookie", [])
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("api unreachable", extra={"method": method, "path": path, "error": repr(exc)})
            raise ServiceUnavailableError(UNAVAILABLE_MESSAGE) from None
        try:
            body: Any = jsonlib.loads(raw) if raw else None
        except ValueError:
            body = None
        if status >= 500:
            logger.warning("api failed", extra={"method": method, "path": path, "status": status})
            body = body if status == 503 else None
            status = 503
        return ApiResponse(status, body, set_cookies, retry_after)

    # -- auth ------------------------------------------------------------------------------------------------

    async def current_user(self) -> dict[str, Any] | None:
        """The signed-in user ({id, email, ...}) or None; a visitor without a cookie costs no call."""
        if not self.session:
            return None
        result = await self.call("GET", "/api/users/currentuser")
        body = result.json_or_raise()
        user = body.get("currentUser") if isinstance(body, dict) else None
        return user if isinstance(user, dict) else None

    async def sign_up(self, email: str, password: str) -> ApiResponse:
        return await self.call("POST", "/api/users/signup", json={"email": email, "password": password})

    async def sign_in(self, email: str, password: str) -> ApiResponse:
        return await self.call("POST", "/api/users/signin", json={"email": email, "password": password})

    async def sign_out(self) -> ApiResponse:
        return await self.call("POST", "/api/users/signout")

    # -- tickets ---------------------------------------------------------------------------------------------

    async def list_tickets(self, *, limit: int, cursor: str | None) -> ApiResponse:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return await self.call("GET", "/api/tickets", params=params)

    async def get_ticket(self, ticket_id: uuid.UUID | str) -> ApiResponse:
        return await self.call("GET", f"/api/tickets/{as_uuid(str(ticket_id))}")

    async def create_ticket(self, *, title: str, price: Any) -> ApiResponse:
        return await self.call("POST", "/api/tickets", json={"title": title, "price": price})

    async def update_ticket(
        self, ticket_id: uuid.UUID | str, *, title: str, price: Any, version: int | None
    ) -> ApiResponse:
        body: dict[str, Any] = {"title": title, "price": price}
        if version is not None:
            body["version"] = version
        return await self.call("PUT", f"/api/tickets/{as_uuid(str(ticket_id))}", json=body)

    async def list_event_tickets(self, event_id: uuid.UUID | str, *, limit: int, cursor: str | None) -> ApiResponse:
        """An event's tickets held by no order, newest first."""
        params: dict[str, Any] = {"eventId": as_uuid(str(event_id)), "limit": limit}
        if cursor:
            params["cursor"] = cursor
        return await self.call("GET", "/api/tickets", params=params)

    # -- events ----------------------------------------------------------------------------------------------

    async def list_events(self, *, limit: int, cursor: str | None, q: str | None) -> ApiResponse:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        if q:
            params["q"] = q
        return await self.call("GET", "/api/events", params=params)

    async def get_event(self, event_id: uuid.UUID | str) -> ApiResponse:
        """The event with its ticket counts (``tickets: {available, reserved}``)."""
        return await self.call("GET", f"/api/events/{as_uuid(str(event_id))}")

    async def create_event(self, body: dict[str, Any]) -> ApiResponse:
        """``body``: name, venue, startsAt and, when given, onSaleAt and maxPerBuyer (left out: the API's
        defaults)."""
        return await self.call("POST", "/api/events", json=body)

    async def create_event_tickets(
        self, event_id: uuid.UUID | str, *, count: Any, price: Any, title: str | None
    ) -> ApiResponse:
        body: dict[str, Any] = {"count": count, "price": price}
        if title is not None:
            body["title"] = title
        return await self.call("POST", f"/api/events/{as_uuid(str(event_id))}/tickets", json=body)

    # -- the waiting room ------------------------------------------------------------------------------------

    async def join_queue(self, event_id: uuid.UUID | str) -> ApiResponse:
        """Join the event's waiting room (201), or see the place of an earlier join (200)."""
        return await self.call("POST", f"/api/queue/{as_uuid(str(event_id))}")

    async def get_place(self, event_id: uuid.UUID | str) -> ApiResponse:
        """The visitor's place in the event's waiting room; 404 when they have not joined it."""
        return await self.call("GET", f"/api/queue/{as_uuid(str(event_id))}")

    async def get_draw(self, event_id: uuid.UUID | str) -> ApiResponse:
        """The event's draw: commitment, then seed and entrants once drawn; 404 without a waiting room."""
        return await self.call("GET", f"/api/queue/{as_uuid(str(event_id))}/draw")

    # -- orders and payments ---------------------------------------------------------------------------------

    async def create_order(self, ticket_id: uuid.UUID | str) -> ApiResponse:
        return await self.call("POST", "/api/orders", json={"ticketId": as_uuid(str(ticket_id))})

    async def list_orders(self) -> ApiResponse:
        return await self.call("GET", "/api/orders")

    async def get_order(self, order_id: uuid.UUID | str) -> ApiResponse:
        return await self.call("GET", f"/api/orders/{as_uuid(str(order_id))}")

    async def cancel_order(self, order_id: uuid.UUID | str) -> ApiResponse:
        return await self.call("DELETE", f"/api/orders/{as_uuid(str(order_id))}")

    async def pay(self, order_id: uuid.UUID | str, token: str) -> ApiResponse:
        return await self.call("POST", "/api/payments", json={"orderId": as_uuid(str(order_id)), "token": token})
