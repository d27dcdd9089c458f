"""Every SQL statement of the auth service, and the rows they return.

Tables (``migrations/versions/0001_initial.py``): ``users`` (email stored normalised, unique by
``uq_users_email``) and ``signin_failures`` (one row per failed or in-flight password check, keyed by email and
client address).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from ticketing_common.db import Executor

USERS_EMAIL_UNIQUE = "uq_users_email"

# pg_advisory_xact_lock(namespace, key): the two-key form keeps these locks apart from Alembic's one-key lock.
SIGNIN_LOCK_NAMESPACE = 0x5167


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    password_hash: str
    version: int


@dataclass(frozen=True)
class Reservation:
    """The outcome of a reservation: ``attempt_id`` when the attempt was recorded, otherwise the seconds until
    the limit per (email, address) and/or per address lets the client in again; ``user`` as it was read in the
    same statement (None when unknown)."""

    attempt_id: int | None
    pair_wait: float | None
    address_wait: float | None
    user: User | None


INSERT_USER = """
INSERT INTO users (id, email, password_hash, version) VALUES ($1, $2, $3, 0)
ON CONFLICT ON CONSTRAINT uq_users_email DO NOTHING
RETURNING id, email, password_hash, version
"""

FIND_USER = "SELECT id, email, password_hash, version FROM users WHERE id = $1"

# A version bump for each change other services must see; matches nothing once someone else changed the user.
UPDATE_USER = """
UPDATE users
SET email = coalesce($3, email), password_hash = coalesce($4, password_hash), version = version + 1,
    updated_at = now()
WHERE id = $1 AND version = $2
RETURNING id, email, password_hash, version
"""

# Taken before counting, in its own statement: a statement's snapshot predates the locks it waits for, so the
# count must start after the lock is held to see every reservation committed meanwhile.
LOCK_CLIENT_ADDRESS = "SELECT pg_advisory_xact_lock($1, hashtext($2))"

# One statement after the lock: purge up to 100 expired rows (the table stays at about one window's failures), find
# each limit's n-th newest failure in the window (reached while there is one; its age is the wait), record the
# attempt unless a limit is reached. $1 email or user id, $2 address key, $3 window, $4 and $5 the two limits.
_RESERVE = """
purged AS (
    DELETE FROM signin_failures WHERE id IN (
        SELECT id FROM signin_failures WHERE failed_at <= now() - $3::interval
        LIMIT 100 FOR UPDATE SKIP LOCKED
    )
),
waits AS (
    SELECT
        key.email,
        (SELECT extract(epoch FROM f.failed_at + $3::interval - now())::float8 FROM signin_failures f
         WHERE f.client_address = $2 AND f.email = key.email AND f.failed_at > now() - $3::interval
         ORDER BY f.failed_at DESC OFFSET $4::int - 1 LIMIT 1) AS pair_wait,
        (SELECT extract(epoch FROM f.failed_at + $3::interval - now())::float8 FROM signin_failures f
         WHERE f.client_address = $2 AND f.failed_at > now() - $3::interval
         ORDER BY f.failed_at DESC OFFSET $5::int - 1 LIMIT 1) AS address_wait
    FROM key
),
reserved AS (
    INSERT INTO signin_failures (email, client_address)
    SELECT email, $2 FROM waits WHERE pair_wait IS NULL AND address_wait IS NULL
    RETURNING id
)
SELECT (SELECT id FROM reserved) AS attempt_id, waits.pair_wait, waits.address_wait,
       account.id, account.email, account.password_hash, account.version
FROM waits LEFT JOIN account ON true
"""

# Sign-in: the attempt counts for the email as typed, whether or not it has an account.
RESERVE_SIGNIN = f"""
WITH account AS (SELECT id, email, password_hash, version FROM users WHERE email = $1::text),
key AS (SELECT $1::text AS email),
{_RESERVE}"""  # noqa: S608 - put together from constants

# Checking a signed-in user's password: the attempt counts for the user's current email; no row when the user
# is unknown (nothing is recorded then).
RESERVE_FOR_USER = f"""
WITH account AS (SELECT id, email, password_hash, version FROM users WHERE id = $1),
key AS (SELECT email FROM account),
{_RESERVE}"""  # noqa: S608 - put together from constants

RELEASE_ATTEMPT = "DELETE FROM signin_failures WHERE id = $1"

# A success releases its reservation and, with the same statement, upgrades the hash it verified; a hash changed
# meanwhile is never overwritten.
RELEASE_ATTEMPT_AND_REHASH = """
WITH released AS (DELETE FROM signin_failures WHERE id = $1)
UPDATE users SET password_hash = $4 WHERE id = $2 AND password_hash = $3
"""


def _user(row: asyncpg.Record | None) -> User | None:
    if row is None or row["id"] is None:
        return None
    return User(id=row["id"], email=row["email"], password_hash=row["password_hash"], version=row["version"])


async def insert_user(db: Executor, *, user_id: uuid.UUID, email: str, password_hash: str) -> User | None:
    """The new user at version 0, or None when the email is taken (the unique constraint decides, also between
    concurrent sign-ups)."""
    return _user(await db.fetchrow(INSERT_USER, user_id, email, password_hash))


async def find_user(db: Executor, user_id: uuid.UUID) -> User | None:
    return _user(await db.fetchrow(FIND_USER, user_id))


async def update_user(
    db: Executor, *, user_id: uuid.UUID, seen_version: int, email: str | None, password_hash: str | None
) -> User | None:
    """The user at its next version with the given changes (None: unchanged), or None when its version is no
    longer ``seen_version``. Raises asyncpg's UniqueViolationError (``uq_users_email``) for a taken email."""
    return _user(await db.fetchrow(UPDATE_USER, user_id, seen_version, email, password_hash))


async def lock_client_address(conn: asyncpg.Connection, address: str) -> None:
    """Serialise the reservations of one client address until the transaction ends."""
    await conn.execute(LOCK_CLIENT_ADDRESS, SIGNIN_LOCK_NAMESPACE, address)


def _reservation(row: asyncpg.Record) -> Reservation:
    return Reservation(
        attempt_id=row["attempt_id"], pair_wait=row["pair_wait"], address_wait=row["address_wait"], user=_user(row)
    )


async def reserve_signin(
    conn: asyncpg.Connection,
    *,
    email: str,
    address: str,
    window: timedelta,
    max_failures: int,
    max_failures_per_address: int,
) -> Reservation:
    """Record a sign-in attempt for (email, address) unless a limit is reached; with the email's user. Run it
    after :func:`lock_client_address`, in the same transaction."""
    row = await conn.fetchrow(RESERVE_SIGNIN, email, address, window, max_failures, max_failures_per_address)
    assert row is not None  # the statement always answers one row for an email
    return _reservation(row)


async def reserve_for_user(
    conn: asyncpg.Connection,
    *,
    user_id: uuid.UUID,
    address: str,
    window: timedelta,
    max_failures: int,
    max_failures_per_address: int,
) -> Reservation | None:
    """Like :func:`reserve_signin` for the user's current email; None when the user is unknown."""
    row = await conn.fetchrow(RESERVE_FOR_USER, user_id, address, window, max_failures, max_failures_per_address)
    return None if row is None else _reservation(row)


async def release_attempt(db: Executor, attempt_id: int) -> None:
    await db.execute(RELEASE_ATTEMPT, attempt_id)


async def release_attempt_and_rehash(
    db: Executor, *, attempt_id: int, user_id: uuid.UUID, verified_hash: str, new_hash: str
) -> bool:
    """Release the attempt and replace ``verified_hash`` by ``new_hash``; False when the hash had changed."""
    status = await db.execute(RELEASE_ATTEMPT_AND_REHASH, attempt_id, user_id, verified_hash, new_hash)
    return status == "UPDATE 1"
