"""POST /api/users/signup: validation, normalisation, uniqueness under concurrency, the cookie and user.created."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from ticketing_common.testing import ReceivedEvent, claims_of

PASSWORD = "correct horse battery"
EMAIL_MESSAGE = "Email must be valid"
PASSWORD_MESSAGE = "Password must be between 8 and 128 characters"
StoredUser = Callable[[str], Awaitable[asyncpg.Record | None]]


async def _signup(client: httpx.AsyncClient, email: Any, password: Any = PASSWORD) -> httpx.Response:
    return await client.post("/api/users/signup", json={"email": email, "password": password})


async def _count_users(app: FastAPI) -> int:
    count: int = await app.state.db.pool.fetchval("SELECT count(*) FROM users")
    return count


async def test_returns_201_with_id_and_email_and_signs_the_user_in(
    client: httpx.AsyncClient, session_cookie: Callable[[httpx.Response], dict[str, Any]]
) -> None:
    response = await _signup(client, "ada@example.com")

    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "email": "ada@example.com"}
    token = claims_of(str(session_cookie(response)["value"]))
    assert token is not None
    assert (str(token.id), token.email) == (body["id"], "ada@example.com")
    current = await client.get("/api/users/currentuser")
    assert current.json()["currentUser"]["id"] == body["id"]


async def test_trims_and_lower_cases_the_email(client: httpx.AsyncClient, stored_user: StoredUser) -> None:
    response = await _signup(client, "  Ada.Lovelace@Example.COM \n")

    assert response.status_code == 201
    assert response.json()["email"] == "ada.lovelace@example.com"
    assert await stored_user("ada.lovelace@example.com") is not None


async def test_stores_an_argon2id_hash_with_the_configured_parameters_never_the_password(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    await _signup(client, "ada@example.com")

    user = await stored_user("ada@example.com")
    assert user is not None
    assert user["password_hash"].startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert PASSWORD not in user["password_hash"]
    assert user["version"] == 0


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "not-an-email",
        "ada@",
        "@example.com",
        "ada@example",
        "ada@@example.com",
        "ada lovelace@example.com",
        "ada@localhost",
        42,
        None,
        ["ada@example.com"],
    ],
)
async def test_returns_400_on_the_email_field_when_it_is_not_a_valid_address(
    client: httpx.AsyncClient, app: FastAPI, email: Any
) -> None:
    response = await _signup(client, email)

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": EMAIL_MESSAGE, "field": "email"}]}
    assert "set-cookie" not in response.headers
    assert await _count_users(app) == 0


@pytest.mark.parametrize("password", ["", "seven77", "x" * 129, 12345678, None])
async def test_returns_400_on_the_password_field_unless_it_has_8_to_128_characters(
    client: httpx.AsyncClient, app: FastAPI, password: Any
) -> None:
    response = await _signup(client, "ada@example.com", password)

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": PASSWORD_MESSAGE, "field": "password"}]}
    assert await _count_users(app) == 0


@pytest.mark.parametrize("password", ["eight888", "x" * 128, "ünïcødé!"])
async def test_accepts_passwords_at_the_length_bounds(client: httpx.AsyncClient, password: str) -> None:
    assert (await _signup(client, f"{uuid.uuid4().hex[:8]}@example.com", password)).status_code == 201


async def test_reports_every_invalid_field_at_once(client: httpx.AsyncClient) -> None:
    response = await _signup(client, "nope", "short")

    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"message": EMAIL_MESSAGE, "field": "email"},
            {"message": PASSWORD_MESSAGE, "field": "password"},
        ]
    }


async def test_missing_fields_are_reported_by_name(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/users/signup", json={})

    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"message": "email is required", "field": "email"},
            {"message": "password is required", "field": "password"},
        ]
    }


async def test_returns_400_email_in_use_for_a_taken_email_whatever_its_case(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    assert (await _signup(client, "ada@example.com")).status_code == 201

    response = await _signup(client, " ADA@example.com")

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Email in use", "field": "email"}]}
    assert "set-cookie" not in response.headers
    assert await _count_users(app) == 1


async def test_concurrent_signups_with_one_email_create_exactly_one_user(
    client: httpx.AsyncClient, app: FastAPI, published: Callable[[str], Awaitable[list[ReceivedEvent]]]
) -> None:
    variants = ["ada@example.com", "ADA@example.com", " Ada@Example.com "] * 4

    responses = await asyncio.gather(*(_signup(client, email) for email in variants))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [400] * (len(variants) - 1)
    refused = [r.json() for r in responses if r.status_code == 400]
    assert all(body == {"errors": [{"message": "Email in use", "field": "email"}]} for body in refused)
    assert await _count_users(app) == 1
    [created] = [r.json() for r in responses if r.status_code == 201]
    events = await published("user.created")
    assert [e.data for e in events] == [{"id": created["id"], "email": "ada@example.com", "version": 0}]


async def test_publishes_user_created_with_version_0_through_the_outbox(
    client: httpx.AsyncClient, published: Callable[[str], Awaitable[list[ReceivedEvent]]]
) -> None:
    response = await _signup(client, "Ada@Example.com")

    [event] = await published("user.created")
    assert event.data == {"id": response.json()["id"], "email": "ada@example.com", "version": 0}
    assert event.headers["ce-type"] == "user.created"
    assert event.headers["ce-source"] == "auth"
    assert event.headers["Nats-Msg-Id"] == event.headers["ce-id"]
    assert await published("user.updated") == []


async def test_a_refused_signup_publishes_nothing(
    client: httpx.AsyncClient, published: Callable[[str], Awaitable[list[ReceivedEvent]]]
) -> None:
    await _signup(client, "ada@example.com")
    await _signup(client, "ada@example.com")
    await _signup(client, "bad-email")

    assert len(await published("user.created")) == 1
