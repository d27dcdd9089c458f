"""Use cases of the auth service: sign up, authenticate a sign-in (rate limited), issue a session token, sign out
(the session is revoked), change the current user's email or password (a new password revokes the user's other
sessions).

No unit of work is held while a password is hashed: each use case opens short ones around its statements, and
the Argon2 work happens between them. The rules (limits, what an update changes) are in ``domain.py``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from ticketing_auth import domain, queries
from ticketing_auth.domain import SigninLimit
from ticketing_auth.passwords import Passwords
from ticketing_auth.queries import USERS_EMAIL_UNIQUE, Reservation, User
from ticketing_common.auth import UserPayload, encode_session_token
from ticketing_common.db import Database, UnitOfWork, new_id, violated_constraint
from ticketing_common.errors import (
    BadRequestError,
    ConflictError,
    FieldError,
    NotAuthorizedError,
    TooManyRequestsError,
)
from ticketing_common.events import SessionRevoked, UserCreated, UserUpdated
from ticketing_common.keys import KeyRing
from ticketing_common.revocations import Revocations

logger = logging.getLogger("ticketing.auth")

R = TypeVar("R")

INVALID_CREDENTIALS = "Invalid credentials"
EMAIL_IN_USE = "Email in use"
TOO_MANY_ATTEMPTS = "Too many failed sign-in attempts, try again later"

# Each lost race means another update committed, so n concurrent updates of one user need at most n attempts.
MAX_UPDATE_ATTEMPTS = 10


@dataclass(frozen=True)
class Account:
    """A user as the routes show it: without the password hash."""

    id: uuid.UUID
    email: str


def session_token(
    *, key_ring: KeyRing, account: Account, session_id: uuid.UUID | None, expires_seconds: int, now: float
) -> str:
    """A session token for ``account`` signed with the newest active key: for a new session (``session_id`` None) or
    the same session again (after a change of email or password)."""
    return encode_session_token(
        key_ring.signing_key_at(now),
        user_id=account.id,
        email=account.email,
        session_id=session_id or uuid.uuid4(),
        expires_seconds=expires_seconds,
        now=now,
    )


async def sign_out(*, db: Database, revocations: Revocations, session: UserPayload | None, now: float) -> None:
    """Revoke the session (every service refuses it from then on); nothing to do without a live one."""
    if session is None:
        return
    async with db.unit_of_work() as uow:
        _revoke(uow, revocations, SessionRevoked(user_id=session.id, session_id=session.sid, revoked_before=_at(now)))
    logger.info("user signed out", extra={"user_id": str(session.id), "session_id": str(session.sid)})


def _revoke(uow: UnitOfWork, revocations: Revocations, event: SessionRevoked) -> None:
    """Publish the revocation; this process applies it at commit, the others when the event reaches them."""
    uow.publish(event)
    uow.after_commit(lambda: revocations.apply(event))


def _at(now: float) -> datetime:
    """``now`` as session tokens write their ``iat``: to the millisecond."""
    return datetime.fromtimestamp(round(now, 3), UTC)


async def sign_up(*, db: Database, passwords: Passwords, email: str, password: str) -> Account:
    """Create the user and its ``user.created`` event; 400 "Email in use" when the email is taken."""
    password_hash = await passwords.hash(password)
    async with db.unit_of_work() as uow:
        # The unique constraint decides between concurrent sign-ups: exactly one insert returns the user.
        user = await queries.insert_user(uow.conn, user_id=new_id(), email=email, password_hash=password_hash)
        if user is None:
            raise FieldError("email", EMAIL_IN_USE)
        uow.publish(UserCreated(id=user.id, email=user.email, version=user.version))
    logger.info("user signed up", extra={"user_id": str(user.id)})
    return Account(user.id, user.email)


async def authenticate(
    *,
    db: Database,
    passwords: Passwords,
    limit: SigninLimit,
    client_address: str,
    email: str,
    password: str,
) -> Account:
    """The user with these credentials; 400 "Invalid credentials" otherwise, 429 once this client is throttled
    for this email or for all emails.

    An unknown email and a wrong password take the same path: one attempt recorded (the same statements), one
    Argon2 verification.
    """
    address = domain.address_key(client_address)
    reservation = await _reserve_attempt(db, limit, address, queries.reserve_signin, email=email)
    attempt_id = _admitted_attempt(reservation, address)
    user = reservation.user
    if not await passwords.verify(user.password_hash if user else None, password):
        logger.info("sign-in failed")
        raise BadRequestError(INVALID_CREDENTIALS)
    assert user is not None
    rehashed = await _release_and_upgrade_hash(db, passwords, attempt_id=attempt_id, user=user, password=password)
    logger.info("user signed in", extra={"user_id": str(user.id), "rehashed": rehashed})
    return Account(user.id, user.email)


async def update_user(
    *,
    db: Database,
    passwords: Passwords,
    limit: SigninLimit,
    client_address: str,
    revocations: Revocations,
    user_id: uuid.UUID,
    current_password: str,
    email: str | None,
    password: str | None,
    now: float,
) -> Account:
    """Change the email and/or password after checking ``current_password``; publishes ``user.updated``. A new
    password also revokes every session of the user issued before ``now`` (the caller's gets a token issued at
    ``now``).

    The version is bumped by a conditional UPDATE (``WHERE version = <seen>``); a concurrent change makes it
    match nothing, and the update is tried again on top of the new state, so no change is ever lost.
    """
    user = await _verify_current_password(db, passwords, limit, client_address, user_id, current_password)
    new_hash = await passwords.hash(password) if password is not None else None
    for _ in range(MAX_UPDATE_ATTEMPTS):
        new_email = domain.email_change(user.email, email)
        if new_email is None and new_hash is None:
            return Account(user.id, user.email)  # nothing changes: no version, no event
        updated = await _update_from_version(db, revocations, user, email=new_email, password_hash=new_hash, now=now)
        if updated is not None:
            logger.info("user updated", extra={"user_id": str(user_id), "version": updated.version})
            return Account(updated.id, updated.email)
        # Someone else changed the user first: start again from their version.
        seen_hash = user.password_hash
        user = _known_user(await queries.find_user(db.pool, user_id))
        if user.password_hash != seen_hash:
            user = await _verify_current_password(db, passwords, limit, client_address, user_id, current_password)
    raise ConflictError("The account changed while it was being updated, try again")


async def _update_from_version(
    db: Database, revocations: Revocations, user: User, *, email: str | None, password_hash: str | None, now: float
) -> User | None:
    """Apply the changes on top of ``user``'s version and publish ``user.updated`` (and, with a new password, the
    revocation of the user's sessions issued before ``now``, in the same transaction); None when the user has moved
    past that version. 400 "Email in use" when the new email is taken."""
    try:
        async with db.unit_of_work() as uow:
            updated = await queries.update_user(
                uow.conn, user_id=user.id, seen_version=user.version, email=email, password_hash=password_hash
            )
            if updated is not None:
                uow.publish(UserUpdated(id=updated.id, email=updated.email, version=updated.version))
                if password_hash is not None:
                    every_older = SessionRevoked(user_id=user.id, session_id=None, revoked_before=_at(now))
                    _revoke(uow, revocations, every_older)
    except asyncpg.UniqueViolationError as exc:
        # The same constraint as sign-up's guards email changes; an UPDATE has no ON CONFLICT.
        if violated_constraint(exc) == USERS_EMAIL_UNIQUE:
            raise FieldError("email", EMAIL_IN_USE) from None
        raise
    return updated


async def _verify_current_password(
    db: Database,
    passwords: Passwords,
    limit: SigninLimit,
    client_address: str,
    user_id: uuid.UUID,
    password: str,
) -> User:
    """The user, once ``password`` is verified as theirs; a failure counts like a failed sign-in for the
    (email, client address), so a stolen session cookie is no unlimited password oracle."""
    address = domain.address_key(client_address)
    reservation = await _reserve_attempt(db, limit, address, queries.reserve_for_user, user_id=user_id)
    if reservation is None:
        raise NotAuthorizedError()  # a valid token of a user this service does not know
    attempt_id = _admitted_attempt(reservation, address)
    user = _known_user(reservation.user)
    if not await passwords.verify(user.password_hash, password):
        logger.info("current password check failed", extra={"user_id": str(user_id)})
        raise FieldError("currentPassword", INVALID_CREDENTIALS)
    await queries.release_attempt(db.pool, attempt_id)
    return user


async def _reserve_attempt(
    db: Database, limit: SigninLimit, address: str, reserve: Callable[..., Awaitable[R]], **who: Any
) -> R:
    """Reserve one attempt for ``who`` from ``address`` under the address's lock, so two requests from one address
    take turns and each counts the other's attempt."""
    async with db.unit_of_work() as uow:
        await queries.lock_client_address(uow.conn, address)
        return await reserve(
            uow.conn,
            **who,
            address=address,
            window=limit.window,
            max_failures=limit.max_failures,
            max_failures_per_address=limit.max_failures_per_address,
        )


async def _release_and_upgrade_hash(
    db: Database, passwords: Passwords, *, attempt_id: int, user: User, password: str
) -> bool:
    """Release a successful attempt's reservation and, while the password is at hand, upgrade a hash made with
    other parameters; returns whether it was upgraded. Either way one statement on the pool: nothing to publish,
    nothing else to keep atomic with it."""
    if not passwords.needs_rehash(user.password_hash):
        await queries.release_attempt(db.pool, attempt_id)
        return False
    new_hash = await passwords.hash(password)
    await queries.release_attempt_and_rehash(
        db.pool, attempt_id=attempt_id, user_id=user.id, verified_hash=user.password_hash, new_hash=new_hash
    )
    return True


def _known_user(user: User | None) -> User:
    if user is None:
        # A valid token for a user this service does not know (e.g. signed by another environment's key).
        raise NotAuthorizedError()
    return user


def _admitted_attempt(reservation: Reservation, address: str) -> int:
    """The reserved attempt's id; 429 with Retry-After when a limit refused the reservation.

    Reserving before the password is checked, under a lock per client address (both limits count one address's
    rows), means concurrent attempts cannot all pass the check before any of them is recorded; a success releases
    its reservation afterwards.
    """
    if reservation.attempt_id is not None:
        return reservation.attempt_id
    wait = domain.retry_after(pair_wait=reservation.pair_wait, address_wait=reservation.address_wait)
    throttled = "address" if reservation.address_wait is not None else "email and address"
    logger.warning("sign-in throttled", extra={"client_address": address, "limit": throttled, "retry_after": wait})
    raise TooManyRequestsError(TOO_MANY_ATTEMPTS, retry_after=wait)
