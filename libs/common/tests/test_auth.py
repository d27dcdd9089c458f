"""Session tokens as every service checks them: EdDSA with a known ``kid`` and nothing else, the JWK Set fetched
again for an unknown key, and revoked sessions refused, live and after a restart."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from asgi_lifespan import LifespanManager
from common_demo import DemoSettings, build_demo_app
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI, Response
from nats.js import JetStreamContext

from ticketing_common.auth import COOKIE_NAME, set_session_cookie
from ticketing_common.config import ServiceSettings
from ticketing_common.embedded import EmbeddedNats
from ticketing_common.events import SessionRevoked
from ticketing_common.events.bus import ensure_stream
from ticketing_common.keys import SigningKey, public_jwk
from ticketing_common.testing import (
    TEST_SIGNING_KEY,
    UNREACHABLE_JWKS_URL,
    JwksServer,
    claims_of,
    http_client,
    running,
    session_settings,
    session_token,
    signin,
    wait_until,
)
from ticketing_common.testing.helpers import connect_nats

OTHER_KEY = SigningKey.generate()


def _claims(**changes: object) -> dict[str, object]:
    now = time.time()
    claims: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "email": "a@b.co",
        "sid": str(uuid.uuid4()),
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": int(now) + 60,
    }
    claims.update(changes)
    return claims


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _ed25519(claims: dict[str, object], key: SigningKey = TEST_SIGNING_KEY, **header: object) -> str:
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, **header})


def _alg_none_token() -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': TEST_SIGNING_KEY.kid})}.{_b64(_claims())}."


def _hs256_signed_with_the_public_key(secret: bytes) -> str:
    """The classic algorithm confusion: the verifier's own public key used as an HMAC secret."""
    return jwt.encode(_claims(), secret, algorithm="HS256", headers={"kid": TEST_SIGNING_KEY.kid})


_PUBLIC = TEST_SIGNING_KEY.private_key.public_key()


def _rs256() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": TEST_SIGNING_KEY.kid})


def _tampered() -> str:
    header, _, signature = _ed25519(_claims()).split(".")
    return f"{header}.{_b64(_claims(email='admin@b.co'))}.{signature}"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_alg_none_token(), id="alg-none"),
        pytest.param(
            _hs256_signed_with_the_public_key(_PUBLIC.public_bytes(Encoding.Raw, PublicFormat.Raw)),
            id="hs256-with-the-raw-public-key",
        ),
        pytest.param(_hs256_signed_with_the_public_key(public_jwk(_PUBLIC)["x"].encode()), id="hs256-with-the-jwk-x"),
        pytest.param(jwt.encode(_claims(), "a-shared-secret-of-the-old-days-0123456789", "HS256"), id="hs256"),
        pytest.param(_rs256(), id="rs256"),
        pytest.param(_ed25519(_claims(), OTHER_KEY), id="unknown-kid"),
        pytest.param(_ed25519(_claims(), OTHER_KEY, kid=TEST_SIGNING_KEY.kid), id="known-kid-wrong-key"),
        pytest.param(jwt.encode(_claims(), TEST_SIGNING_KEY.private_key, algorithm="EdDSA"), id="no-kid"),
        pytest.param(_tampered(), id="tampered-payload"),
        pytest.param(_ed25519(_claims(iat=1, exp=2)), id="expired"),
        pytest.param(_ed25519({k: v for k, v in _claims().items() if k != "sid"}), id="no-session-id"),
        pytest.param(_ed25519({k: v for k, v in _claims().items() if k != "jti"}), id="no-token-id"),
        pytest.param(_ed25519(_claims(id="not-a-uuid")), id="bad-id"),
        pytest.param("garbage", id="garbage"),
    ],
)
async def test_a_token_that_is_not_an_eddsa_session_of_a_known_key_is_401(token: str, demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        client.cookies.set(COOKIE_NAME, token)
        response = await client.get("/demo/me")

    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not authorized"}]}


async def test_a_valid_cookie_signs_the_request_in(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        user = signin(client)
        response = await client.get("/demo/me")

    assert response.status_code == 200
    assert response.json() == {"id": str(user.id), "email": user.email}


def test_a_token_names_its_key_its_session_and_itself() -> None:
    token = session_token(now=1_800_000_000.1234)

    header = jwt.get_unverified_header(token)
    claims = claims_of(token)
    assert (header["alg"], header["kid"]) == ("EdDSA", TEST_SIGNING_KEY.kid)
    assert claims.iat == 1_800_000_000.123
    assert claims.sid != claims.jti
    assert claims_of(session_token()).jti != claims_of(session_token()).jti


async def test_a_new_key_is_fetched_when_a_token_names_it_and_unknown_kids_fetch_at_most_once_a_second(
    demo_settings: DemoSettings,
) -> None:
    with JwksServer() as jwks:
        app = build_demo_app(demo_settings.model_copy(update={"jwks_url": jwks.url}))
        async with running(app), http_client(app) as client:
            rotated = jwks.ring.rotated(token_seconds=3600)
            jwks.ring = rotated
            client.cookies.set(COOKIE_NAME, session_token(key=rotated.signing_key))
            with_new_key = await client.get("/demo/me")
            client.cookies.set(COOKIE_NAME, session_token(key=TEST_SIGNING_KEY))
            with_previous_key = await client.get("/demo/me")

            before = jwks.fetches
            started = time.monotonic()
            for _ in range(5):
                client.cookies.set(COOKIE_NAME, session_token(key=SigningKey.generate()))
                assert (await client.get("/demo/me")).status_code == 401
            elapsed = time.monotonic() - started

    assert with_new_key.status_code == 200
    assert with_previous_key.status_code == 200
    assert jwks.fetches - before <= elapsed + 1


async def test_sessions_answer_503_not_401_while_the_keys_cannot_be_fetched(demo_settings: DemoSettings) -> None:
    app = build_demo_app(demo_settings.model_copy(update={"jwks_url": UNREACHABLE_JWKS_URL}))
    async with LifespanManager(app), http_client(app) as client:
        await app.state.events.wait_ready()
        signin(client)
        response = await client.get("/demo/me")
        ready = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["errors"][0]["message"].startswith("Sessions cannot be checked")
    assert ready.status_code == 503
    assert "sessions cannot be checked yet" in ready.text


async def _publish(js: JetStreamContext, event: SessionRevoked) -> None:
    await js.publish(event.subject, event.model_dump_json(by_alias=True).encode())


async def test_a_revoked_session_is_refused_at_once_and_other_sessions_of_the_user_are_not(
    demo_app: FastAPI, js: JetStreamContext
) -> None:
    async with http_client(demo_app) as first, http_client(demo_app) as second:
        user = signin(first)
        signin(second, user_id=user.id, email=user.email)
        await _publish(js, SessionRevoked(user_id=user.id, session_id=user.sid, revoked_before=datetime.now(UTC)))

        async def refused() -> bool:
            return (await first.get("/demo/me")).status_code == 401

        await wait_until(refused, timeout=2)
        assert (await second.get("/demo/me")).status_code == 200


async def test_revoking_every_session_before_a_moment_spares_sessions_issued_from_then_on(
    demo_app: FastAPI, js: JetStreamContext
) -> None:
    user_id = uuid.uuid4()
    cutoff = time.time()
    old = session_token(user_id=user_id, now=cutoff - 5)
    fresh = session_token(user_id=user_id, now=cutoff)
    await _publish(
        js,
        SessionRevoked(user_id=user_id, session_id=None, revoked_before=datetime.fromtimestamp(round(cutoff, 3), UTC)),
    )
    async with http_client(demo_app) as client:

        async def old_refused() -> bool:
            client.cookies.set(COOKIE_NAME, old)
            return (await client.get("/demo/me")).status_code == 401

        await wait_until(old_refused, timeout=2)
        client.cookies.set(COOKIE_NAME, fresh)
        assert (await client.get("/demo/me")).status_code == 200


async def test_a_service_started_after_a_revocation_refuses_the_session_from_its_first_request(
    demo_settings: DemoSettings, js: JetStreamContext
) -> None:
    await ensure_stream(js, demo_settings.nats_stream)  # as auth's would be, before this service ever started
    revoked = claims_of(token := session_token())
    await _publish(js, SessionRevoked(user_id=revoked.id, session_id=revoked.sid, revoked_before=datetime.now(UTC)))

    async with running(build_demo_app(demo_settings)) as app, http_client(app) as client:
        client.cookies.set(COOKIE_NAME, token)
        response = await client.get("/demo/me")

    assert response.status_code == 401


@pytest.mark.parametrize("secure", [True, False])
def test_cookie_is_httponly_lax_and_secure_when_configured(secure: bool) -> None:
    settings = ServiceSettings(**session_settings(), cookie_secure=secure)
    response = Response()
    set_session_cookie(response, "token-value", settings)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=token-value")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert ("Secure" in cookie) is secure


def test_a_service_refuses_to_start_without_jwks_url_and_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ticketing_common.cli import load_settings

    monkeypatch.delenv("JWKS_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        load_settings(ServiceSettings)
    assert exited.value.code == 2
    assert "JWKS_URL must be set" in capsys.readouterr().err


def test_a_session_may_not_outlive_the_revocations_the_stream_keeps() -> None:
    with pytest.raises(ValueError, match="less than or equal"):
        ServiceSettings(**session_settings(), jwt_expires_seconds=8 * 24 * 3600)


async def test_revocations_keep_arriving_after_a_nats_outage(demo_settings: DemoSettings, tmp_path: Path) -> None:
    own_nats = EmbeddedNats(tmp_path / "nats")
    own_nats.start()
    try:
        app = build_demo_app(demo_settings.model_copy(update={"nats_url": own_nats.url}))
        async with running(app), http_client(app) as client:
            user = signin(client)
            assert (await client.get("/demo/me")).status_code == 200
            own_nats.stop()
            own_nats.start()
            nc = await connect_nats(own_nats.url)
            try:
                js = nc.jetstream()
                await wait_until(_stream_exists(js, demo_settings.nats_stream), timeout=30)
                await _publish(
                    js, SessionRevoked(user_id=user.id, session_id=user.sid, revoked_before=datetime.now(UTC))
                )

                async def refused() -> bool:
                    return (await client.get("/demo/me")).status_code == 401

                await wait_until(refused, timeout=40)
            finally:
                await nc.close()
    finally:
        own_nats.stop()


def _stream_exists(js: JetStreamContext, name: str) -> Callable[[], Awaitable[bool]]:
    async def exists() -> bool:
        try:
            await js.stream_info(name)
        except Exception:
            return False
        return True

    return exists
