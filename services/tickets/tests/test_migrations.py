"""The migrations build the schema the queries rely on, its rules hold, and they downgrade and upgrade cleanly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ticketing_common.testing import ALEMBIC_TABLE, MigratedDatabase, sql_statements
from ticketing_tickets import queries

TABLES = {"tickets", "events", "cancelled_orders", "outbox", "processed_events", "parked_messages"}
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
        ("event_id", "uuid", True, None),
    ],
    "events": [
        ("id", "uuid", False, None),
        ("name", "character varying(200)", False, None),
        ("venue", "character varying(200)", False, None),
        ("starts_at", "timestamp with time zone", False, None),
        ("on_sale_at", "timestamp with time zone", False, None),
        ("max_per_buyer", "integer", False, None),
        ("waiting_room", "boolean", False, None),
        ("user_id", "uuid", False, None),
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
    ("tickets", "fk_tickets_event_id_events"),
    ("cancelled_orders", "pk_cancelled_orders"),
    ("events", "pk_events"),
    ("events", "ck_events_name_length"),
    ("events", "ck_events_venue_length"),
    ("events", "ck_events_max_per_buyer_range"),
    ("events", "ck_events_on_sale_before_start"),
    ("events", "ck_events_version_not_negative"),
}
INDEXES = {
    "ix_tickets_available": "INDEX ix_tickets_available ON public.tickets USING btree (created_at DESC, id DESC) "
    "WHERE (order_id IS NULL)",
    "ix_tickets_event_available": "INDEX ix_tickets_event_available ON public.tickets USING btree "
    "(event_id, created_at DESC, id DESC) WHERE ((order_id IS NULL) AND (event_id IS NOT NULL))",
    "ix_tickets_event": "INDEX ix_tickets_event ON public.tickets USING btree (event_id) WHERE (event_id IS NOT NULL)",
    "ix_events_upcoming": "INDEX ix_events_upcoming ON public.events USING btree (starts_at, id)",
    "ix_events_name_trgm": "INDEX ix_events_name_trgm ON public.events USING gin (name gin_trgm_ops) "
    "WITH (fastupdate=off)",
    "ix_events_venue_trgm": "INDEX ix_events_venue_trgm ON public.events USING gin (venue gin_trgm_ops) "
    "WITH (fastupdate=off)",
}

INSERT_EVENT = (
    "INSERT INTO events (id, name, venue, starts_at, on_sale_at, max_per_buyer, waiting_room, user_id, version) "
    "VALUES ($1, $2, $3, $4, $5, $6, false, $7, $8)"
)
IN_A_WEEK = datetime(2099, 1, 8, tzinfo=UTC)


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


async def test_the_listings_counts_and_search_have_their_indexes(migrated_db: MigratedDatabase) -> None:
    indexes = (await migrated_db.schema(["tickets", "events"])).indexes
    assert {name: indexes.get(name) for name in INDEXES} == INDEXES


async def test_every_statement_of_the_service_is_valid_against_the_schema(migrated_db: MigratedDatabase) -> None:
    statements = sql_statements(queries)
    assert {"INSERT_EVENT_TICKETS", "SEARCH_EVENTS_AFTER", "EDIT_EVENT", "FIND_EVENT_WITH_COUNTS"} <= set(statements)
    assert await migrated_db.prepare_errors(statements) == {}


@pytest.mark.parametrize(
    ("name", "venue", "on_sale_at", "max_per_buyer", "version", "constraint"),
    [
        pytest.param("", "v", IN_A_WEEK, 4, 0, "ck_events_name_length", id="empty-name"),
        pytest.param("n", "", IN_A_WEEK, 4, 0, "ck_events_venue_length", id="empty-venue"),
        pytest.param("n", "v", IN_A_WEEK, 0, 0, "ck_events_max_per_buyer_range", id="max-per-buyer-0"),
        pytest.param("n", "v", IN_A_WEEK, 101, 0, "ck_events_max_per_buyer_range", id="max-per-buyer-101"),
        pytest.param(
            "n", "v", IN_A_WEEK + timedelta(microseconds=1), 4, 0, "ck_events_on_sale_before_start", id="sale-late"
        ),
        pytest.param("n", "v", IN_A_WEEK, 4, -1, "ck_events_version_not_negative", id="negative-version"),
    ],
)
async def test_the_database_refuses_events_the_api_refuses(
    migrated_db: MigratedDatabase,
    name: str,
    venue: str,
    on_sale_at: datetime,
    max_per_buyer: int,
    version: int,
    constraint: str,
) -> None:
    args = (uuid.uuid4(), name, venue, IN_A_WEEK, on_sale_at, max_per_buyer, uuid.uuid4(), version)
    assert await migrated_db.violation(INSERT_EVENT, *args) == constraint


async def test_a_ticket_names_an_event_that_exists_or_none(migrated_db: MigratedDatabase) -> None:
    conn = migrated_db.conn
    event_id = uuid.uuid4()
    await conn.execute(INSERT_EVENT, event_id, "n", "v", IN_A_WEEK, IN_A_WEEK, 4, uuid.uuid4(), 0)
    insert = "INSERT INTO tickets (id, title, price, user_id, event_id) VALUES ($1, 't', 1, $2, $3)"
    assert await migrated_db.violation(insert, uuid.uuid4(), uuid.uuid4(), event_id) is None
    assert await migrated_db.violation(insert, uuid.uuid4(), uuid.uuid4(), None) is None
    assert await migrated_db.violation(insert, uuid.uuid4(), uuid.uuid4(), uuid.uuid4()) == (
        "fk_tickets_event_id_events"
    )


async def test_a_search_for_a_rare_word_reads_the_trigram_indexes_not_every_event(
    migrated_db: MigratedDatabase,
) -> None:
    conn = migrated_db.conn
    await conn.execute(
        """
        INSERT INTO events (id, name, venue, starts_at, on_sale_at, max_per_buyer, waiting_room, user_id)
        SELECT gen_random_uuid(), 'Show number ' || i, 'Hall ' || (i % 100), $1, $1, 4, false, gen_random_uuid()
        FROM generate_series(1, 20000) AS i
        """,
        IN_A_WEEK,
    )
    await conn.execute(INSERT_EVENT, uuid.uuid4(), "Jazz Night", "Blue Note", IN_A_WEEK, IN_A_WEEK, 4, uuid.uuid4(), 0)
    await conn.execute("ANALYZE events")
    await conn.execute(f"PREPARE search(integer, text) AS {queries.SEARCH_EVENTS}")

    async def plan() -> str:
        return "\n".join(row[0] for row in await conn.fetch("EXPLAIN EXECUTE search(10, '%jazz%')"))

    async with conn.transaction():
        await conn.execute(queries.SEARCH_PLANS)
        plans = [await plan() for _ in range(8)]  # past the five after which PostgreSQL may go generic
    assert all("ix_events_name_trgm" in p and "ix_events_venue_trgm" in p for p in plans), plans[-1]
    # Why the service forces custom plans: a generic plan knows no pattern and walks every upcoming event.
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        assert "trgm" not in await plan()
