"""Testing a service's Alembic migrations against a real PostgreSQL database.

The plugin's ``migrated_db`` fixture gives each migration test a :class:`MigratedDatabase`: a database of the
service's own, created afresh and migrated to head from nothing. The test reads what the migrations built
(:meth:`~MigratedDatabase.tables`, :meth:`~MigratedDatabase.schema`) and compares it with the schema it expects,
which stays in the service's test; checks the service's statements against it (:func:`sql_statements`,
:meth:`~MigratedDatabase.prepare_errors`); checks that the database refuses what it must, under the constraint
names the service reports (:meth:`~MigratedDatabase.violation`); and walks the migrations down and up again
(:meth:`~MigratedDatabase.assert_round_trip`).

pytest rewrites this module's asserts (``ticketing_common.testing`` registers it), so a failure shows the diff.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import asyncpg
from alembic import command

from ticketing_common.config import server_url_for_database
from ticketing_common.db import alembic_config, asyncpg_dsn, database_name, migrate, violated_constraint

ALEMBIC_TABLE = "alembic_version"
"""Alembic's own table: the one table a downgrade to ``base`` leaves behind."""

# The catalog queries of MigratedDatabase.schema; $1 is the tables to describe (NULL: every table of schema public).
_COLUMNS = """
SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable, pg_get_expr(d.adbin, d.adrelid) AS default
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND ($1::text[] IS NULL OR c.relname = ANY ($1))
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""
_CONSTRAINTS = """
SELECT c.relname AS table, k.conname AS name, pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND ($1::text[] IS NULL OR c.relname = ANY ($1))
  AND k.contype <> 'n'  -- NOT NULL, a constraint since PostgreSQL 18: the columns say it
"""
_INDEXES = """
SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND ($1::text[] IS NULL OR c.relname = ANY ($1))
"""
_TRIGGERS = """
SELECT t.tgname AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND ($1::text[] IS NULL OR c.relname = ANY ($1))
  AND NOT t.tgisinternal
ORDER BY t.tgname
"""
_FUNCTIONS = "SELECT proname AS name FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY proname"


class Column(NamedTuple):
    """A column as PostgreSQL describes it; a plain ``(name, type, nullable, default)`` tuple compares equal."""

    name: str
    type: str  # format_type(): "character varying(200)", "numeric(9,2)", "timestamp with time zone"
    nullable: bool
    default: str | None  # the default's SQL ("now()", "0"); None for none (and for identity columns)


@dataclass(frozen=True)
class Schema:
    """What the migrations built, as PostgreSQL's catalog has it: two snapshots are equal when the schemas are."""

    columns: dict[str, list[Column]]
    """Each table's columns, in table order."""
    constraints: dict[tuple[str, str], str]
    """``(table, constraint name)``: definition (``pg_get_constraintdef``); NOT NULL is in :attr:`columns`."""
    indexes: dict[str, str]
    """Index name: its definition without the leading ``CREATE`` (``UNIQUE INDEX pk_users ON public.users ...``)."""
    triggers: list[str]
    """The names of the triggers (but PostgreSQL's internal ones) on the tables described, sorted."""
    functions: list[str]
    """The names of the functions of schema ``public``, sorted."""

    def column_names(self, table: str) -> list[str]:
        """``table``'s column names in table order (none for a table not described)."""
        return [column.name for column in self.columns.get(table, [])]


@dataclass(frozen=True)
class MigratedDatabase:
    """A test's own database, migrated to head: its SQLAlchemy URL, the service's migrations and a connection."""

    url: str
    migrations_dir: Path
    conn: asyncpg.Connection

    async def tables(self) -> set[str]:
        """Every table of schema ``public``, :data:`ALEMBIC_TABLE` included."""
        rows = await self.conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}

    async def schema(self, tables: Collection[str] | None = None) -> Schema:
        """The schema of ``tables``; by default of every table of schema ``public``, Alembic's included."""
        only = sorted(tables) if tables is not None else None
        columns: dict[str, list[Column]] = {}
        for row in await self.conn.fetch(_COLUMNS, only):
            columns.setdefault(row["table"], []).append(
                Column(row["name"], row["type"], row["nullable"], row["default"])
            )
        constraints = await self.conn.fetch(_CONSTRAINTS, only)
        indexes = await self.conn.fetch(_INDEXES, only)
        return Schema(
            columns=columns,
            constraints={(row["table"], row["name"]): row["definition"] for row in constraints},
            indexes={row["name"]: row["definition"].removeprefix("CREATE ") for row in indexes},
            triggers=[row["name"] for row in await self.conn.fetch(_TRIGGERS, only)],
            functions=[row["name"] for row in await self.conn.fetch(_FUNCTIONS)],
        )

    async def violation(
        self,
        statement: str,
        *args: object,
        error: type[asyncpg.IntegrityConstraintViolationError] = asyncpg.IntegrityConstraintViolationError,
    ) -> str | None:
        """Run ``statement`` in a transaction of its own (a savepoint inside the caller's) and return the name of
        the constraint or unique index it violated, or None when the database took it (then it is committed,
        or kept in the caller's transaction).

        ``error`` is the kind of violation expected (``asyncpg.UniqueViolationError``, ``CheckViolationError``,
        ...): any other error, another kind of violation included, propagates and fails the test.
        """
        try:
            async with self.conn.transaction():
                await self.conn.execute(statement, *args)
        except error as exc:
            return violated_constraint(exc)
        return None

    async def prepare_errors(self, statements: dict[str, str]) -> dict[str, str]:
        """PostgreSQL's error, by statement name, for each statement it cannot parse, plan and type-check against
        this schema (none is run): ``{}`` when every statement is valid here."""
        errors: dict[str, str] = {}
        for name, sql in statements.items():
            try:
                await self.conn.prepare(sql)
            except asyncpg.PostgresError as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
        return errors

    async def upgrade(self, revision: str = "head") -> None:
        """``alembic upgrade``, as the service's start-up runs it."""
        await asyncio.to_thread(command.upgrade, alembic_config(self.url, self.migrations_dir), revision)

    async def downgrade(self, revision: str = "base") -> None:
        """``alembic downgrade``: by default every migration undone."""
        await asyncio.to_thread(command.downgrade, alembic_config(self.url, self.migrations_dir), revision)

    async def assert_round_trip(self) -> None:
        """Every migration undone leaves no table but Alembic's, and all of them applied again build the very
        schema there was before (:meth:`schema` of every table)."""
        before = await self.schema()
        await self.downgrade()
        assert await self.tables() == {ALEMBIC_TABLE}
        await self.upgrade()
        assert await self.schema() == before


def sql_statements(queries: ModuleType) -> dict[str, str]:
    """Every SQL statement a service's ``queries`` module spells out, by name: its upper-case string constants
    that begin with WITH, SELECT, INSERT, UPDATE or DELETE."""
    return {
        name: value
        for name, value in vars(queries).items()
        if name.isupper() and isinstance(value, str) and re.match(r"\s*(WITH|SELECT|INSERT|UPDATE|DELETE)\b", value)
    }


@asynccontextmanager
async def fresh_database(server_url: str, name: str, migrations_dir: Path) -> AsyncIterator[MigratedDatabase]:
    """Database ``name`` on the server of ``server_url``, dropped if it exists, created and migrated to head from
    nothing, so that it holds what today's migrations build; connected while the block runs."""
    url = server_url_for_database(server_url, name)
    await _drop_database(url)
    await asyncio.to_thread(migrate, url, migrations_dir)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        yield MigratedDatabase(url, migrations_dir, conn)
    finally:
        await conn.close()


async def _drop_database(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
    finally:
        await conn.close()
