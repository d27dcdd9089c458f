"""Database wiring: one async engine per service, its own database created if missing, Alembic migrations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import DateTime, MetaData
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


TYPE_ANNOTATION_MAP: dict[Any, Any] = {datetime: DateTime(timezone=True)}


def service_metadata() -> MetaData:
    """A fresh MetaData for one service's tables (services never share a table registry)."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class MessagingBase(DeclarativeBase):
    """Registry of the outbox, inbox and parked-message tables that every service database has."""

    metadata = service_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """The service's engine: a fixed pool of ``pool_size`` connections.

    No overflow: under a burst, overflow connections were opened and closed on every checkout (a TCP and TLS
    negotiation each time), which cost more than waiting for a pooled one. No pre-ping: it costs three round
    trips per checkout (BEGIN, a ping, ROLLBACK); a connection found dead is invalidated with every connection
    older than it on its first error (the request answers 503, an event is retried), so a database restart
    costs one failure per process, not one per connection.
    """
    # hide_parameters: a failed statement's message (logged as an unhandled error) must not carry its bound
    # values, which can be secrets such as password hashes.
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, hide_parameters=True)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_connection_error(exc: BaseException) -> bool:
    """True for failures that mean the database is unreachable rather than that the request is wrong.

    The whole cause chain counts: a server that is restarting answers ``CannotConnectNowError``, which reaches
    the caller wrapped in a plain ``DBAPIError`` (SQLAlchemy does not map it to ``OperationalError``).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_connection_error_itself(current):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) and id(orig) not in seen else current.__cause__
    return False


def _is_connection_error_itself(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        ConnectionError
        | OSError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.InterfaceError,
    )


def _asyncpg_dsn(sqlalchemy_url: str, database: str | None = None) -> str:
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


async def ensure_database(sqlalchemy_url: str) -> None:
    """Create the URL's database on its server if it does not exist yet (safe when raced)."""
    name = make_url(sqlalchemy_url).database
    assert name, "the URL must name a database"
    conn = await asyncpg.connect(_asyncpg_dsn(sqlalchemy_url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with suppress(asyncpg.exceptions.DuplicateDatabaseError, asyncpg.exceptions.UniqueViolationError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def wait_for_database(sqlalchemy_url: str, *, timeout: float = 30.0) -> None:
    """Wait until the server accepts connections (it may still be starting)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            conn = await asyncpg.connect(_asyncpg_dsn(sqlalchemy_url, "postgres"), timeout=2)
            await conn.close()
            return
        except (OSError, asyncpg.exceptions.PostgresError, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


def migrate(sqlalchemy_url: str, migrations_dir: Path, revision: str = "head") -> None:
    """Apply a service's Alembic migrations to its database (creating the database first)."""
    from alembic import command
    from alembic.config import Config

    asyncio.run(_prepare(sqlalchemy_url))
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url.replace("%", "%%"))
    command.upgrade(config, revision)


async def _prepare(sqlalchemy_url: str) -> None:
    await wait_for_database(sqlalchemy_url)
    await ensure_database(sqlalchemy_url)


@asynccontextmanager
async def transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A unit of work: commits when the block succeeds, rolls back when it raises."""
    async with sessionmaker() as session, session.begin():
        yield session
