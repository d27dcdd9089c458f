"""PUT /api/users/currentuser: change the email and/or password after checking the current password."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from ticketing_common.testing import ReceivedEvent, claims_of

PASSWORD = "correct horse battery"
NEW_PASSWORD = "tr0ub4dor&3 staple"
INVALID = {"errors": [{"message": "Invalid credentials"}]}
Published = Callable[[str], Awaitable[list[ReceivedEvent]]]
StoredUser = Callable[[str], Awaitable[asyncpg.Record | None]]


@pytest.fixture
async def ada(client: httpx.AsyncClient) -> dict[str, Any]:
    """Ada, signed up and signed in on ``client``."""
    response = await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 201
    user: dict[str, Any] = response.json()
    return user


async def _update(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.put("/api/users/currentuser", json={"currentPassword": PASSWORD, **body})


async def _signin(app: FastAPI, email: str, password: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        return await other.post("/api/users/signin", json={"email": email, "password": password})


async def test_returns_401_when_signed_out(client: httpx.AsyncClient) -> None:
    response = await _update(client, email="new@example.com")

    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not authorized"}]}


async def test_changes_the_email_and_sets_a_fresh_cookie_with_it(
    client: httpx.AsyncClient,
    app: FastAPI,
    ada: dict[str, Any],
    session_cookie: Callable[[httpx.Response], dict[str, Any]],
) -> None:
    response = await _update(client, email="  Ada.King@Example.com ")

    assert response.status_code == 200
    assert response.json() == {"id": ada["id"], "email": "ada.king@example.com"}
    token = claims_of(str(session_cookie(response)["value"]))
    assert token is not None
    assert (str(token.id), token.email) == (ada["id"], "ada.king@example.com")
    assert (await client.get("/api/users/currentuser")).json()["currentUser"]["email"] == "ada.king@example.com"
    assert (await _signin(app, "ada.king@example.com", PASSWORD)).status_code == 200
    assert (await _signin(app, "ada@example.com", PASSWORD)).json() == INVALID


async def test_changes_the_password(
    client: httpx.AsyncClient, app: FastAPI, ada: dict[str, Any], stored_user: StoredUser
) -> None:
    before = await stored_user("ada@example.com")

    response = await _update(client, password=NEW_PASSWORD)

    assert response.status_code == 200
    assert response.json() == {"id": ada["id"], "email": "ada@example.com"}
    after = await stored_user("ada@example.com")
    assert before is not None
    assert after is not None
    assert after["password_hash"] != before["password_hash"]
    assert after["password_hash"].startswith("$argon2id$")
    assert (await _signin(app, "ada@example.com", NEW_PASSWORD)).status_code == 200
    assert (await _signin(app, "ada@example.com", PASSWORD)).json() == INVALID


async def test_changes_email_and_password_together(
    client: httpx.AsyncClient, app: FastAPI, ada: dict[str, Any], published: Published
) -> None:
    response = await _update(client, email="king@example.com", password=NEW_PASSWORD)

    assert response.status_code == 200
    assert (await _signin(app, "king@example.com", NEW_PASSWORD)).status_code == 200
    [event] = await published("user.updated")
    assert event.data == {"id": ada["id"], "email": "king@example.com", "version": 1}


async def test_publishes_user_updated_with_the_version_plus_one_for_every_change(
    client: httpx.AsyncClient, ada: dict[str, Any], published: Published, stored_user: StoredUser
) -> None:
    await _update(client, email="king@example.com")
    await client.put("/api/users/currentuser", json={"currentPassword": PASSWORD, "password": NEW_PASSWORD})

    events = await published("user.updated")
    assert [e.data for e in events] == [
        {"id": ada["id"], "email": "king@example.com", "version": 1},
        # A password change is a new version too, so that copies' versions stay in step with ours.
        {"id": ada["id"], "email": "king@example.com", "version": 2},
    ]
    assert all(e.headers["ce-source"] == "auth" for e in events)
    user = await stored_user("king@example.com")
    assert user is not None
    assert user["version"] == 2
    [created] = await published("user.created")
    assert created.data["version"] == 0


async def test_returns_400_invalid_credentials_and_changes_nothing_for_a_wrong_current_password(
    client: httpx.AsyncClient, ada: dict[str, Any], stored_user: StoredUser, published: Published
) -> None:
    response = await client.put(
        "/api/users/currentuser",
        json={"currentPassword": "not the password", "email": "king@example.com", "password": NEW_PASSWORD},
    )

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Invalid credentials", "field": "currentPassword"}]}
    assert "set-cookie" not in response.headers
    user = await stored_user("ada@example.com")
    assert user is not None
    assert user["version"] == 0
    assert await published("user.updated") == []


async def test_returns_400_unless_a_new_email_or_password_is_given(
    client: httpx.AsyncClient, ada: dict[str, Any]
) -> None:
    response = await _update(client)

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Provide a new email or a new password"}]}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"email": "nope"}, {"message": "Email must be valid", "field": "email"}),
        ({"email": 42}, {"message": "Email must be valid", "field": "email"}),
        ({"password": "short"}, {"message": "Password must be between 8 and 128 characters", "field": "password"}),
        ({"password": "x" * 129}, {"message": "Password must be between 8 and 128 characters", "field": "password"}),
        (
            {"email": "new@example.com", "currentPassword": ""},
            {"message": "Current password is required", "field": "currentPassword"},
        ),
    ],
)
async def test_validates_like_signup(
    client: httpx.AsyncClient, ada: dict[str, Any], body: dict[str, Any], error: dict[str, str]
) -> None:
    response = await _update(client, **body)

    assert response.status_code == 400
    assert response.json() == {"errors": [error]}


async def test_current_password_is_required(client: httpx.AsyncClient, ada: dict[str, Any]) -> None:
    response = await client.put("/api/users/currentuser", json={"email": "new@example.com"})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "currentPassword is required", "field": "currentPassword"}]}


async def test_returns_400_email_in_use_for_another_users_email(
    client: httpx.AsyncClient,
    ada: dict[str, Any],
    sign_up: Callable[..., Awaitable[dict[str, Any]]],
    stored_user: StoredUser,
    published: Published,
) -> None:
    await sign_up("grace@example.com")

    response = await _update(client, email="GRACE@example.com")

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Email in use", "field": "email"}]}
    user = await stored_user("ada@example.com")
    assert user is not None
    assert user["version"] == 0
    assert await published("user.updated") == []


async def test_giving_the_current_email_again_changes_nothing(
    client: httpx.AsyncClient, ada: dict[str, Any], stored_user: StoredUser, published: Published
) -> None:
    response = await _update(client, email="ADA@example.com")

    assert response.status_code == 200
    assert response.json() == {"id": ada["id"], "email": "ada@example.com"}
    user = await stored_user("ada@example.com")
    assert user is not None
    assert user["version"] == 0
    assert await published("user.updated") == []


async def test_returns_401_for_a_valid_token_of_an_unknown_user(client: httpx.AsyncClient) -> None:
    from ticketing_common.testing import signin

    signin(client)

    assert (await _update(client, email="new@example.com")).status_code == 401


async def test_concurrent_updates_lose_no_change(
    client: httpx.AsyncClient, ada: dict[str, Any], published: Published, stored_user: StoredUser
) -> None:
    emails = [f"ada{i}@example.com" for i in range(5)]

    responses = await asyncio.gather(*(_update(client, email=email) for email in emails))

    assert [r.status_code for r in responses] == [200] * 5
    events = await published("user.updated")
    assert sorted(e.data["version"] for e in events) == [1, 2, 3, 4, 5]
    assert sorted(e.data["email"] for e in events) == emails
    last = max(events, key=lambda e: e.data["version"])
    user = await stored_user(last.data["email"])
    assert user is not None
    assert user["version"] == 5


async def test_concurrent_email_and_password_changes_publish_each_version_with_the_email_it_has(
    client: httpx.AsyncClient, ada: dict[str, Any], published: Published, stored_user: StoredUser
) -> None:
    # Password-only changes republish the email: it must be the one of the version they build on, not a stale one.
    email_changes = [_update(client, email=f"ada{i}@example.com") for i in range(3)]
    password_changes = [_update(client, password=PASSWORD) for _ in range(3)]

    responses = await asyncio.gather(*email_changes, *password_changes)

    assert [r.status_code for r in responses] == [200] * 6
    events = sorted(await published("user.updated"), key=lambda e: e.data["version"])
    assert [e.data["version"] for e in events] == [1, 2, 3, 4, 5, 6]
    emails = [e.data["email"] for e in events]
    runs = [email for i, email in enumerate(emails) if i == 0 or email != emails[i - 1]]
    assert len(runs) == len(set(runs)), emails  # no email comes back after it was changed away
    assert set(runs) - {"ada@example.com"} == {"ada0@example.com", "ada1@example.com", "ada2@example.com"}
    user = await stored_user(emails[-1])
    assert user is not None
    assert user["version"] == 6
