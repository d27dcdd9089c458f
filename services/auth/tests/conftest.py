"""The auth service under test, against the session's real PostgreSQL and NATS.

Argon2 runs with the cheapest parameters here so the suite stays fast; the tests about hashing cost and
timing build apps of their own with realistic ones (``another_app``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from ticketing_auth.config import Settings
from ticketing_auth.main import MIGRATIONS_DIR, create_app
from ticketing_common.testing import ServiceUnderTest, http_client, running

CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 8, "argon2_parallelism": 1}
PASSWORD = "correct horse battery"


@pytest.fixture
def service() -> ServiceUnderTest:
    return ServiceUnderTest(Settings, create_app, MIGRATIONS_DIR, overrides=CHEAP_ARGON2)


AnotherApp = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def another_app(settings: Settings) -> AnotherApp:
    """A second replica of the service on the same database and bus, with some settings changed; its client
    connects from ``peer``."""

    @contextlib.asynccontextmanager
    async def start(*, peer: str = "127.0.0.1", **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings.model_copy(update=overrides))
        async with running(app), http_client(app, peer=peer) as client:
            yield client

    return start


ClientFrom = Callable[[str], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def client_from(app: FastAPI) -> ClientFrom:
    """A client of the app whose requests come from this TCP peer address."""

    def connect(peer: str) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
        return http_client(app, peer=peer)

    return connect


SignUp = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def sign_up(app: FastAPI) -> SignUp:
    """Create a user through the API (on a client of its own, so ``client`` stays signed out); returns its JSON."""

    async def create(email: str | None = None, password: str = PASSWORD) -> dict[str, Any]:
        async with http_client(app) as other:
            response = await other.post(
                "/api/users/signup",
                json={"email": email or f"user-{uuid.uuid4().hex[:8]}@example.com", "password": password},
            )
        assert response.status_code == 201, response.text
        user: dict[str, Any] = response.json()
        return user

    return create


StoredUser = Callable[[str], Awaitable[asyncpg.Record | None]]


@pytest.fixture
def stored_user(app: FastAPI) -> StoredUser:
    """The ``users`` row with this email as the database has it."""

    async def load(email: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await app.state.db.pool.fetchrow("SELECT * FROM users WHERE email = $1", email)
        return row

    return load


def _session_cookie(response: httpx.Response) -> dict[str, str | bool]:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith("session=")]
    first, *attributes = (part.strip() for part in header.split(";"))
    cookie: dict[str, str | bool] = {"value": first.partition("=")[2]}
    for attribute in attributes:
        name, sep, value = attribute.partition("=")
        cookie[name.lower()] = value if sep else True
    return cookie


SessionCookie = Callable[[httpx.Response], dict[str, str | bool]]


@pytest.fixture
def session_cookie() -> SessionCookie:
    """Reads the ``session`` Set-Cookie of a response: {"value": ..., attribute (lower-cased): value or True}."""
    return _session_cookie
