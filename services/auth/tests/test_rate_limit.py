"""Brute-force limit: 10 failed sign-ins per email within the window, counted in PostgreSQL for every replica."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

PASSWORD = "correct horse battery"
WRONG = "not the password"
INVALID = {"errors": [{"message": "Invalid credentials"}]}
THROTTLED = {"errors": [{"message": "Too many failed sign-in attempts, try again later"}]}


async def _signin(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/users/signin", json={"email": email, "password": password})


async def _fail(client: httpx.AsyncClient, email: str, times: int) -> None:
    for _ in range(times):
        response = await _signin(client, email, WRONG)
        assert response.json() == INVALID


def _assert_throttled(response: httpx.Response, window_seconds: int) -> int:
    assert response.status_code == 429
    assert response.json() == THROTTLED
    assert "set-cookie" not in response.headers
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= window_seconds
    return retry_after


async def test_after_10_failures_even_the_right_password_gets_429_with_retry_after(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")
    await _fail(client, "ada@example.com", 10)

    retry_after = _assert_throttled(await _signin(client, "ada@example.com"), 900)

    assert retry_after > 890  # the oldest of the 10 failures is seconds old: nearly the whole window is left
    _assert_throttled(await _signin(client, " ADA@example.com", WRONG), 900)
    assert (await client.get("/api/users/currentuser")).json() == {"currentUser": None}


async def test_nine_failures_still_let_the_right_password_in(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")
    await _fail(client, "ada@example.com", 9)

    assert (await _signin(client, "ada@example.com")).status_code == 200


async def test_a_successful_signin_is_not_counted_as_a_failure(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")
    await _fail(client, "ada@example.com", 9)
    assert (await _signin(client, "ada@example.com")).status_code == 200
    client.cookies.clear()

    await _fail(client, "ada@example.com", 1)  # the 10th failure, not the 11th attempt counted

    _assert_throttled(await _signin(client, "ada@example.com"), 900)


async def test_unknown_emails_are_throttled_like_known_ones(client: httpx.AsyncClient) -> None:
    # Otherwise a 429 (or its absence) would tell which emails have an account.
    await _fail(client, "nobody@example.com", 10)

    _assert_throttled(await _signin(client, "nobody@example.com"), 900)


async def test_the_limit_is_per_email(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")
    await sign_up("grace@example.com")
    await _fail(client, "ada@example.com", 10)

    assert (await _signin(client, "grace@example.com")).status_code == 200


async def test_the_limit_holds_across_replicas(
    client: httpx.AsyncClient, another_app: Any, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")
    async with another_app() as replica:
        for turn in range(10):
            await _fail(client if turn % 2 else replica, "ada@example.com", 1)

        _assert_throttled(await _signin(replica, "ada@example.com"), 900)
        _assert_throttled(await _signin(client, "ada@example.com"), 900)


async def test_concurrent_attempts_never_get_past_the_limit(
    client: httpx.AsyncClient, another_app: Any, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")
    async with another_app() as replica:
        attempts = [_signin(client if i % 2 else replica, "ada@example.com", WRONG) for i in range(25)]

        responses = await asyncio.gather(*attempts)

        statuses = [r.status_code for r in responses]
        assert (statuses.count(400), statuses.count(429)) == (10, 15)
        _assert_throttled(await _signin(replica, "ada@example.com"), 900)


async def test_the_limit_resets_when_the_window_passes(
    another_app: Any, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")
    async with another_app(signin_window_seconds=2) as client:
        await _fail(client, "ada@example.com", 10)
        retry_after = _assert_throttled(await _signin(client, "ada@example.com"), 2)

        await asyncio.sleep(retry_after + 0.2)

        assert (await _signin(client, "ada@example.com")).status_code == 200


async def test_failures_older_than_the_window_do_not_count(
    another_app: Any, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await sign_up("ada@example.com")
    async with another_app(signin_window_seconds=2) as client:
        await _fail(client, "ada@example.com", 9)
        await asyncio.sleep(2.2)
        await _fail(client, "ada@example.com", 9)  # 18 failures in all, 9 within the window

        assert (await _signin(client, "ada@example.com")).status_code == 200


async def test_wrong_current_passwords_on_profile_update_count_towards_the_limit(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    # A stolen session cookie must not become an unlimited password oracle.
    await sign_up("ada@example.com")
    assert (await _signin(client, "ada@example.com")).status_code == 200
    for _ in range(10):
        response = await client.put(
            "/api/users/currentuser", json={"currentPassword": WRONG, "email": f"{uuid.uuid4().hex[:8]}@example.com"}
        )
        assert response.status_code == 400

    response = await client.put(
        "/api/users/currentuser", json={"currentPassword": PASSWORD, "email": "new@example.com"}
    )

    _assert_throttled(response, 900)
    _assert_throttled(await _signin(client, "ada@example.com"), 900)
