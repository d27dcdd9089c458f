"""HTTP routes of the auth service, under ``/api/users``: thin, the use cases live in ``service.py``."""

from typing import Any

from fastapi import APIRouter, Response

from ticketing_auth import service
from ticketing_auth.dependencies import ClientAddressDep, PasswordsDep, SettingsDep, SigninLimitDep
from ticketing_auth.schemas import CredentialsIn, CurrentUserOut, SessionUserOut, SignUpIn, UpdateUserIn, UserOut
from ticketing_common.app import DatabaseDep
from ticketing_common.auth import CurrentUser, RequiredUser, clear_session_cookie, start_session
from ticketing_common.errors import error_responses

router = APIRouter(prefix="/api/users", tags=["auth"])


@router.post("/signup", status_code=201, responses=error_responses(400))
async def signup(
    body: SignUpIn, response: Response, db: DatabaseDep, settings: SettingsDep, passwords: PasswordsDep
) -> UserOut:
    """Create an account and sign it in."""
    account = await service.sign_up(
        db=db, passwords=passwords, email=body.email, password=body.password.get_secret_value()
    )
    start_session(response, user_id=account.id, email=account.email, settings=settings)
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
) -> UserOut:
    """Sign in with email and password."""
    account = await service.authenticate(
        db=db,
        passwords=passwords,
        limit=limit,
        client_address=client_address,
        email=body.email,
        password=body.password.get_secret_value(),
    )
    start_session(response, user_id=account.id, email=account.email, settings=settings)
    return UserOut(id=account.id, email=account.email)


@router.post("/signout")
async def signout(response: Response, settings: SettingsDep) -> dict[str, Any]:
    """Forget the session (an expired cookie); works without one."""
    clear_session_cookie(response, settings)
    return {}


@router.get("/currentuser")
async def current_user(user: CurrentUser) -> CurrentUserOut:
    """Who the session cookie belongs to, or null; never 401."""
    if user is None:
        return CurrentUserOut(current_user=None)
    return CurrentUserOut(current_user=SessionUserOut(id=user.id, email=user.email, iat=user.iat, exp=user.exp))


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
) -> UserOut:
    """Change the signed-in user's email and/or password; a fresh cookie carries the new email."""
    account = await service.update_user(
        db=db,
        passwords=passwords,
        limit=limit,
        client_address=client_address,
        user_id=user.id,
        current_password=body.current_password.get_secret_value(),
        email=body.email,
        password=body.password.get_secret_value() if body.password is not None else None,
    )
    start_session(response, user_id=account.id, email=account.email, settings=settings)
    return UserOut(id=account.id, email=account.email)
