"""The one migration builds the schema the queries rely on, its rules hold, and it downgrades and upgrades cleanly."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from ticketing_common.testing import ALEMBIC_TABLE, MigratedDatabase

TABLES = {"tickets", "cancelled_orders", "outbox", "processed_events", "parked_messages"}
# (column, type, nullable, default) in table order: the price's numeric(9,2) and the title's 200 characters included.
COLUMNS = {
    "tickets": [
        ("id", "uuid", False, None),
        ("title", "character varying(200)", False, None),
        ("price", "numeric(9,2)", False, None),
        ("user_id", "uuid", False, None),
        ("order_id", "uuid", True, None),
        ("version", "integer", False, "0"),
        ("created_at", "timestamp with time zone", False, "now()"),
    ],
    "cancelled_orders": [
        ("order_id", "uuid", False, None),
    ],
}
CONSTRAINTS = {
    ("tickets", "pk_tickets"),
    ("tickets", "ck_tickets_price_range"),
    ("tickets", "ck_tickets_version_not_negative"),
    ("tickets", "ck_tickets_title_length"),
    ("cancelled_orders", "pk_cancelled_orders"),
}


async def test_the_tables_have_the_columns_the_queries_use(migrated_db: MigratedDatabase) -> None:
    assert await migrated_db.tables() == TABLES | {ALEMBIC_TABLE}
    assert (await migrated_db.schema(COLUMNS.keys())).columns == COLUMNS


async def test_the_constraints_carry_the_names_the_service_reports(migrated_db: MigratedDatabase) -> None:
    schema = await migrated_db.schema()
    assert set(schema.constraints) >= CONSTRAINTS


async def test_the_outbox_is_plain_no_trigger_and_no_attempts_column(migrated_db: MigratedDatabase) -> None:
    schema = await migrated_db.schema()
    assert schema.triggers == []
    assert "attempts" not in schema.column_names("outbox")


async def test_a_new_ticket_starts_at_version_0_held_by_no_order(migrated_db: MigratedDatabase) -> None:
    conn = migrated_db.conn
    row = await conn.fetchrow(
        "INSERT INTO tickets (id, title, price, user_id) VALUES ($1, 't', 1, $2) RETURNING order_id, version",
        uuid.uuid4(),
        uuid.uuid4(),
    )
    assert (row["order_id"], row["version"]) == (None, 0)


@pytest.mark.parametrize(
    ("title", "price", "version", "constraint"),
    [
        pytest.param("t", Decimal(0), 0, "ck_tickets_price_range", id="price-zero"),
        pytest.param("t", Decimal("1000000.01"), 0, "ck_tickets_price_range", id="price-above-maximum"),
        pytest.param("t", Decimal(1), -1, "ck_tickets_version_not_negative", id="negative-version"),
        pytest.param("", Decimal(1), 0, "ck_tickets_title_length", id="empty-title"),
    ],
)
async def test_the_database_refuses_tickets_the_api_refuses(
    migrated_db: MigratedDatabase, title: str, price: Decimal, version: int, constraint: str
) -> None:
    insert = "INSERT INTO tickets (id, title, price, user_id, version) VALUES ($1, $2, $3, $4, $5)"
    assert await migrated_db.violation(insert, uuid.uuid4(), title, price, uuid.uuid4(), version) == constraint


async def test_ids_are_unique_and_an_order_has_one_tombstone(migrated_db: MigratedDatabase) -> None:
    conn = migrated_db.conn
    ticket_id, order_id = uuid.uuid4(), uuid.uuid4()
    insert_ticket = "INSERT INTO tickets (id, title, price, user_id) VALUES ($1, 't', 1, $2)"
    await conn.execute(insert_ticket, ticket_id, uuid.uuid4())
    assert await migrated_db.violation(insert_ticket, ticket_id, uuid.uuid4()) == "pk_tickets"
    insert_tombstone = "INSERT INTO cancelled_orders (order_id) VALUES ($1)"
    await conn.execute(insert_tombstone, order_id)
    assert await migrated_db.violation(insert_tombstone, order_id) == "pk_cancelled_orders"


async def test_the_listing_reads_the_partial_index_of_available_tickets(migrated_db: MigratedDatabase) -> None:
    conn = migrated_db.conn
    definition = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tickets_available'")
    assert definition.endswith("USING btree (created_at DESC, id DESC) WHERE (order_id IS NULL)")


async def test_downgrade_removes_every_table_and_upgrade_brings_back_the_same_schema(
    migrated_db: MigratedDatabase,
) -> None:
    await migrated_db.assert_round_trip()
