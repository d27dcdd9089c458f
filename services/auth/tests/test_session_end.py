"""How sessions end: sign-out revokes its session, a new password revokes every other session of the user, and
``session.revoked`` tells every service; the JWK Set the other services verify with; refusing to start without
keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from ticketing_auth.config import Settings
from ticketing_common.auth import COOKIE_NAME
from ticketing_common.testing import (
    TEST_SIGNING_KEY,
    UNREACHABLE_JWKS_URL,
    ReceivedEvent,
    claims_of,
    http_client,
    serve_in_a_process,
    session_settings,
)

PASSWORD = "correct horse battery"
NEW_PASSWORD = "tr0ub4dor&3 staple"
Published = Callable[[str], Awaitable[list[ReceivedEvent]]]
SessionCookie = Callable[[httpx.Response], dict[str, Any]]


async def _browser_signed_in(app: FastAPI, email: str, password: str = PASSWORD) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    response = await client.post("/api/users/signin", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return client


async def _current(client: httpx.AsyncClient) -> Any:
    return (await client.get("/api/users/currentuser")).json()["currentUser"]


async def test_signout_revokes_the_session_so_its_old_cookie_is_refused_and_publishes_session_revoked(
    client: httpx.AsyncClient, app: FastAPI, published: Published
) -> None:
    signup = await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})
    old_cookie = str(client.cookies[COOKIE_NAME])
    session = claims_of(old_cookie)
    other = await _browser_signed_in(app, "ada@example.com")

    assert (await client.post("/api/users/signout")).status_code == 200

    async with http_client(app) as thief:
        thief.cookies.set(COOKIE_NAME, old_cookie)
        assert await _current(thief) is None
        assert (await thief.put("/api/users/currentuser", json={"currentPassword": PASSWORD})).status_code == 401
    assert (await _current(other))["email"] == "ada@example.com"  # the user's other session goes on
    await other.aclose()
    [event] = await published("session.revoked")
    assert event.data["userId"] == signup.json()["id"]
    assert event.data["sessionId"] == str(session.sid)
    assert datetime.fromisoformat(event.data["revokedBefore"]).timestamp() >= session.iat


async def test_signout_without_a_live_session_publishes_nothing(
    client: httpx.AsyncClient, published: Published
) -> None:
    assert (await client.post("/api/users/signout")).status_code == 200
    assert await published("session.revoked") == []


async def test_a_new_password_ends_every_other_session_and_the_changing_one_gets_a_fresh_cookie(
    client: httpx.AsyncClient, app: FastAPI, published: Published, session_cookie: SessionCookie
) -> None:
    signup = await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})
    before = claims_of(str(client.cookies[COOKIE_NAME]))
    other = await _browser_signed_in(app, "ada@example.com")

    response = await client.put("/api/users/currentuser", json={"currentPassword": PASSWORD, "password": NEW_PASSWORD})

    assert response.status_code == 200
    fresh = claims_of(str(session_cookie(response)["value"]))
    assert fresh.sid == before.sid
    assert fresh.jti != before.jti
    assert (await _current(client))["email"] == "ada@example.com"
    assert await _current(other) is None
    await other.aclose()
    [event] = await published("session.revoked")
    assert event.data["userId"] == signup.json()["id"]
    assert event.data["sessionId"] is None
    assert datetime.fromisoformat(event.data["revokedBefore"]).timestamp() == fresh.iat
    again = await _browser_signed_in(app, "ada@example.com", NEW_PASSWORD)
    assert (await _current(again))["email"] == "ada@example.com"
    await again.aclose()


async def test_an_email_change_ends_no_session(client: httpx.AsyncClient, app: FastAPI, published: Published) -> None:
    await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})
    other = await _browser_signed_in(app, "ada@example.com")

    response = await client.put(
        "/api/users/currentuser", json={"currentPassword": PASSWORD, "email": "ada.king@example.com"}
    )

    assert response.status_code == 200
    assert await _current(other) is not None  # its token still says the old email until it signs in again
    await other.aclose()
    assert await published("session.revoked") == []


async def test_the_jwk_set_lists_the_signing_key_without_its_private_part(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert "max-age=" in response.headers["cache-control"]
    [key] = response.json()["keys"]
    assert key == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": TEST_SIGNING_KEY.private_jwk()["x"],
        "kid": TEST_SIGNING_KEY.kid,
        "alg": "EdDSA",
        "use": "sig",
    }


async def test_tokens_are_signed_with_eddsa_and_name_their_key(client: httpx.AsyncClient) -> None:
    await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})

    header = jwt.get_unverified_header(str(client.cookies[COOKIE_NAME]))

    assert (header["alg"], header["kid"]) == ("EdDSA", TEST_SIGNING_KEY.kid)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{}", "is not a session key file")],
)
def test_auth_refuses_a_missing_or_malformed_key_file_with_a_message(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(ValueError, match=message):
        Settings(**{**session_settings(), "session_key_file": path})
    with pytest.raises(ValueError, match="SESSION_KEY_FILE must name"):
        Settings(jwks_url=UNREACHABLE_JWKS_URL)


def test_the_auth_service_refuses_to_serve_without_its_key_file_and_says_how_to_make_one(tmp_path: Path) -> None:
    result = serve_in_a_process(
        "ticketing_auth",
        SESSION_KEY_FILE=str(tmp_path / "missing.json"),
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/postgres",
        PORT="1",
    )

    assert result.returncode == 2
    assert "configuration error: SESSION_KEY_FILE:" in result.stderr
    assert "ticketing keys rotate --file" in result.stderr
