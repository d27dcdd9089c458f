"""The one migration creates the schema the service's statements rely on (columns, keys, checks and the index
that forbids double booking), the database enforces it, and it downgrades and upgrades again to the same schema."""

from __future__ import annotations

import uuid

from ticketing_common.db import utcnow
from ticketing_common.testing import ALEMBIC_TABLE, MigratedDatabase, sql_statements
from ticketing_orders import queries

OUR_TABLES = {"tickets", "orders", "charges"}
MESSAGING_TABLES = {"outbox", "processed_events", "parked_messages"}

# (column, type, nullable, default) in table order.
COLUMNS = {
    "tickets": [
        ("id", "uuid", False, None),
        ("title", "character varying(200)", False, None),
        ("price", "numeric(9,2)", False, None),
        ("user_id", "uuid", False, None),
        ("version", "integer", False, None),
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
    assert {"INSERT_ORDER", "CHANGE_ORDER_STATUS", "APPLY_TICKET_UPDATES", "CLAIM_CHARGE"} <= set(statements)
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
