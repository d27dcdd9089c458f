"""Session tokens: the cookie round trip and every way a token can be bad."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from fastapi import FastAPI, Response

from ticketing_common.auth import COOKIE_NAME, create_token, decode_token, set_session_cookie
from ticketing_common.config import ServiceSettings
from ticketing_common.testing import TEST_JWT_KEY, http_client, signin

OTHER_KEY = "another-services-key-0123456789-abcdefghij"


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {"id": str(uuid.uuid4()), "email": "a@b.co", "iat": now, "exp": now + 60}


def test_round_trip_returns_the_user() -> None:
    user_id = uuid.uuid4()
    token = create_token(user_id=user_id, email="a@b.co", key=TEST_JWT_KEY, expires_seconds=60)
    payload = decode_token(token, key=TEST_JWT_KEY)
    assert payload is not None
    assert payload.id == user_id
    assert payload.email == "a@b.co"
    assert payload.exp - payload.iat == 60


def _alg_none_token() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(_claims())}."


def _tampered_token() -> str:
    token = jwt.encode(_claims(), TEST_JWT_KEY, algorithm="HS256")
    header, _, signature = token.split(".")
    forged = dict(_claims(), email="admin@b.co")
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_alg_none_token(), id="alg-none"),
        pytest.param(jwt.encode(_claims(), OTHER_KEY, algorithm="HS256"), id="wrong-key"),
        pytest.param(jwt.encode(dict(_claims(), iat=1, exp=2), TEST_JWT_KEY, algorithm="HS256"), id="expired"),
        pytest.param(_tampered_token(), id="tampered"),
        pytest.param(jwt.encode(_claims(), TEST_JWT_KEY, algorithm="HS512"), id="other-algorithm"),
        pytest.param(
            jwt.encode({"id": str(uuid.uuid4()), "exp": int(time.time()) + 60}, TEST_JWT_KEY, algorithm="HS256"),
            id="missing-claims",
        ),
        pytest.param(jwt.encode(dict(_claims(), id="not-a-uuid"), TEST_JWT_KEY, algorithm="HS256"), id="bad-id"),
        pytest.param("garbage", id="garbage"),
    ],
)
async def test_bad_tokens_are_not_a_user(token: str, demo_app: FastAPI) -> None:
    assert decode_token(token, key=TEST_JWT_KEY) is None
    async with http_client(demo_app) as client:
        client.cookies.set(COOKIE_NAME, token)
        response = await client.get("/demo/me")
    assert response.status_code == 401


async def test_a_valid_cookie_signs_the_request_in(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        user = signin(client)
        response = await client.get("/demo/me")
    assert response.status_code == 200
    assert response.json() == {"id": str(user.id), "email": user.email}


@pytest.mark.parametrize("secure", [True, False])
def test_cookie_is_httponly_lax_and_secure_when_configured(secure: bool) -> None:
    settings = ServiceSettings(jwt_key=TEST_JWT_KEY, cookie_secure=secure)
    response = Response()
    set_session_cookie(response, "token-value", settings)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=token-value")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert ("Secure" in cookie) is secure


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "JWT_KEY must be set"), ("short", "at least 32 characters")],
)
def test_settings_refuse_a_missing_or_weak_jwt_key(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceSettings(jwt_key=key)


def test_a_service_refuses_to_start_without_jwt_key_and_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ticketing_common.cli import load_settings

    monkeypatch.delenv("JWT_KEY", raising=False)
    with pytest.raises(SystemExit) as exited:
        load_settings(ServiceSettings)
    assert exited.value.code == 2
    assert "JWT_KEY: JWT_KEY must be set" in capsys.readouterr().err
