"""HTTP routes of the auth service, under ``/api/users``: thin, the use cases live in ``service.py``."""

import time
import uuid
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ticketing_auth import service
from ticketing_auth.dependencies import (
    ClientAddressDep,
    KeyRingDep,
    PasswordsDep,
    RevocationsDep,
    SettingsDep,
    SigninLimitDep,
)
from ticketing_auth.schemas import CredentialsIn, CurrentUserOut, SessionUserOut, SignUpIn, UpdateUserIn, UserOut
from ticketing_common.app import DatabaseDep
from ticketing_common.auth import CurrentUser, RequiredUser, clear_session_cookie, set_session_cookie
from ticketing_common.errors import error_responses

router = APIRouter(prefix="/api/users", tags=["auth"])
keys_router = APIRouter(tags=["auth"])

# Services fetch the set again whenever a token names a key they do not know, so caches may keep it this long.
JWKS_MAX_AGE_SECONDS = 300


@keys_router.get("/.well-known/jwks.json")
async def jwks(key_ring: KeyRingDep, settings: SettingsDep) -> JSONResponse:
    """The public keys session tokens are signed with (a JWK Set): the newest, and older ones while tokens they
    signed may still be valid."""
    body = key_ring.ring.public_jwks(token_seconds=settings.jwt_expires_seconds)
    return JSONResponse(body, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"})


def _start_session(
    response: Response,
    account: service.Account,
    key_ring: KeyRingDep,
    settings: SettingsDep,
    *,
    session_id: uuid.UUID | None = None,
    now: float | None = None,
) -> None:
    token = service.session_token(
        key_ring=key_ring.ring,
        account=account,
        session_id=session_id,
        expires_seconds=settings.jwt_expires_seconds,
        now=time.time() if now is None else now,
    )
    set_session_cookie(response, token, settings)


@router.post("/signup", status_code=201, responses=error_responses(400))
async def signup(
    body: SignUpIn,
    response: Response,
    db: DatabaseDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    key_ring: KeyRingDep,
) -> UserOut:
    """Create an account and sign it in."""
    account = await service.sign_up(
        db=db, passwords=passwords, email=body.email, password=body.password.get_secret_value()
    )
    _start_session(response, account, key_ring, settings)
    return UserOut(id=account.id, email=account.email)


@router.post("/signin", responses=error_responses(400, 429))
async def signin(
    body: CredentialsIn,
    response: Response,
    db: DatabaseDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    limit: SigninLimitDep,
    client_address: ClientAddressDep,
    key_ring: KeyRingDep,
) -> UserOut:
    """Sign in with email and password: a new session."""
    account = await service.authenticate(
        db=db,
        passwords=passwords,
        limit=limit,
        client_address=client_address,
        email=body.email,
        password=body.password.get_secret_value(),
    )
    _start_session(response, account, key_ring, settings)
    return UserOut(id=account.id, email=account.email)


@router.post("/signout")
async def signout(
    response: Response, user: CurrentUser, db: DatabaseDep, settings: SettingsDep, revocations: RevocationsDep
) -> dict[str, Any]:
    """End the session: every service refuses its cookie from now on, and the browser forgets it. Works without
    a session too."""
    await service.sign_out(db=db, revocations=revocations, session=user, now=time.time())
    clear_session_cookie(response, settings)
    return {}


@router.get("/currentuser")
async def current_user(user: CurrentUser) -> CurrentUserOut:
    """Who the session cookie belongs to, or null; never 401."""
    if user is None:
        return CurrentUserOut(current_user=None)
    return CurrentUserOut(current_user=SessionUserOut(id=user.id, email=user.email, iat=int(user.iat), exp=user.exp))


@router.put("/currentuser", responses=error_responses(400, 401, 409, 429))
async def update_current_user(
    body: UpdateUserIn,
    user: RequiredUser,
    response: Response,
    db: DatabaseDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    limit: SigninLimitDep,
    client_address: ClientAddressDep,
    key_ring: KeyRingDep,
    revocations: RevocationsDep,
) -> UserOut:
    """Change the signed-in user's email and/or password; a fresh cookie carries the new email. A new password
    ends every other session of the user."""
    now = time.time()
    account = await service.update_user(
        db=db,
        passwords=passwords,
        limit=limit,
        client_address=client_address,
        revocations=revocations,
        user_id=user.id,
        current_password=body.current_password.get_secret_value(),
        email=body.email,
        password=body.password.get_secret_value() if body.password is not None else None,
        now=now,
    )
    _start_session(response, account, key_ring, settings, session_id=user.sid, now=now)
    return UserOut(id=account.id, email=account.email)
