"""Database wiring at run time: one asyncpg pool per service and the unit of work every writer uses.

SQL is written out in each service's ``queries.py``; SQLAlchemy appears only in migrations (Alembic). A write that
publishes events or takes more than one statement opens a unit of work (``unit_of_work``: a transaction); a single
statement that publishes may write its events itself (``one_statement``); one that publishes nothing may run on the
pool, where it is its own transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ticketing_common import tracing

if TYPE_CHECKING:
    from alembic.config import Config

    from ticketing_common.events.catalogue import Event

logger = logging.getLogger("ticketing.db")

CE_SPECVERSION = "1.0"

# One row (the usual case) as plain VALUES; several as arrays, still one round trip.
WRITE_OUTBOX_ROW = "INSERT INTO outbox (event_id, subject, payload, headers) VALUES ($1, $2, $3::jsonb, $4::jsonb)"
WRITE_OUTBOX_ROWS = """
INSERT INTO outbox (event_id, subject, payload, headers)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[])
"""

OutboxArguments = tuple[list[uuid.UUID], list[str], list[str], list[str]]
"""Events as the arrays an outbox insert unnests: event ids, subjects, payloads, headers (JSON text)."""
NO_EVENTS: OutboxArguments = ([], [], [], [])

Executor = asyncpg.Connection | asyncpg.Pool
"""Where a query runs: a unit of work's connection, or the pool for a read outside any transaction."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


@dataclass(frozen=True)
class OutboxMessage:
    """An event as it is written to the outbox and sent to JetStream (payload as JSON text)."""

    event_id: uuid.UUID
    subject: str
    payload: str
    headers: dict[str, str]
    event: Event | None = None  # None when read back from the table


def cloudevent_headers(*, event_id: uuid.UUID, subject: str, source: str, time: datetime) -> dict[str, str]:
    """NATS headers of an event: the dedup id JetStream honours plus CloudEvents attributes."""
    return {
        "Nats-Msg-Id": str(event_id),
        "ce-id": str(event_id),
        "ce-type": subject,
        "ce-source": source,
        "ce-time": time.isoformat(),
        "ce-specversion": CE_SPECVERSION,
        "content-type": "application/json",
    }


@dataclass
class UnitOfWork:
    """One transaction on ``conn``: the use case runs its statements and stages its events; the events are
    written to the outbox right before the commit, and handed to the publisher right after it."""

    conn: asyncpg.Connection
    source: str
    staged: list[OutboxMessage] = field(default_factory=list)
    callbacks: list[Callable[[], object]] = field(default_factory=list)
    _written: int = 0  # staged[:_written] are in the outbox (or in a statement on their way there)

    def publish(
        self,
        event: Event,
        *,
        subject: str | None = None,
        headers: dict[str, str] | None = None,
        event_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Stage ``event``; it is written and sent only if this unit of work commits. ``subject`` and ``headers``
        override where and how it is sent (a JetStream schedule targets the event's own subject); ``event_id``
        when the caller must record the id first. Returns the event id."""
        from ticketing_common.events.catalogue import encode_text  # the events package imports this module

        event_id = event_id or uuid.uuid4()
        all_headers = {
            **cloudevent_headers(event_id=event_id, subject=event.subject, source=self.source, time=utcnow()),
            **(headers or {}),
        }
        tracing.inject(all_headers)
        self.staged.append(
            OutboxMessage(
                event_id=event_id,
                subject=subject or str(event.subject),
                payload=encode_text(event),
                headers=all_headers,
                event=event,
            )
        )
        return event_id

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once the transaction has committed (never if it rolls back); it must not raise."""
        self.callbacks.append(callback)

    def outbox_arguments(self) -> OutboxArguments:
        """The events staged so far as the four arrays of an outbox insert, for a statement that writes them
        itself next to its own change (one round trip, not two); they are not written again at commit."""
        rows, self._written = self.staged[self._written :], len(self.staged)
        return _outbox_arguments(rows)

    async def write_outbox(self) -> None:
        """Write the staged events no statement has written yet."""
        rows, self._written = self.staged[self._written :], len(self.staged)
        if len(rows) == 1:
            row = rows[0]
            await self.conn.execute(WRITE_OUTBOX_ROW, row.event_id, row.subject, row.payload, json.dumps(row.headers))
        elif rows:
            await self.conn.execute(WRITE_OUTBOX_ROWS, *_outbox_arguments(rows))

    @property
    def unwritten(self) -> int:
        return len(self.staged) - self._written


def _outbox_arguments(rows: Sequence[OutboxMessage]) -> OutboxArguments:
    return (
        [r.event_id for r in rows],
        [r.subject for r in rows],
        [r.payload for r in rows],
        [json.dumps(r.headers) for r in rows],
    )


CommitWatcher = Callable[[Sequence[OutboxMessage]], None]


class Database:
    """A service's pool, the only way its code reaches PostgreSQL at run time."""

    def __init__(self, pool: asyncpg.Pool, *, service: str) -> None:
        self.pool = pool
        self.service = service
        self._watchers: list[CommitWatcher] = []

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """Open a transaction; commit when the block succeeds (with the staged events), roll back when it raises."""
        async with self.pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn=conn, source=self.service)
            yield uow
            await uow.write_outbox()
        self.committed(uow)

    @asynccontextmanager
    async def one_statement(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work that is a single statement outside any transaction (it commits on its own), writing
        the staged events itself (:meth:`UnitOfWork.outbox_arguments`): one round trip where
        :meth:`unit_of_work` adds three (BEGIN, the outbox insert, COMMIT). The events go to the publisher when
        the block succeeds; a block that raises publishes nothing, so it must raise whenever the statement
        wrote nothing."""
        async with self.pool.acquire() as conn:
            uow = UnitOfWork(conn=conn, source=self.service)
            yield uow
            if uow.unwritten:
                raise RuntimeError("events were staged that no statement wrote")
        self.committed(uow)

    def committed(self, uow: UnitOfWork) -> None:
        """After-commit work of ``uow``: the watchers see its events (the publisher sends them), then its own
        callbacks run."""
        if uow.staged:
            for watch in self._watchers:
                watch(uow.staged)
        for callback in uow.callbacks:
            callback()

    def watch_commits(self, watch: CommitWatcher) -> Callable[[], None]:
        """Call ``watch`` with the events of each unit of work, right after it commits; returns an undo.
        ``watch`` runs in the committing task: never block."""
        self._watchers.append(watch)
        return lambda: self._watchers.remove(watch)

    async def connection_failed(self) -> None:
        """A statement failed because the server went away: the pool's other connections are as dead (a
        restart), so replace them all, not one failed request at a time."""
        await self.pool.expire_connections()


async def create_database(settings_dsn: str, *, service: str, size: int) -> Database:
    """The service's pool of ``size`` connections (opened lazily)."""
    pool = await asyncpg.create_pool(
        settings_dsn, min_size=0, max_size=size, init=_init_connection, reset=_keep_session
    )
    return Database(pool, service=service)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON travels as text both ways: payloads are written as the text pydantic made and read back as text.
    await conn.set_type_codec("jsonb", encoder=str, decoder=str, schema="pg_catalog", format="text")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on every release (a round trip of four statements for each pool use): no
    service keeps session state. Locks are transaction-scoped (``pg_advisory_xact_lock``), nothing LISTENs,
    nothing SETs a session variable or opens a cursor outside a transaction; ``test_db.py`` holds code to it.
    asyncpg still rolls back a transaction left open before the connection goes back."""


def violated_constraint(exc: BaseException) -> str | None:
    """The name of the constraint or index a statement broke, as PostgreSQL reports it."""
    name = getattr(exc, "constraint_name", None)
    return str(name) if name else None


# A server that dies sends its last error to idle connections too; asyncpg then waits on them for a
# ReadyForQuery that never comes, and the next statement on one fails with this before the close is seen.
_LEFT_MID_OPERATION = "another operation"


def is_connection_error(exc: BaseException) -> bool:
    """True for failures that mean the database is unreachable rather than that the request is wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            ConnectionError
            | OSError
            | asyncpg.exceptions.PostgresConnectionError
            | asyncpg.exceptions.CannotConnectNowError
            | asyncpg.exceptions.AdminShutdownError
            | asyncpg.exceptions.CrashShutdownError
            | asyncpg.exceptions.InterfaceError,
        ):
            return True
        if isinstance(current, asyncpg.exceptions.InternalClientError) and _LEFT_MID_OPERATION in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def database_url(url: str, *, database: str | None = None, scheme: str = "postgresql") -> str:
    """``url`` with another scheme (``postgresql+asyncpg`` for Alembic) and, if given, another database."""
    parts = urlsplit(url)
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit((scheme, parts.netloc, path, parts.query, parts.fragment))


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    """A ``postgresql://`` DSN for asyncpg from any PostgreSQL URL (SQLAlchemy's driver suffix dropped)."""
    return database_url(url, database=database)


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def ensure_database(url: str) -> None:
    """Create the URL's database on its server if it does not exist yet (safe when raced)."""
    name = database_name(url)
    assert name, "the URL must name a database"
    conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with suppress(asyncpg.exceptions.DuplicateDatabaseError, asyncpg.exceptions.UniqueViolationError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def wait_for_database(url: str, *, timeout: float = 30.0) -> None:
    """Wait until the server accepts connections (it may still be starting)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"), timeout=2)
            await conn.close()
            return
        except (OSError, asyncpg.exceptions.PostgresError, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


def migrate(sqlalchemy_url: str, migrations_dir: Path, revision: str = "head") -> None:
    """Apply a service's Alembic migrations to its database (creating the database first)."""
    from alembic import command

    asyncio.run(_prepare(sqlalchemy_url))
    command.upgrade(alembic_config(sqlalchemy_url, migrations_dir), revision)


def alembic_config(sqlalchemy_url: str, migrations_dir: Path) -> Config:
    """Alembic's configuration for a service's migrations (``migrations_dir``) on one database; no alembic.ini."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url.replace("%", "%%"))  # ConfigParser interpolates %
    return config


async def _prepare(url: str) -> None:
    await wait_for_database(url)
    await ensure_database(url)
