"""Sessions: an EdDSA (Ed25519) JWT in an HttpOnly cookie named ``session``, and how every service checks it.

Only auth holds a private key and mints tokens; every service verifies them with public keys alone (auth's key
ring, or its JWK Set over HTTP for the others), refuses every other algorithm, and refuses sessions that
``session.revoked`` events ended (:mod:`ticketing_common.revocations`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Depends, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from ticketing_common.config import ServiceSettings
from ticketing_common.errors import NotAuthorizedError, ServiceUnavailableError
from ticketing_common.keys import ALGORITHM, KeyRingFile, SigningKey, public_keys_from_jwks
from ticketing_common.revocations import Revocations

logger = logging.getLogger("ticketing.sessions")

COOKIE_NAME = "session"
REQUIRED_CLAIMS = ["exp", "iat", "id", "email", "sid", "jti"]
CANNOT_CHECK_SESSIONS = "Sessions cannot be checked right now, try again shortly"


class UserPayload(BaseModel):
    """What a session token says: its user, its session (``sid``, shared by the tokens of one sign-in), its own id
    (``jti``) and when it was issued (``iat``, to the millisecond) and expires."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    email: str
    sid: uuid.UUID
    jti: uuid.UUID
    iat: float
    exp: int


def encode_session_token(
    key: SigningKey, *, user_id: uuid.UUID, email: str, session_id: uuid.UUID, expires_seconds: int, now: float
) -> str:
    """A session token signed by ``key`` (auth's newest; the test helpers' own)."""
    issued = round(now, 3)
    claims = {
        "id": str(user_id),
        "email": email,
        "sid": str(session_id),
        "jti": str(uuid.uuid4()),
        "iat": issued,
        "exp": int(issued) + expires_seconds,
    }
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


class PublicKeys(Protocol):
    """Where a verifier finds the public key of a ``kid``."""

    @property
    def loaded(self) -> bool:
        """Whether the keys have been read at least once."""
        ...

    def get(self, kid: str) -> Ed25519PublicKey | None: ...

    async def refresh(self) -> bool:
        """Look again (a new key may have appeared); False when the keys could not be read at all."""
        ...


class KeyRingKeys:
    """Auth's own public keys, straight from its key ring file."""

    def __init__(self, ring_file: KeyRingFile, *, token_seconds: int) -> None:
        self.ring_file = ring_file
        self.token_seconds = token_seconds
        self.loaded = True

    def get(self, kid: str) -> Ed25519PublicKey | None:
        for key in self.ring_file.ring.verifying_keys(token_seconds=self.token_seconds):
            if key.kid == kid:
                return key.private_key.public_key()
        return None

    async def refresh(self) -> bool:
        return True


class JwksKeys:
    """The public keys of auth's JWK Set, fetched at start and again when a token names an unknown ``kid``: at most
    one fetch a second, and a request that meets a new key waits for the next one rather than being refused."""

    def __init__(self, url: str, *, min_interval: float = 1.0, timeout: float = 2.0) -> None:
        self.url = url
        self._min_interval = min_interval
        self._timeout = timeout
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._loaded = False
        self._last_attempt = -float("inf")
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    async def refresh(self) -> bool:
        started = time.monotonic()
        async with self._lock:
            if self._last_attempt >= started:
                return self._loaded  # someone fetched while this request waited: their answer is fresh
            await asyncio.sleep(max(0.0, self._last_attempt + self._min_interval - time.monotonic()))
            self._last_attempt = time.monotonic()
            try:
                async with httpx.AsyncClient(timeout=self._timeout) as client:
                    response = await client.get(self.url)
                    response.raise_for_status()
                    keys = public_keys_from_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("cannot fetch the session keys", extra={"url": self.url, "error": repr(exc)})
                return self._loaded
            if set(keys) != set(self._keys):
                logger.info("session keys loaded", extra={"kids": sorted(keys)})
            self._keys, self._loaded = keys, True
            return True

    async def keep_loading(self) -> None:
        """At start: fetch until the first success (auth may come up after this service); :meth:`refresh` spaces
        the attempts."""
        while not await self.refresh():
            pass


class SessionVerifier:
    """Checks a session cookie: signature (EdDSA, a known ``kid``), expiry, and revocation.

    A browser sends the same token with every request, so tokens whose signature checked out are remembered (a
    bounded number); expiry and revocation are still checked on every request."""

    def __init__(
        self,
        keys: PublicKeys,
        revocations: Revocations,
        *,
        remember: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.revocations = revocations
        self._remember = remember
        self._clock = clock
        self._verified: dict[str, tuple[str, UserPayload]] = {}  # token -> (kid, claims)

    @property
    def ready(self) -> bool:
        """Whether a session can be told from a revoked or forged one: keys read, revocations caught up."""
        return self.keys.loaded and self.revocations.ready

    async def verify(self, token: str) -> UserPayload | None:
        """The token's user, or None for a token that is not a live session; 503 while this service cannot tell
        (no keys yet, revocations not caught up)."""
        remembered = self._verified.get(token)
        if remembered is not None and (remembered[1].exp <= self._clock() or self.keys.get(remembered[0]) is None):
            del self._verified[token]  # expired, or its key withdrawn since
            return None
        if remembered is None:
            checked = await self._check_signature(token)
            if checked is None:
                return None
            if len(self._verified) >= self._remember:
                del self._verified[next(iter(self._verified))]  # the oldest remembered
            self._verified[token] = remembered = checked
        user = remembered[1]
        if not self.revocations.ready:
            raise ServiceUnavailableError(CANNOT_CHECK_SESSIONS)
        return None if self.revocations.is_revoked(user) else user

    async def _check_signature(self, token: str) -> tuple[str, UserPayload] | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            return None
        key = self.keys.get(kid)
        if key is None:
            if not await self.keys.refresh():
                raise ServiceUnavailableError(CANNOT_CHECK_SESSIONS)
            key = self.keys.get(kid)
            if key is None:
                return None
        user = _decode(token, key)
        return None if user is None else (kid, user)


def _decode(token: str, key: Ed25519PublicKey) -> UserPayload | None:
    try:
        claims: dict[str, Any] = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS})
        return UserPayload.model_validate(claims)
    except (jwt.PyJWTError, ValidationError):
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


async def _current_user(request: Request) -> UserPayload | None:
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return None
    verifier: SessionVerifier = request.app.state.sessions
    return await verifier.verify(token)


async def _require_user(user: Annotated[UserPayload | None, Depends(_current_user)]) -> UserPayload:
    if user is None:
        raise NotAuthorizedError()
    return user


CurrentUser = Annotated[UserPayload | None, Depends(_current_user)]
"""The signed-in user, or None for a missing, tampered, expired, revoked or wrongly-signed token."""

RequiredUser = Annotated[UserPayload, Depends(_require_user)]
"""The signed-in user; 401 "Not authorized" otherwise."""
