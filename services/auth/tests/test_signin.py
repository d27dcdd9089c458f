"""POST /api/users/signin: credentials, no user enumeration (message and timing), hash upgrades."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from ticketing_auth.passwords import Passwords
from ticketing_common.testing import ReceivedEvent, claims_of

PASSWORD = "correct horse battery"
INVALID = {"errors": [{"message": "Invalid credentials"}]}
StoredUser = Callable[[str], Awaitable[asyncpg.Record | None]]


async def _signin(client: httpx.AsyncClient, email: Any, password: Any = PASSWORD) -> httpx.Response:
    return await client.post("/api/users/signin", json={"email": email, "password": password})


async def test_returns_200_with_id_and_email_and_a_session_cookie(
    client: httpx.AsyncClient,
    sign_up: Callable[..., Awaitable[dict[str, Any]]],
    session_cookie: Callable[[httpx.Response], dict[str, Any]],
) -> None:
    user = await sign_up("ada@example.com")

    response = await _signin(client, "ada@example.com")

    assert response.status_code == 200
    assert response.json() == user
    token = claims_of(str(session_cookie(response)["value"]))
    assert token is not None
    assert (str(token.id), token.email) == (user["id"], "ada@example.com")
    assert (await client.get("/api/users/currentuser")).json()["currentUser"]["email"] == "ada@example.com"


async def test_the_email_is_normalised_before_matching(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")

    assert (await _signin(client, "  ADA@Example.com ")).status_code == 200


async def test_wrong_password_and_unknown_email_give_the_same_400(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")

    wrong_password = await _signin(client, "ada@example.com", "not the password")
    unknown_email = await _signin(client, "nobody@example.com")

    for response in (wrong_password, unknown_email):
        assert response.status_code == 400
        assert response.json() == INVALID
        assert "set-cookie" not in response.headers
    assert wrong_password.content == unknown_email.content
    assert (await client.get("/api/users/currentuser")).json() == {"currentUser": None}


async def test_the_password_is_case_sensitive(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")

    assert (await _signin(client, "ada@example.com", PASSWORD.upper())).json() == INVALID


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"email": "nope", "password": PASSWORD}, {"message": "Email must be valid", "field": "email"}),
        ({"email": "ada@example.com", "password": ""}, {"message": "Password is required", "field": "password"}),
        ({"email": "ada@example.com", "password": 12345678}, {"message": "Password is required", "field": "password"}),
        ({"email": "ada@example.com"}, {"message": "password is required", "field": "password"}),
        ({"password": PASSWORD}, {"message": "email is required", "field": "email"}),
    ],
)
async def test_returns_400_with_the_field_for_an_invalid_body(
    client: httpx.AsyncClient, body: dict[str, Any], error: dict[str, str]
) -> None:
    response = await client.post("/api/users/signin", json=body)

    assert response.status_code == 400
    assert response.json() == {"errors": [error]}


SLOW_ARGON2 = {"argon2_time_cost": 2, "argon2_memory_cost": 32768, "argon2_parallelism": 1}


async def test_an_unknown_email_takes_about_as_long_as_a_wrong_password(another_app: Any) -> None:
    # Realistic hashing cost, so that skipping the hash for unknown users would show; no throttling in the way.
    async with another_app(**SLOW_ARGON2, signin_max_failures=1000) as client:
        signup = await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})
        assert signup.status_code == 201
        client.cookies.clear()
        wrong: list[float] = []
        unknown: list[float] = []
        for _ in range(15):
            for durations, email in ((wrong, "ada@example.com"), (unknown, f"{uuid.uuid4().hex}@example.com")):
                started = time.perf_counter()
                response = await _signin(client, email, "not the password")
                durations.append(time.perf_counter() - started)
                assert response.json() == INVALID

    passwords = Passwords(time_cost=2, memory_cost=32768, parallelism=1, concurrency=1)
    password_hash = await passwords.hash(PASSWORD)
    verify_costs = []
    for _ in range(5):
        started = time.perf_counter()
        await passwords.verify(password_hash, "not the password")
        verify_costs.append(time.perf_counter() - started)
    verify_cost = statistics.median(verify_costs)
    median_wrong, median_unknown = statistics.median(wrong), statistics.median(unknown)
    assert median_unknown >= 0.8 * verify_cost, (median_unknown, verify_cost)
    assert abs(median_unknown - median_wrong) <= 0.5 * verify_cost, (median_wrong, median_unknown, verify_cost)


async def test_upgrades_the_hash_on_signin_when_the_parameters_change(
    sign_up: Callable[..., Awaitable[dict[str, Any]]],
    another_app: Any,
    stored_user: StoredUser,
    published: Callable[[str], Awaitable[list[ReceivedEvent]]],
) -> None:
    await sign_up("ada@example.com")
    before = await stored_user("ada@example.com")
    assert before is not None
    assert "$m=8,t=1,p=1$" in before["password_hash"]

    async with another_app(argon2_time_cost=2, argon2_memory_cost=64, argon2_parallelism=2) as stronger:
        assert (await _signin(stronger, "ada@example.com")).status_code == 200
        after = await stored_user("ada@example.com")
        assert after is not None
        assert after["password_hash"].startswith("$argon2id$v=19$m=64,t=2,p=2$")
        assert (after["version"], after["email"]) == (0, "ada@example.com")  # not a change other services see
        stronger.cookies.clear()
        assert (await _signin(stronger, "ada@example.com")).status_code == 200
        assert (await _signin(stronger, "ada@example.com", "not the password")).json() == INVALID
    assert await published("user.updated") == []


async def test_keeps_the_hash_when_the_parameters_are_unchanged(
    client: httpx.AsyncClient,
    sign_up: Callable[..., Awaitable[dict[str, Any]]],
    stored_user: StoredUser,
) -> None:
    await sign_up("ada@example.com")
    before = await stored_user("ada@example.com")

    assert (await _signin(client, "ada@example.com")).status_code == 200

    after = await stored_user("ada@example.com")
    assert before is not None
    assert after is not None
    assert after["password_hash"] == before["password_hash"]
