"""The statements of ``queries.py`` decide in one round trip and answer the decision in their result."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest
from fastapi import FastAPI

from ticketing_auth import queries

WINDOW = timedelta(minutes=15)
ADDRESS = "203.0.113.9"


@pytest.fixture
def pool(app: FastAPI) -> asyncpg.Pool:
    db_pool: asyncpg.Pool = app.state.db.pool
    return db_pool


async def _reserve(
    pool: asyncpg.Pool, email: str, *, max_failures: int = 3, per_address: int = 5
) -> queries.Reservation:
    async with pool.acquire() as conn, conn.transaction():
        await queries.lock_client_address(conn, ADDRESS)
        return await queries.reserve_signin(
            conn,
            email=email,
            address=ADDRESS,
            window=WINDOW,
            max_failures=max_failures,
            max_failures_per_address=per_address,
        )


async def _failures(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM signin_failures")
    return count


async def test_inserting_a_taken_email_answers_none_without_an_error_and_keeps_the_first_user(
    pool: asyncpg.Pool,
) -> None:
    first = await queries.insert_user(pool, user_id=uuid.uuid4(), email="ada@example.com", password_hash="h1")

    second = await queries.insert_user(pool, user_id=uuid.uuid4(), email="ada@example.com", password_hash="h2")

    assert first is not None
    assert (first.email, first.password_hash, first.version) == ("ada@example.com", "h1", 0)
    assert second is None
    assert await queries.find_user(pool, first.id) == first


async def test_concurrent_inserts_of_one_email_give_exactly_one_user(pool: asyncpg.Pool) -> None:
    results = await asyncio.gather(
        *(
            queries.insert_user(pool, user_id=uuid.uuid4(), email="ada@example.com", password_hash=f"h{i}")
            for i in range(8)
        )
    )

    assert sum(result is not None for result in results) == 1
    assert await pool.fetchval("SELECT count(*) FROM users") == 1


async def test_an_update_from_a_stale_version_changes_nothing_and_answers_none(pool: asyncpg.Pool) -> None:
    user = await queries.insert_user(pool, user_id=uuid.uuid4(), email="ada@example.com", password_hash="h1")
    assert user is not None
    changed = await queries.update_user(
        pool, user_id=user.id, seen_version=0, email="king@example.com", password_hash=None
    )

    stale = await queries.update_user(
        pool, user_id=user.id, seen_version=0, email="grace@example.com", password_hash="h2"
    )

    assert changed == queries.User(user.id, "king@example.com", "h1", 1)
    assert stale is None
    assert await queries.find_user(pool, user.id) == changed


async def test_a_rehash_never_overwrites_a_hash_changed_since_it_was_verified_but_still_releases_the_attempt(
    pool: asyncpg.Pool,
) -> None:
    user = await queries.insert_user(pool, user_id=uuid.uuid4(), email="ada@example.com", password_hash="changed")
    assert user is not None
    reservation = await _reserve(pool, "ada@example.com")
    assert reservation.attempt_id is not None

    rehashed = await queries.release_attempt_and_rehash(
        pool, attempt_id=reservation.attempt_id, user_id=user.id, verified_hash="verified", new_hash="upgraded"
    )

    assert rehashed is False
    assert await queries.find_user(pool, user.id) == user
    assert await _failures(pool) == 0


async def test_a_reservation_reads_the_user_of_the_email_or_none_and_records_the_attempt_either_way(
    pool: asyncpg.Pool,
) -> None:
    user = await queries.insert_user(pool, user_id=uuid.uuid4(), email="ada@example.com", password_hash="h1")

    known = await _reserve(pool, "ada@example.com")
    unknown = await _reserve(pool, "nobody@example.com")

    assert known.user == user
    assert unknown.user is None
    assert known.attempt_id is not None
    assert unknown.attempt_id is not None
    assert await _failures(pool) == 2


async def test_a_refused_reservation_records_nothing_so_hammering_does_not_extend_the_wait(
    pool: asyncpg.Pool,
) -> None:
    for _ in range(3):
        assert (await _reserve(pool, "ada@example.com")).attempt_id is not None

    refusals = [await _reserve(pool, "ada@example.com") for _ in range(5)]

    assert all(r.attempt_id is None for r in refusals)
    assert all(r.pair_wait is not None and 0 < r.pair_wait <= WINDOW.total_seconds() for r in refusals)
    assert all(r.address_wait is None for r in refusals)
    assert await _failures(pool) == 3


async def test_the_limit_per_address_refuses_a_new_email_once_the_address_is_at_its_limit(pool: asyncpg.Pool) -> None:
    for n in range(5):
        assert (await _reserve(pool, f"victim-{n}@example.com")).attempt_id is not None

    refused = await _reserve(pool, "victim-5@example.com")

    assert refused.attempt_id is None
    assert (refused.pair_wait, refused.address_wait is not None) == (None, True)


async def test_a_reservation_purges_up_to_100_expired_failures_of_any_address(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """
        INSERT INTO signin_failures (email, client_address, failed_at)
        SELECT 'old@example.com', '198.51.100.1', now() - interval '1 day' FROM generate_series(1, 150)
        """
    )

    await _reserve(pool, "ada@example.com")

    assert await _failures(pool) == 50 + 1


async def test_reserving_for_an_unknown_user_answers_none_and_records_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await queries.lock_client_address(conn, ADDRESS)
        reservation = await queries.reserve_for_user(
            conn, user_id=uuid.uuid4(), address=ADDRESS, window=WINDOW, max_failures=3, max_failures_per_address=5
        )

    assert reservation is None
    assert await _failures(pool) == 0


async def test_reserving_for_a_user_counts_under_the_users_current_email(pool: asyncpg.Pool) -> None:
    user = await queries.insert_user(pool, user_id=uuid.uuid4(), email="ada@example.com", password_hash="h1")
    assert user is not None
    for _ in range(3):
        assert (await _reserve(pool, "ada@example.com")).attempt_id is not None

    async with pool.acquire() as conn, conn.transaction():
        await queries.lock_client_address(conn, ADDRESS)
        reservation = await queries.reserve_for_user(
            conn, user_id=user.id, address=ADDRESS, window=WINDOW, max_failures=3, max_failures_per_address=5
        )

    assert reservation is not None
    assert reservation.user == user
    assert reservation.attempt_id is None
    assert reservation.pair_wait is not None
