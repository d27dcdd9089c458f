"""The one migration creates the schema the service's statements rely on (columns, keys, checks, indexes), the
database enforces it, and it downgrades and upgrades again to the same schema."""

from __future__ import annotations

import uuid

from ticketing_common.db import utcnow
from ticketing_common.testing import ALEMBIC_TABLE, MigratedDatabase, sql_statements
from ticketing_queue import queries

OUR_TABLES = {"rooms", "entrants", "join_limits"}
MESSAGING_TABLES = {"outbox", "processed_events", "parked_messages"}

# (column, type, nullable, default) in table order.
COLUMNS = {
    "rooms": [
        ("event_id", "uuid", False, None),
        ("on_sale_at", "timestamp with time zone", False, None),
        ("waiting_room", "boolean", False, None),
        ("version", "integer", False, None),
        ("seed", "bytea", False, None),
        ("schedule_event_id", "uuid", True, None),
        ("schedule_written_at", "timestamp with time zone", True, None),
        ("drawn_at", "timestamp with time zone", True, None),
        ("drawn_count", "integer", False, "0"),
        ("last_position", "integer", False, "0"),
        ("admitted_through", "integer", False, "0"),
        ("admit_tokens", "double precision", False, "0"),
        ("admit_tokens_at", "timestamp with time zone", True, None),
        ("created_at", "timestamp with time zone", False, "now()"),
    ],
    "entrants": [
        ("event_id", "uuid", False, None),
        ("user_id", "uuid", False, None),
        ("position", "integer", True, None),
        ("admitted_until", "timestamp with time zone", True, None),
        ("joined_at", "timestamp with time zone", False, "now()"),
    ],
    "join_limits": [
        ("user_id", "uuid", False, None),
        ("window_started_at", "timestamp with time zone", False, None),
        ("joins", "integer", False, None),
    ],
}
CONSTRAINTS = {
    ("rooms", "pk_rooms"): "PRIMARY KEY (event_id)",
    ("rooms", "ck_rooms_version_not_negative"): "CHECK ((version >= 0))",
    ("rooms", "ck_rooms_seed_32_bytes"): "CHECK ((octet_length(seed) = 32))",
    ("rooms", "ck_rooms_admitted_within_positions"): (
        "CHECK (((0 <= admitted_through) AND (admitted_through <= last_position)))"
    ),
    ("rooms", "ck_rooms_drawn_within_positions"): "CHECK (((0 <= drawn_count) AND (drawn_count <= last_position)))",
    ("rooms", "ck_rooms_only_waiting_rooms_draw"): "CHECK (((drawn_at IS NULL) OR waiting_room))",
    ("entrants", "pk_entrants"): "PRIMARY KEY (event_id, user_id)",
    ("entrants", "fk_entrants_event_id_rooms"): "FOREIGN KEY (event_id) REFERENCES rooms(event_id)",
    ("entrants", "uq_entrants_event_position"): 'UNIQUE (event_id, "position")',
    ("entrants", "ck_entrants_position_positive"): 'CHECK (("position" > 0))',
    ("entrants", "ck_entrants_admitted_with_a_position"): (
        'CHECK (((admitted_until IS NULL) OR ("position" IS NOT NULL)))'
    ),
    ("join_limits", "pk_join_limits"): "PRIMARY KEY (user_id)",
    ("join_limits", "ck_join_limits_joins_positive"): "CHECK ((joins > 0))",
}
INDEXES = {
    "pk_rooms": "UNIQUE INDEX pk_rooms ON public.rooms USING btree (event_id)",
    "ix_rooms_admitting": (
        "INDEX ix_rooms_admitting ON public.rooms USING btree (event_id) WHERE (admitted_through < last_position)"
    ),
    "pk_entrants": "UNIQUE INDEX pk_entrants ON public.entrants USING btree (event_id, user_id)",
    "uq_entrants_event_position": (
        'UNIQUE INDEX uq_entrants_event_position ON public.entrants USING btree (event_id, "position")'
    ),
    "pk_join_limits": "UNIQUE INDEX pk_join_limits ON public.join_limits USING btree (user_id)",
}


async def test_the_migration_creates_the_tables_keys_checks_and_indexes_the_statements_rely_on(
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
        "COUNT_JOIN",
        "LOCK_ROOM",
        "ROOMS_TO_RENEW",
        "INSERT_PLACED_ENTRANT",
        "PLACE_DRAWN_ENTRANTS",
        "ADMIT_POSITIONS",
    } <= set(statements)
    assert await migrated_db.prepare_errors(statements) == {}  # parsed, planned and type-checked, not run


async def test_the_schema_refuses_what_the_service_must_never_store(migrated_db: MigratedDatabase) -> None:
    conn = migrated_db.conn
    event_id = uuid.uuid4()
    insert_room = "INSERT INTO rooms (event_id, on_sale_at, waiting_room, version, seed) VALUES ($1, now(), $2, $3, $4)"
    insert_entrant = "INSERT INTO entrants (event_id, user_id, position, admitted_until) VALUES ($1, $2, $3, $4)"
    refused = migrated_db.violation  # in a savepoint: the outer transaction goes on

    outer = conn.transaction()  # rolled back at the end: the migrated database stays empty
    await outer.start()
    try:
        await conn.execute(insert_room, event_id, True, 0, bytes(32))
        await conn.execute("UPDATE rooms SET last_position = 1 WHERE event_id = $1", event_id)
        await conn.execute(insert_entrant, event_id, uuid.uuid4(), 1, None)

        assert await refused(insert_room, uuid.uuid4(), True, -1, bytes(32)) == "ck_rooms_version_not_negative"
        assert await refused(insert_room, uuid.uuid4(), True, 0, bytes(31)) == "ck_rooms_seed_32_bytes"
        assert await refused("UPDATE rooms SET admitted_through = 2 WHERE event_id = $1", event_id) == (
            "ck_rooms_admitted_within_positions"
        )
        assert await refused("UPDATE rooms SET drawn_count = 2 WHERE event_id = $1", event_id) == (
            "ck_rooms_drawn_within_positions"
        )
        no_room = uuid.uuid4()
        await conn.execute(insert_room, no_room, False, 0, bytes(32))
        assert await refused("UPDATE rooms SET drawn_at = now() WHERE event_id = $1", no_room) == (
            "ck_rooms_only_waiting_rooms_draw"
        )
        assert await refused(insert_entrant, event_id, uuid.uuid4(), 1, None) == "uq_entrants_event_position"
        assert await refused(insert_entrant, event_id, uuid.uuid4(), 0, None) == "ck_entrants_position_positive"
        assert await refused(insert_entrant, event_id, uuid.uuid4(), None, utcnow()) == (
            "ck_entrants_admitted_with_a_position"
        )
        assert await refused(insert_entrant, uuid.uuid4(), uuid.uuid4(), 1, None) == "fk_entrants_event_id_rooms"
        assert await refused(
            "INSERT INTO join_limits (user_id, window_started_at, joins) VALUES ($1, now(), 0)", uuid.uuid4()
        ) == ("ck_join_limits_joins_positive")
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
