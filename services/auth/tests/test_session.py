"""The session cookie's attributes, GET /api/users/currentuser and POST /api/users/signout."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import jwt
import pytest

from ticketing_common.auth import COOKIE_NAME
from ticketing_common.keys import SigningKey
from ticketing_common.testing import TEST_SIGNING_KEY, session_token, signin

PASSWORD = "correct horse battery"
OTHER_KEY = SigningKey.generate()


async def test_the_session_cookie_is_httponly_lax_site_wide_and_not_secure_when_not_configured(
    client: httpx.AsyncClient, session_cookie: Callable[[httpx.Response], dict[str, Any]]
) -> None:
    response = await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})

    cookie = session_cookie(response)
    assert cookie["httponly"] is True
    assert str(cookie["samesite"]).lower() == "lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == "86400"
    assert "secure" not in cookie


async def test_the_session_cookie_is_secure_when_configured(
    another_app: Any, session_cookie: Callable[[httpx.Response], dict[str, Any]]
) -> None:
    async with another_app(cookie_secure=True) as client:
        signup = await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})
        signin_ = await client.post("/api/users/signin", json={"email": "ada@example.com", "password": PASSWORD})
        signout = await client.post("/api/users/signout")

    for response in (signup, signin_, signout):
        cookie = session_cookie(response)
        assert cookie["secure"] is True
        assert cookie["httponly"] is True
        assert str(cookie["samesite"]).lower() == "lax"


async def test_currentuser_is_null_without_a_cookie(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/users/currentuser")

    assert response.status_code == 200
    assert response.json() == {"currentUser": None}


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param(session_token(key=OTHER_KEY), id="other-key"),
        pytest.param(session_token(now=time.time() - 7200), id="expired"),
        pytest.param(
            jwt.encode(
                {"id": str(uuid.uuid4()), "email": "a@example.com", "iat": int(time.time()), "exp": 2**31},
                "a-shared-secret-of-the-old-days-0123456789",
                "HS256",
                headers={"kid": TEST_SIGNING_KEY.kid},
            ),
            id="hs256",
        ),
    ],
)
async def test_currentuser_is_null_never_401_for_a_bad_cookie(client: httpx.AsyncClient, token: str) -> None:
    client.cookies.set(COOKIE_NAME, token)

    response = await client.get("/api/users/currentuser")

    assert response.status_code == 200
    assert response.json() == {"currentUser": None}


async def test_currentuser_shows_id_email_iat_and_exp_of_the_session(
    client: httpx.AsyncClient, sign_up: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    user = await sign_up("ada@example.com")
    before = int(time.time())
    await client.post("/api/users/signin", json={"email": "ada@example.com", "password": PASSWORD})

    response = await client.get("/api/users/currentuser")

    assert response.status_code == 200
    current = response.json()["currentUser"]
    assert current == {"id": user["id"], "email": "ada@example.com", "iat": current["iat"], "exp": current["exp"]}
    assert before <= current["iat"] <= int(time.time())
    assert current["exp"] - current["iat"] == 86400


async def test_signout_answers_200_and_expires_the_cookie(
    client: httpx.AsyncClient, session_cookie: Callable[[httpx.Response], dict[str, Any]]
) -> None:
    await client.post("/api/users/signup", json={"email": "ada@example.com", "password": PASSWORD})
    assert (await client.get("/api/users/currentuser")).json()["currentUser"] is not None

    response = await client.post("/api/users/signout")

    assert response.status_code == 200
    assert response.json() == {}
    cookie = session_cookie(response)
    assert cookie["value"] in ("", '""')
    assert cookie["max-age"] == "0"
    assert cookie["path"] == "/"
    assert cookie["httponly"] is True
    assert (await client.get("/api/users/currentuser")).json() == {"currentUser": None}


async def test_signout_works_without_a_session(
    client: httpx.AsyncClient, session_cookie: Callable[[httpx.Response], dict[str, Any]]
) -> None:
    response = await client.post("/api/users/signout")

    assert response.status_code == 200
    assert response.json() == {}
    assert session_cookie(response)["max-age"] == "0"


async def test_signout_works_with_a_bad_session(client: httpx.AsyncClient) -> None:
    client.cookies.set(COOKIE_NAME, "garbage")

    assert (await client.post("/api/users/signout")).status_code == 200


async def test_a_token_from_the_shared_signin_helper_is_a_current_user(client: httpx.AsyncClient) -> None:
    # The other services' tests sign in with this helper; auth must agree with it about what a session is.
    user = signin(client, email="ada@example.com")

    current = (await client.get("/api/users/currentuser")).json()["currentUser"]

    assert (current["id"], current["email"]) == (str(user.id), "ada@example.com")
