"""Use cases of the auth service: sign up, sign in (rate limited), change the current user's email or password.

Every use case takes keyword arguments and the request's ``session``; each opens its own short transactions with
``session.begin()`` and never holds one while a password is hashed. A user and its event are written in one
transaction (``publish`` adds the event to the outbox).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, Row, delete, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Interval

from ticketing_auth.config import Settings
from ticketing_auth.models import CLIENT_ADDRESS_MAX_LENGTH, USERS_EMAIL_UNIQUE, SigninFailure, User
from ticketing_auth.passwords import Passwords
from ticketing_common.db import new_id
from ticketing_common.errors import (
    BadRequestError,
    ConflictError,
    FieldError,
    NotAuthorizedError,
    TooManyRequestsError,
)
from ticketing_common.events import UserCreated, UserUpdated, publish

logger = logging.getLogger("ticketing.auth")

INVALID_CREDENTIALS = "Invalid credentials"
EMAIL_IN_USE = "Email in use"
TOO_MANY_ATTEMPTS = "Too many failed sign-in attempts, try again later"

# pg_advisory_xact_lock(namespace, key): the two-key form keeps these locks apart from Alembic's one-key lock.
SIGNIN_LOCK_NAMESPACE = 0x5167
PURGE_BATCH = 100
# One holder of an IPv6 /64 can use any of its 2^64 addresses: the limits count the network as one client.
IPV6_CLIENT_PREFIX = 64
# Each lost race means another update committed, so n concurrent updates of one user need at most n attempts.
MAX_UPDATE_ATTEMPTS = 10


@dataclass(frozen=True)
class Account:
    """A user as the routes show it."""

    id: uuid.UUID
    email: str


@dataclass(frozen=True)
class SigninLimit:
    """Within a sliding ``window``: at most ``max_failures`` failed password checks per (email, client address),
    and at most ``max_failures_per_address`` per client address across all emails.

    There is no limit per email alone: it would let anyone lock the owner out. See the README for the trade-off.
    """

    max_failures: int
    max_failures_per_address: int
    window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> SigninLimit:
        return cls(
            settings.signin_max_failures,
            settings.signin_max_failures_per_address,
            timedelta(seconds=settings.signin_window_seconds),
        )


def address_key(client_address: str) -> str:
    """What the limits count a client address as: an IPv4 address itself, an IPv6 address its /64 network."""
    try:
        address = ipaddress.ip_address(client_address)
    except ValueError:
        return client_address[:CLIENT_ADDRESS_MAX_LENGTH]
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


async def sign_up(*, session: AsyncSession, passwords: Passwords, email: str, password: str) -> Account:
    """Create the user and its ``user.created`` event; 400 "Email in use" when the email is taken."""
    password_hash = await passwords.hash(password)
    user = User(id=new_id(), email=email, password_hash=password_hash, version=0)
    try:
        async with session.begin():
            session.add(user)
            await session.flush()
            publish(session, UserCreated(id=user.id, email=user.email, version=user.version))
    except IntegrityError as exc:
        # The unique index decides between concurrent sign-ups: exactly one insert wins.
        if _violates(exc, USERS_EMAIL_UNIQUE):
            raise FieldError("email", EMAIL_IN_USE) from None
        raise
    logger.info("user signed up", extra={"user_id": str(user.id)})
    return Account(user.id, user.email)


async def sign_in(
    *,
    session: AsyncSession,
    passwords: Passwords,
    limit: SigninLimit,
    client_address: str,
    email: str,
    password: str,
) -> Account:
    """The user with these credentials; 400 "Invalid credentials" otherwise, 429 once this client is throttled
    for this email or for all emails.

    An unknown email and a wrong password take the same path: one attempt recorded, one Argon2 verification.
    """
    async with session.begin():
        attempt = await _reserve_attempt(session, email, client_address, limit)
        user = (
            await session.execute(select(User.id, User.email, User.password_hash).where(User.email == email))
        ).one_or_none()
    if not await passwords.verify(user.password_hash if user else None, password):
        logger.info("sign-in failed")
        raise BadRequestError(INVALID_CREDENTIALS)
    assert user is not None
    # Upgrade the hash while the password is at hand; never overwrite a hash changed meanwhile.
    new_hash = await passwords.hash(password) if passwords.needs_rehash(user.password_hash) else None
    async with session.begin():
        await _release_attempt(session, attempt)
        if new_hash is not None:
            await session.execute(
                update(User)
                .where(User.id == user.id, User.password_hash == user.password_hash)
                .values(password_hash=new_hash)
                .execution_options(synchronize_session=False)
            )
    logger.info("user signed in", extra={"user_id": str(user.id), "rehashed": new_hash is not None})
    return Account(user.id, user.email)


async def update_user(
    *,
    session: AsyncSession,
    passwords: Passwords,
    limit: SigninLimit,
    client_address: str,
    user_id: uuid.UUID,
    current_password: str,
    email: str | None,
    password: str | None,
) -> Account:
    """Change the email and/or password after checking ``current_password``; publishes ``user.updated``.

    The version is bumped by a conditional UPDATE (``WHERE version = :seen``); a concurrent change makes it
    match nothing, and the update is tried again on top of the new state, so no change is ever lost.
    """
    user = await _check_password(session, passwords, limit, client_address, user_id, current_password)
    new_hash = await passwords.hash(password) if password is not None else None
    for _ in range(MAX_UPDATE_ATTEMPTS):
        changes: dict[str, str] = {}
        if email is not None and email != user.email:
            changes["email"] = email
        if new_hash is not None:
            changes["password_hash"] = new_hash
        if not changes:
            return Account(user.id, user.email)
        new_email = changes.get("email", user.email)
        try:
            async with session.begin():
                version = await session.scalar(
                    update(User)
                    .where(User.id == user_id, User.version == user.version)
                    .values(**changes, version=User.version + 1, updated_at=func.now())
                    .returning(User.version)
                    .execution_options(synchronize_session=False)
                )
                if version is not None:
                    publish(session, UserUpdated(id=user_id, email=new_email, version=version))
        except IntegrityError as exc:
            if _violates(exc, USERS_EMAIL_UNIQUE):
                raise FieldError("email", EMAIL_IN_USE) from None
            raise
        if version is not None:
            logger.info("user updated", extra={"user_id": str(user_id), "version": version})
            return Account(user_id, new_email)
        # Someone else changed the user first: start again from their version.
        seen_hash = user.password_hash
        async with session.begin():
            user = await _load_user(session, user_id)
        if user.password_hash != seen_hash:
            user = await _check_password(session, passwords, limit, client_address, user_id, current_password)
    raise ConflictError("The account changed while it was being updated, try again")


async def _check_password(
    session: AsyncSession,
    passwords: Passwords,
    limit: SigninLimit,
    client_address: str,
    user_id: uuid.UUID,
    password: str,
) -> Row[tuple[uuid.UUID, str, str, int]]:
    """The user, once ``password`` is verified as theirs; a failure counts like a failed sign-in for the
    (email, client address), so a stolen session cookie is no unlimited password oracle."""
    async with session.begin():
        user = await _load_user(session, user_id)
        attempt = await _reserve_attempt(session, user.email, client_address, limit)
    if not await passwords.verify(user.password_hash, password):
        logger.info("current password check failed", extra={"user_id": str(user_id)})
        raise FieldError("currentPassword", INVALID_CREDENTIALS)
    async with session.begin():
        await _release_attempt(session, attempt)
    return user


async def _load_user(session: AsyncSession, user_id: uuid.UUID) -> Row[tuple[uuid.UUID, str, str, int]]:
    user = (
        await session.execute(select(User.id, User.email, User.password_hash, User.version).where(User.id == user_id))
    ).one_or_none()
    if user is None:
        # A valid token for a user this service does not know (e.g. signed by another environment's key).
        raise NotAuthorizedError()
    return user


async def _reserve_attempt(session: AsyncSession, email: str, client_address: str, limit: SigninLimit) -> int:
    """Count this attempt as a failure before the password is checked (429 if the client is throttled).

    Reserving first, under a lock per client address (both limits count one address's rows), means concurrent
    attempts cannot all pass the check before any of them is recorded; a success releases its reservation
    afterwards. The counts live in PostgreSQL, so every replica enforces the same limits. Must run inside the
    caller's transaction.
    """
    address = address_key(client_address)
    await session.execute(select(func.pg_advisory_xact_lock(SIGNIN_LOCK_NAMESPACE, func.hashtext(address))))
    window = literal(limit.window, Interval())
    window_start = func.now() - window
    expired = (
        select(SigninFailure.id)
        .where(SigninFailure.failed_at <= window_start)
        .limit(PURGE_BATCH)
        .with_for_update(skip_locked=True)
    )
    await session.execute(delete(SigninFailure).where(SigninFailure.id.in_(expired)))
    from_address = (SigninFailure.client_address == address, SigninFailure.failed_at > window_start)

    async def seconds_left(max_failures: int, *conditions: ColumnElement[bool]) -> float | None:
        # The n-th newest failure in the window for a limit of n: while it is in the window, the limit is reached.
        wait: float | None = await session.scalar(
            select(func.extract("epoch", SigninFailure.failed_at + window - func.now()))
            .where(*from_address, *conditions)
            .order_by(SigninFailure.failed_at.desc())
            .offset(max_failures - 1)
            .limit(1)
        )
        return wait

    pair_wait = await seconds_left(limit.max_failures, SigninFailure.email == email)
    address_wait = await seconds_left(limit.max_failures_per_address)
    waits = [wait for wait in (pair_wait, address_wait) if wait is not None]
    if waits:
        retry_after = math.ceil(max(waits))
        throttled = "address" if address_wait is not None else "email and address"
        logger.warning(
            "sign-in throttled", extra={"client_address": address, "limit": throttled, "retry_after": retry_after}
        )
        raise TooManyRequestsError(TOO_MANY_ATTEMPTS, retry_after=retry_after)
    attempt_id: int = await session.scalar(
        insert(SigninFailure).values(email=email, client_address=address).returning(SigninFailure.id)
    )
    return attempt_id


async def _release_attempt(session: AsyncSession, attempt_id: int) -> None:
    await session.execute(delete(SigninFailure).where(SigninFailure.id == attempt_id))


def _violates(exc: IntegrityError, constraint: str) -> bool:
    """Whether the database refused the statement because of ``constraint``."""
    cause = getattr(exc.orig, "__cause__", None)
    return getattr(cause, "constraint_name", None) == constraint
