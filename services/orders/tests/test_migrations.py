"""The migrations create the schema the service's statements rely on (columns, keys, checks and the index that
forbids double booking; the copies of events and admissions), the database enforces it, they downgrade and upgrade
again to the same schema, and 0002 keeps the ticket copies and orders made before it."""

from __future__ import annotations

import uuid

from ticketing_common.db import utcnow
from ticketing_common.testing import ALEMBIC_TABLE, MigratedDatabase, sql_statements
from ticketing_orders import queries

OUR_TABLES = {"tickets", "orders", "charges", "events", "admissions"}
MESSAGING_TABLES = {"outbox", "processed_events", "parked_messages"}

# (column, type, nullable, default) in table order.
COLUMNS = {
    "tickets": [
        ("id", "uuid", False, None),
        ("title", "character varying(200)", False, None),
        ("price", "numeric(9,2)", False, None),
        ("user_id", "uuid", False, None),
        ("version", "integer", False, None),
        ("event_id", "uuid", True, None),
    ],
    "orders": [
        ("id", "uuid", False, None),
        ("user_id", "uuid", False, None),
        ("status", "character varying(32)", False, None),
        ("expires_at", "timestamp with time zone", False, None),
        ("version", "integer", False, "0"),
        ("ticket_id", "uuid", False, None),
        ("created_at", "timestamp with time zone", False, "now()"),
    ],
    "charges": [
        ("id", "uuid", False, None),
        ("order_id", "uuid", False, None),
        ("stripe_id", "character varying(255)", False, None),
        ("amount", "integer", False, None),
        ("currency", "character varying(16)", False, None),
        ("refund_reason", "character varying(200)", True, None),
        ("received_at", "timestamp with time zone", False, "now()"),
    ],
    "events": [
        ("id", "uuid", False, None),
        ("on_sale_at", "timestamp with time zone", False, None),
        ("max_per_buyer", "integer", False, None),
        ("waiting_room", "boolean", False, None),
        ("version", "integer", False, None),
    ],
    "admissions": [
        ("event_id", "uuid", False, None),
        ("user_id", "uuid", False, None),
        ("admitted_until", "timestamp with time zone", False, None),
    ],
}
CONSTRAINTS = {
    ("tickets", "pk_tickets"): "PRIMARY KEY (id)",
    ("tickets", "ck_tickets_version_not_negative"): "CHECK ((version >= 0))",
    ("orders", "pk_orders"): "PRIMARY KEY (id)",
    ("orders", "fk_orders_ticket_id_tickets"): "FOREIGN KEY (ticket_id) REFERENCES tickets(id)",
    ("orders", "ck_orders_status_known"): (
        "CHECK (((status)::text = ANY ((ARRAY['created'::character varying, 'cancelled'::character varying,"
        " 'complete'::character varying])::text[])))"
    ),
    ("orders", "ck_orders_version_not_negative"): "CHECK ((version >= 0))",
    ("charges", "pk_charges"): "PRIMARY KEY (id)",
    ("charges", "fk_charges_order_id_orders"): "FOREIGN KEY (order_id) REFERENCES orders(id)",
    ("events", "pk_events"): "PRIMARY KEY (id)",
    ("events", "ck_events_version_not_negative"): "CHECK ((version >= 0))",
    ("admissions", "pk_admissions"): "PRIMARY KEY (event_id, user_id)",
}
INDEXES = {
    "pk_tickets": "UNIQUE INDEX pk_tickets ON public.tickets USING btree (id)",
    "pk_orders": "UNIQUE INDEX pk_orders ON public.orders USING btree (id)",
    "uq_orders_active_ticket": (
        "UNIQUE INDEX uq_orders_active_ticket ON public.orders USING btree (ticket_id) WHERE ((status)::text = ANY"
        " ((ARRAY['created'::character varying, 'complete'::character varying])::text[]))"
    ),
    "ix_orders_user_created": (
        "INDEX ix_orders_user_created ON public.orders USING btree (user_id, created_at DESC, id DESC)"
    ),
    "pk_charges": "UNIQUE INDEX pk_charges ON public.charges USING btree (id)",
    "ix_charges_order_id": "INDEX ix_charges_order_id ON public.charges USING btree (order_id)",
    "ix_charges_refund_needed": (
        "INDEX ix_charges_refund_needed ON public.charges USING btree (received_at) WHERE (refund_reason IS NOT NULL)"
    ),
    "pk_events": "UNIQUE INDEX pk_events ON public.events USING btree (id)",
    "pk_admissions": "UNIQUE INDEX pk_admissions ON public.admissions USING btree (event_id, user_id)",
}


async def test_the_migrations_create_the_tables_keys_checks_and_indexes_the_statements_rely_on(
    migrated_db: MigratedDatabase,
) -> None:
    assert await migrated_db.tables() == OUR_TABLES | MESSAGING_TABLES | {ALEMBIC_TABLE}
    schema = await migrated_db.schema(OUR_TABLES)
    assert schema.columns == COLUMNS
    assert schema.constraints == CONSTRAINTS
    assert schema.indexes == INDEXES


async def test_every_statement_of_the_service_is_valid_against_the_migrated_schema(
    migrated_db: MigratedDatabase,
) -> None:
    statements = sql_statements(queries)
    assert {
        "FIND_TICKET_FOR_ORDER",
        "LOCK_BUYER_AT_EVENT",
        "INSERT_ORDER",
        "CHANGE_ORDER_STATUS",
        "APPLY_TICKET_UPDATES",
        "INSERT_EVENTS",
        "APPLY_EVENT_UPDATES",
        "ADMIT_BUYERS",
        "CLAIM_CHARGE",
    } <= set(statements)
    assert await migrated_db.prepare_errors(statements) == {}  # parsed, planned and type-checked by PostgreSQL, not run


async def test_the_schema_refuses_what_the_service_must_never_store(migrated_db: MigratedDatabase) -> None:
    conn = migrated_db.conn
    ticket_id = uuid.uuid4()
    insert_order = (
        "INSERT INTO orders (id, user_id, status, expires_at, version, ticket_id) VALUES ($1, $2, $3, $4, $5, $6)"
    )
    refused = migrated_db.violation  # in a savepoint: the outer transaction goes on

    outer = conn.transaction()  # rolled back at the end: the migrated database stays empty
    await outer.start()
    try:
        await conn.execute(
            "INSERT INTO tickets (id, title, price, user_id, version) VALUES ($1, 'T', 10, $2, 0)",
            ticket_id,
            uuid.uuid4(),
        )
        await conn.execute(insert_order, uuid.uuid4(), uuid.uuid4(), "created", utcnow(), 0, ticket_id)

        assert await refused(insert_order, uuid.uuid4(), uuid.uuid4(), "paid", utcnow(), 0, ticket_id) == (
            "ck_orders_status_known"
        )
        assert await refused(insert_order, uuid.uuid4(), uuid.uuid4(), "cancelled", utcnow(), -1, ticket_id) == (
            "ck_orders_version_not_negative"
        )
        assert await refused(insert_order, uuid.uuid4(), uuid.uuid4(), "cancelled", utcnow(), 0, uuid.uuid4()) == (
            "fk_orders_ticket_id_tickets"
        )
        assert await refused(insert_order, uuid.uuid4(), uuid.uuid4(), "complete", utcnow(), 0, ticket_id) == (
            "uq_orders_active_ticket"
        )
        assert await refused("UPDATE tickets SET version = -1 WHERE id = $1", ticket_id) == (
            "ck_tickets_version_not_negative"
        )
        insert_event = (
            "INSERT INTO events (id, on_sale_at, max_per_buyer, waiting_room, version) VALUES ($1, now(), 2, true, $2)"
        )
        event_id = uuid.uuid4()
        await conn.execute(insert_event, event_id, 0)
        assert await refused(insert_event, uuid.uuid4(), -1) == "ck_events_version_not_negative"
        assert await refused(insert_event, event_id, 0) == "pk_events"
        admit = "INSERT INTO admissions (event_id, user_id, admitted_until) VALUES ($1, $2, now())"
        buyer = uuid.uuid4()
        await conn.execute(admit, event_id, buyer)
        assert await refused(admit, event_id, buyer) == "pk_admissions"
        assert await refused(
            "INSERT INTO charges (id, order_id, stripe_id, amount, currency) VALUES ($1, $2, 'ch', 1, 'usd')",
            uuid.uuid4(),
            uuid.uuid4(),
        ) == ("fk_charges_order_id_orders")
    finally:
        await outer.rollback()


async def test_the_migration_creates_no_trigger_and_no_function(migrated_db: MigratedDatabase) -> None:
    schema = await migrated_db.schema()

    assert (schema.triggers, schema.functions) == ([], [])


async def test_the_migration_downgrades_to_an_empty_database_and_upgrades_again_to_the_same_schema(
    migrated_db: MigratedDatabase,
) -> None:
    await migrated_db.assert_round_trip()

    assert await migrated_db.tables() == OUR_TABLES | MESSAGING_TABLES | {ALEMBIC_TABLE}


async def test_0002_keeps_the_ticket_copies_and_orders_made_before_it_as_tickets_of_no_event(
    migrated_db: MigratedDatabase,
) -> None:
    conn = migrated_db.conn
    await migrated_db.downgrade("0001")
    ticket_id, order_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO tickets (id, title, price, user_id, version) VALUES ($1, 'T', 10, $2, 3)", ticket_id, uuid.uuid4()
    )
    await conn.execute(
        "INSERT INTO orders (id, user_id, status, expires_at, version, ticket_id) VALUES ($1, $2, 'created', $3, 0, $4)",
        order_id,
        uuid.uuid4(),
        utcnow(),
        ticket_id,
    )

    await migrated_db.upgrade()

    ticket = await conn.fetchrow("SELECT title, version, event_id FROM tickets WHERE id = $1", ticket_id)
    assert tuple(ticket) == ("T", 3, None)
    assert await conn.fetchval("SELECT ticket_id FROM orders WHERE id = $1", order_id) == ticket_id
