"""Brute-force limits, counted in PostgreSQL for every replica: 10 failed password checks per (email, client
address) and 50 per client address across emails within the window; nothing per email alone, so a stranger
cannot lock the owner out. The client address is the TCP peer unless that is a trusted proxy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ticketing_auth.config import Settings

PASSWORD = "correct horse battery"
WRONG = "not the password"
INVALID = {"errors": [{"message": "Invalid credentials"}]}
THROTTLED = {"errors": [{"message": "Too many failed sign-in attempts, try again later"}]}
STRANGER = "203.0.113.66"
OWNER = "198.51.100.7"

SignUp = Callable[..., Awaitable[dict[str, Any]]]


async def _signin(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, forwarded_for: str | None = None
) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    return await client.post("/api/users/signin", json={"email": email, "password": password}, headers=headers)


async def _fail(client: httpx.AsyncClient, email: str, times: int, forwarded_for: str | None = None) -> None:
    for _ in range(times):
        response = await _signin(client, email, WRONG, forwarded_for)
        assert response.json() == INVALID


def _assert_throttled(response: httpx.Response, window_seconds: int) -> int:
    assert response.status_code == 429
    assert response.json() == THROTTLED
    assert "set-cookie" not in response.headers
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= window_seconds
    return retry_after


async def test_after_10_failures_from_an_address_even_the_right_password_from_it_gets_429_with_retry_after(
    client: httpx.AsyncClient, sign_up: SignUp
) -> None:
    await sign_up("ada@example.com")
    await _fail(client, "ada@example.com", 10)

    retry_after = _assert_throttled(await _signin(client, "ada@example.com"), 900)

    assert retry_after > 890  # the oldest of the 10 failures is seconds old: nearly the whole window is left
    _assert_throttled(await _signin(client, " ADA@example.com", WRONG), 900)
    assert (await client.get("/api/users/currentuser")).json() == {"currentUser": None}


async def test_a_stranger_failing_ten_times_does_not_lock_the_owner_out_from_another_address(
    client_from: Any, sign_up: SignUp
) -> None:
    await sign_up("ada@example.com")
    async with client_from(STRANGER) as stranger, client_from(OWNER) as owner:
        await _fail(stranger, "ada@example.com", 10)
        _assert_throttled(await _signin(stranger, "ada@example.com"), 900)

        response = await _signin(owner, "ada@example.com")

        assert response.status_code == 200
        assert (await owner.get("/api/users/currentuser")).json()["currentUser"]["email"] == "ada@example.com"


async def test_nine_failures_still_let_the_right_password_in(client: httpx.AsyncClient, sign_up: SignUp) -> None:
    await sign_up("ada@example.com")
    await _fail(client, "ada@example.com", 9)

    assert (await _signin(client, "ada@example.com")).status_code == 200


async def test_a_successful_signin_is_not_counted_as_a_failure(client: httpx.AsyncClient, sign_up: SignUp) -> None:
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


async def test_the_limit_per_address_counts_each_email_apart(client: httpx.AsyncClient, sign_up: SignUp) -> None:
    await sign_up("ada@example.com")
    await sign_up("grace@example.com")
    await _fail(client, "ada@example.com", 10)

    assert (await _signin(client, "grace@example.com")).status_code == 200


async def test_spraying_many_emails_from_one_address_gets_429_for_that_address_only(
    another_app: Any, client_from: Any, sign_up: SignUp
) -> None:
    await sign_up("ada@example.com")
    async with another_app(peer=STRANGER, signin_max_failures_per_address=20) as sprayer:
        for n in range(20):
            await _fail(sprayer, f"victim-{n}@example.com", 1)

        _assert_throttled(await _signin(sprayer, "victim-20@example.com", WRONG), 900)
        _assert_throttled(await _signin(sprayer, "ada@example.com"), 900)
        async with client_from(OWNER) as owner:
            assert (await _signin(owner, "ada@example.com")).status_code == 200


async def test_the_default_limit_per_address_is_50_failures_across_emails(client_from: Any, settings: Settings) -> None:
    assert settings.signin_max_failures_per_address == 50
    async with client_from(STRANGER) as sprayer:
        for n in range(50):
            await _fail(sprayer, f"victim-{n}@example.com", 1)

        _assert_throttled(await _signin(sprayer, "victim-50@example.com", WRONG), 900)


async def test_an_ipv6_client_is_limited_per_64_network(client_from: Any, sign_up: SignUp) -> None:
    # Whoever holds a /64 can use any of its addresses.
    await sign_up("ada@example.com")
    for host in range(1, 11):
        async with client_from(f"2001:db8:1:2::{host:x}") as attacker:
            await _fail(attacker, "ada@example.com", 1)

    async with client_from("2001:db8:1:2:ffff::1") as same_network, client_from("2001:db8:1:3::1") as other:
        _assert_throttled(await _signin(same_network, "ada@example.com"), 900)
        assert (await _signin(other, "ada@example.com")).status_code == 200


async def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit(
    client_from: Any, sign_up: SignUp
) -> None:
    await sign_up("ada@example.com")
    async with client_from(STRANGER) as stranger:
        for n in range(10):
            await _fail(stranger, "ada@example.com", 1, forwarded_for=f"192.0.2.{n}")

        _assert_throttled(await _signin(stranger, "ada@example.com", forwarded_for=OWNER), 900)


async def test_a_trusted_proxys_x_forwarded_for_names_the_client(client: httpx.AsyncClient, sign_up: SignUp) -> None:
    # `client` connects from 127.0.0.1, a trusted proxy by default (the gateway on the same host).
    await sign_up("ada@example.com")
    await _fail(client, "ada@example.com", 10, forwarded_for=STRANGER)

    _assert_throttled(await _signin(client, "ada@example.com", forwarded_for=STRANGER), 900)
    # What the client itself wrote left of the proxy's entry is not believed.
    _assert_throttled(await _signin(client, "ada@example.com", forwarded_for=f"{OWNER}, {STRANGER}"), 900)
    assert (await _signin(client, "ada@example.com", forwarded_for=OWNER)).status_code == 200


async def test_x_forwarded_for_is_believed_only_from_the_configured_trusted_proxies(
    another_app: Any, sign_up: SignUp
) -> None:
    await sign_up("ada@example.com")
    async with another_app(peer="10.1.2.3", trusted_proxies="10.0.0.0/8") as via_proxy:
        # The proxy appended the peer it heard from to the header; a proxy in front of it (also trusted) did so
        # before: the client is the right-most entry that is no trusted proxy.
        await _fail(via_proxy, "ada@example.com", 10, forwarded_for=f"{OWNER}, {STRANGER}, 10.9.9.9")

        _assert_throttled(await _signin(via_proxy, "ada@example.com", forwarded_for=STRANGER), 900)
        assert (await _signin(via_proxy, "ada@example.com", forwarded_for=OWNER)).status_code == 200
    async with another_app(trusted_proxies="10.0.0.0/8") as loopback_peer:
        # 127.0.0.1 is not trusted any more: its header is ignored and the failures count for 127.0.0.1.
        await _fail(loopback_peer, "ada@example.com", 10, forwarded_for=OWNER)

        _assert_throttled(await _signin(loopback_peer, "ada@example.com"), 900)


async def test_the_limit_holds_across_replicas(client: httpx.AsyncClient, another_app: Any, sign_up: SignUp) -> None:
    await sign_up("ada@example.com")
    async with another_app() as replica:
        for turn in range(10):
            await _fail(client if turn % 2 else replica, "ada@example.com", 1)

        _assert_throttled(await _signin(replica, "ada@example.com"), 900)
        _assert_throttled(await _signin(client, "ada@example.com"), 900)


async def test_concurrent_attempts_never_get_past_the_limit(
    client: httpx.AsyncClient, another_app: Any, sign_up: SignUp
) -> None:
    await sign_up("ada@example.com")
    async with another_app() as replica:
        attempts = [_signin(client if i % 2 else replica, "ada@example.com", WRONG) for i in range(25)]

        responses = await asyncio.gather(*attempts)

        statuses = [r.status_code for r in responses]
        assert (statuses.count(400), statuses.count(429)) == (10, 15)
        _assert_throttled(await _signin(replica, "ada@example.com"), 900)


async def test_concurrent_attempts_on_many_emails_never_get_past_the_limit_per_address(another_app: Any) -> None:
    async with (
        another_app(signin_max_failures_per_address=12) as one,
        another_app(signin_max_failures_per_address=12) as other,
    ):
        attempts = [_signin(one if i % 2 else other, f"victim-{i}@example.com", WRONG) for i in range(30)]

        responses = await asyncio.gather(*attempts)

        statuses = [r.status_code for r in responses]
        assert (statuses.count(400), statuses.count(429)) == (12, 18)


async def test_the_limit_resets_when_the_window_passes(another_app: Any, sign_up: SignUp) -> None:
    await sign_up("ada@example.com")
    async with another_app(signin_window_seconds=2) as client:
        await _fail(client, "ada@example.com", 10)
        retry_after = _assert_throttled(await _signin(client, "ada@example.com"), 2)

        await asyncio.sleep(retry_after + 0.2)

        assert (await _signin(client, "ada@example.com")).status_code == 200


async def test_failures_older_than_the_window_do_not_count(another_app: Any, sign_up: SignUp) -> None:
    await sign_up("ada@example.com")
    async with another_app(signin_window_seconds=2) as client:
        await _fail(client, "ada@example.com", 9)
        await asyncio.sleep(2.2)
        await _fail(client, "ada@example.com", 9)  # 18 failures in all, 9 within the window

        assert (await _signin(client, "ada@example.com")).status_code == 200


async def test_wrong_current_passwords_count_per_email_and_address_like_failed_signins(
    client_from: Any, sign_up: SignUp
) -> None:
    # A stolen session cookie must not become an unlimited password oracle.
    await sign_up("ada@example.com")
    async with client_from(STRANGER) as thief, client_from(OWNER) as owner:
        assert (await _signin(thief, "ada@example.com")).status_code == 200
        for _ in range(10):
            response = await thief.put(
                "/api/users/currentuser",
                json={"currentPassword": WRONG, "email": f"{uuid.uuid4().hex[:8]}@example.com"},
            )
            assert response.status_code == 400

        response = await thief.put(
            "/api/users/currentuser", json={"currentPassword": PASSWORD, "email": "new@example.com"}
        )

        _assert_throttled(response, 900)
        _assert_throttled(await _signin(thief, "ada@example.com"), 900)
        assert (await _signin(owner, "ada@example.com")).status_code == 200
        response = await owner.put(
            "/api/users/currentuser", json={"currentPassword": PASSWORD, "email": "new@example.com"}
        )
        assert response.status_code == 200
