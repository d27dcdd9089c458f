"""The one migration creates the schema the service's statements rely on (columns, the unique email, the indexes
the limits count with), the database enforces it, and it downgrades and upgrades again to the same schema."""

from __future__ import annotations

import uuid

import asyncpg

from ticketing_auth import queries
from ticketing_common.testing import ALEMBIC_TABLE, MigratedDatabase, sql_statements

OUR_TABLES = {"users", "signin_failures"}
MESSAGING_TABLES = {"outbox", "processed_events", "parked_messages"}

# (column, type, nullable, default) in table order.
COLUMNS = {
    "users": [
        ("id", "uuid", False, None),
        ("email", "character varying(320)", False, None),
        ("password_hash", "text", False, None),
        ("version", "integer", False, "0"),
        ("created_at", "timestamp with time zone", False, "now()"),
        ("updated_at", "timestamp with time zone", False, "now()"),
    ],
    "signin_failures": [
        ("id", "bigint", False, None),  # an identity column: generated, not a default
        ("email", "character varying(320)", False, None),
        ("client_address", "character varying(64)", False, None),
        ("failed_at", "timestamp with time zone", False, "now()"),
    ],
}
CONSTRAINTS = {
    ("users", "pk_users"): "PRIMARY KEY (id)",
    ("users", queries.USERS_EMAIL_UNIQUE): "UNIQUE (email)",
    ("signin_failures", "pk_signin_failures"): "PRIMARY KEY (id)",
}
INDEXES = {
    "pk_users": "UNIQUE INDEX pk_users ON public.users USING btree (id)",
    "uq_users_email": "UNIQUE INDEX uq_users_email ON public.users USING btree (email)",
    "pk_signin_failures": "UNIQUE INDEX pk_signin_failures ON public.signin_failures USING btree (id)",
    # Every count is of one client address's rows within the window.
    "ix_signin_failures_client_address_failed_at": (
        "INDEX ix_signin_failures_client_address_failed_at ON public.signin_failures"
        " USING btree (client_address, failed_at)"
    ),
    # The purge takes the rows that left the window.
    "ix_signin_failures_failed_at": (
        "INDEX ix_signin_failures_failed_at ON public.signin_failures USING btree (failed_at)"
    ),
}


async def test_the_migration_creates_the_tables_keys_and_indexes_the_statements_rely_on(
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
    assert {"INSERT_USER", "UPDATE_USER", "RESERVE_SIGNIN", "RESERVE_FOR_USER", "RELEASE_ATTEMPT"} <= set(statements)
    assert await migrated_db.prepare_errors(statements) == {}  # parsed, planned and type-checked by PostgreSQL, not run


async def test_the_schema_refuses_a_second_user_with_one_email_under_the_constraint_the_service_names(
    migrated_db: MigratedDatabase,
) -> None:
    conn = migrated_db.conn
    insert = "INSERT INTO users (id, email, password_hash) VALUES ($1, 'ada@example.com', 'x')"
    tx = conn.transaction()  # rolled back at the end: the migrated database stays empty
    await tx.start()
    try:
        await conn.execute(insert, uuid.uuid4())
        refused = await migrated_db.violation(insert, uuid.uuid4(), error=asyncpg.UniqueViolationError)
    finally:
        await tx.rollback()

    assert refused == queries.USERS_EMAIL_UNIQUE


async def test_a_failed_attempt_gets_its_id_and_time_from_the_database(
    migrated_db: MigratedDatabase,
) -> None:
    conn = migrated_db.conn
    tx = conn.transaction()
    await tx.start()
    try:
        row = await conn.fetchrow(
            "INSERT INTO signin_failures (email, client_address) VALUES ('ada@example.com', '203.0.113.9')"
            " RETURNING id, failed_at, failed_at = now() AS now"
        )
        assert row is not None
        assert row["id"] is not None
        assert row["now"]
    finally:
        await tx.rollback()


async def test_the_migration_creates_no_trigger_and_no_function(migrated_db: MigratedDatabase) -> None:
    schema = await migrated_db.schema()

    assert (schema.triggers, schema.functions) == ([], [])


async def test_the_migration_downgrades_to_an_empty_database_and_upgrades_again_to_the_same_schema(
    migrated_db: MigratedDatabase,
) -> None:
    await migrated_db.assert_round_trip()

    assert await migrated_db.tables() == OUR_TABLES | MESSAGING_TABLES | {ALEMBIC_TABLE}
