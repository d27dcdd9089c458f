"""Sessions: a JWT (HS256) in an HttpOnly cookie named ``session``, and the FastAPI dependencies that read it."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import jwt
from fastapi import Depends, Request, Response
from pydantic import BaseModel, ConfigDict

from ticketing_common.config import ServiceSettings
from ticketing_common.errors import NotAuthorizedError

COOKIE_NAME = "session"
ALGORITHM = "HS256"


class UserPayload(BaseModel):
    """What a session token says about its user."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    email: str
    iat: int
    exp: int


def create_token(*, user_id: uuid.UUID, email: str, key: str, expires_seconds: int, now: int | None = None) -> str:
    issued = int(time.time()) if now is None else now
    claims = {"id": str(user_id), "email": email, "iat": issued, "exp": issued + expires_seconds}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_token(token: str, *, key: str) -> UserPayload | None:
    """The token's user, or None for anything not signed by ``key`` with HS256 and unexpired."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp", "iat", "id", "email"]})
        return UserPayload.model_validate(claims)
    except (jwt.PyJWTError, ValueError):
        return None


def set_session_cookie(response: Response, token: str, settings: ServiceSettings) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=settings.jwt_expires_seconds,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/",
    )


def clear_session_cookie(response: Response, settings: ServiceSettings) -> None:
    response.delete_cookie(COOKIE_NAME, httponly=True, samesite="lax", secure=settings.cookie_secure, path="/")


def start_session(response: Response, *, user_id: uuid.UUID, email: str, settings: ServiceSettings) -> str:
    """Issue a session token for the user and set it as the cookie; returns the token."""
    token = create_token(
        user_id=user_id, email=email, key=settings.jwt_key, expires_seconds=settings.jwt_expires_seconds
    )
    set_session_cookie(response, token, settings)
    return token


async def _current_user(request: Request) -> UserPayload | None:
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return None
    settings: ServiceSettings = request.app.state.settings
    return decode_token(token, key=settings.jwt_key)


async def _require_user(user: Annotated[UserPayload | None, Depends(_current_user)]) -> UserPayload:
    if user is None:
        raise NotAuthorizedError()
    return user


CurrentUser = Annotated[UserPayload | None, Depends(_current_user)]
"""The signed-in user, or None for a missing, tampered, expired or wrongly-signed token."""

RequiredUser = Annotated[UserPayload, Depends(_require_user)]
"""The signed-in user; 401 "Not authorized" otherwise."""
