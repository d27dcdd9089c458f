"""The API as a buyer or seller sees it through HTTP: sign-ups, tickets, orders, payments (aiohttp)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")
PASSWORD = "correct horse battery"  # noqa: S105 (a test account's password)


@dataclass(frozen=True)
class User:
    id: str
    email: str
    cookie: str  # "session=..."

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": self.cookie}


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    seconds: float


def session(connections: int, timeout: float = 30.0) -> aiohttp.ClientSession:
    """One pooled client with at most ``connections`` connections and no cookie jar (cookies are per user)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections, keepalive_timeout=60),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    user: User | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request; the status, the decoded body (or text) and the latency as the client saw it."""
    started = time.perf_counter()
    all_headers = {**(user.headers if user else {}), **(headers or {})}
    async with http.request(method, url, json=json, headers=all_headers) as response:
        raw = await response.read()
        elapsed = time.perf_counter() - started
        body: Any
        try:
            body = await response.json(content_type=None) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        if response.status in (200, 201) and "set-cookie" in response.headers and user is None:
            body = {"__cookie": response.headers.getall("set-cookie"), **(body or {})}
        return Reply(response.status, body, elapsed)


def _session_cookie(set_cookies: Iterable[str]) -> str:
    for header in set_cookies:
        first = header.split(";", 1)[0]
        if first.startswith("session="):
            return first
    raise RuntimeError("the sign-up answer carried no session cookie")


async def sign_up(http: aiohttp.ClientSession, base: str, prefix: str) -> User:
    email = f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"
    reply = await call(http, "POST", base + "/api/users/signup", json={"email": email, "password": PASSWORD})
    if reply.status != 201:
        raise RuntimeError(f"sign-up failed: {reply.status} {reply.body}")
    return User(reply.body["id"], email, _session_cookie(reply.body["__cookie"]))


async def gather_limited(
    count: int, make: Callable[[int], Awaitable[T]], *, concurrency: int, progress: Callable[[], None] | None = None
) -> list[T]:
    """Run ``make(i)`` for i in range(count), at most ``concurrency`` at a time, results in order."""
    results: list[T | None] = [None] * count
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            results[index] = await make(index)
            if progress is not None:
                progress()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return [r for r in results if r is not None]


async def sign_up_many(
    http: aiohttp.ClientSession, base: str, prefix: str, count: int, *, progress: Callable[[], None] | None = None
) -> list[User]:
    return await gather_limited(count, lambda _: sign_up(http, base, prefix), concurrency=8, progress=progress)


async def create_ticket(
    http: aiohttp.ClientSession, base: str, seller: User, title: str, price: float
) -> dict[str, Any]:
    reply = await call(http, "POST", base + "/api/tickets", user=seller, json={"title": title, "price": price})
    if reply.status != 201:
        raise RuntimeError(f"ticket creation failed: {reply.status} {reply.body}")
    body: dict[str, Any] = reply.body
    return body


async def create_tickets(
    http: aiohttp.ClientSession,
    base: str,
    sellers: list[User],
    count: int,
    *,
    concurrency: int = 16,
    progress: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """``count`` tickets, listed round-robin by ``sellers``, prices from 5.00 to 104.99."""

    def make(i: int) -> Awaitable[dict[str, Any]]:
        return create_ticket(
            http, base, sellers[i % len(sellers)], f"Flash sale seat {i}", round(5 + (i * 37 % 10000) / 100, 2)
        )

    return await gather_limited(count, make, concurrency=concurrency, progress=progress)
