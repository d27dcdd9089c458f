"""``ticketing_common.testing.migrations`` on the demo service's migrations: the database is rebuilt from nothing,
the schema reads as the catalog has it, violations come back by constraint name, and a round trip that does not
come back to the same schema fails."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import pytest
from common_demo import MIGRATIONS

from ticketing_common.testing import ALEMBIC_TABLE, MigratedDatabase, fresh_database

if TYPE_CHECKING:  # not at module level at run time, or pytest would try to collect it as a test class
    from ticketing_common.testing import TestInfra

NAME = "ticketing_demo_migrations_test"
INSERT = "INSERT INTO ticket_copies (id, title, version) VALUES ($1, $2, $3)"


@pytest.fixture
async def demo_db(infra: TestInfra) -> AsyncIterator[MigratedDatabase]:
    async with fresh_database(infra.database_url, NAME, MIGRATIONS) as database:
        yield database


async def test_a_fresh_database_is_built_from_nothing_whatever_was_there(infra: TestInfra) -> None:
    async with fresh_database(infra.database_url, NAME, MIGRATIONS) as stale:
        await stale.conn.execute("CREATE TABLE stray (id int)")
        await stale.conn.execute(INSERT, uuid.uuid4(), "kept?", 0)

    async with fresh_database(infra.database_url, NAME, MIGRATIONS) as fresh:
        assert await fresh.tables() == {ALEMBIC_TABLE, "ticket_copies", "outbox", "processed_events", "parked_messages"}
        assert await fresh.conn.fetchval("SELECT count(*) FROM ticket_copies") == 0


async def test_the_schema_reads_as_the_catalog_has_it(demo_db: MigratedDatabase) -> None:
    schema = await demo_db.schema(["ticket_copies"])

    assert schema.columns == {
        "ticket_copies": [
            ("id", "uuid", False, None),
            ("title", "character varying(200)", False, None),
            ("version", "integer", False, None),
        ]
    }
    assert schema.constraints == {("ticket_copies", "ticket_copies_pkey"): "PRIMARY KEY (id)"}
    assert schema.indexes == {
        "ticket_copies_pkey": "UNIQUE INDEX ticket_copies_pkey ON public.ticket_copies USING btree (id)"
    }
    assert (schema.triggers, schema.functions) == ([], [])
    assert schema.column_names("ticket_copies") == ["id", "title", "version"]


async def test_a_violation_is_the_constraint_s_name_and_an_accepted_statement_none(demo_db: MigratedDatabase) -> None:
    ticket_id = uuid.uuid4()

    assert await demo_db.violation(INSERT, ticket_id, "t", 0) is None
    assert await demo_db.violation(INSERT, ticket_id, "t", 0) == "ticket_copies_pkey"
    assert await demo_db.violation(INSERT, ticket_id, "t", 0, error=asyncpg.UniqueViolationError) == (
        "ticket_copies_pkey"
    )
    with pytest.raises(asyncpg.UniqueViolationError):  # not the kind of violation expected
        await demo_db.violation(INSERT, ticket_id, "t", 0, error=asyncpg.CheckViolationError)
    assert await demo_db.conn.fetchval("SELECT count(*) FROM ticket_copies") == 1


async def test_statements_that_do_not_fit_the_schema_are_reported_by_name(demo_db: MigratedDatabase) -> None:
    errors = await demo_db.prepare_errors(
        {"FITS": "SELECT title FROM ticket_copies", "DOES_NOT": "SELECT price FROM ticket_copies"}
    )

    assert list(errors) == ["DOES_NOT"]
    assert "price" in errors["DOES_NOT"]


async def test_a_round_trip_that_leaves_a_table_behind_fails(demo_db: MigratedDatabase) -> None:
    await demo_db.conn.execute("CREATE TABLE stray (id int)")  # no migration knows it: a downgrade leaves it

    with pytest.raises(AssertionError, match="stray"):
        await demo_db.assert_round_trip()
