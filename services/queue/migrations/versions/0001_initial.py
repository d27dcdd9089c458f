"""The queue service's schema: the messaging tables, one room per event (the copy of what the queue needs of it,
its draw and its admission state), the entrants of each room, and the per-user join counters.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from ticketing_common.migrations import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_messaging_tables(op)
    op.create_table(
        "rooms",
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("on_sale_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("waiting_room", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("seed", sa.LargeBinary, nullable=False),
        sa.Column("schedule_event_id", sa.Uuid, nullable=True),
        sa.Column("schedule_written_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("drawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("drawn_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_position", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("admitted_through", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("admit_tokens", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("admit_tokens_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("event_id", name="pk_rooms"),
        sa.CheckConstraint("version >= 0", name="ck_rooms_version_not_negative"),
        sa.CheckConstraint("octet_length(seed) = 32", name="ck_rooms_seed_32_bytes"),
        sa.CheckConstraint(
            "0 <= admitted_through AND admitted_through <= last_position", name="ck_rooms_admitted_within_positions"
        ),
        sa.CheckConstraint("0 <= drawn_count AND drawn_count <= last_position", name="ck_rooms_drawn_within_positions"),
        sa.CheckConstraint("drawn_at IS NULL OR waiting_room", name="ck_rooms_only_waiting_rooms_draw"),
    )
    # The admission loop's work: rooms with buyers waiting for a position to be admitted.
    op.execute("CREATE INDEX ix_rooms_admitting ON rooms (event_id) WHERE admitted_through < last_position")
    op.create_table(
        "entrants",
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("position", sa.Integer, nullable=True),
        sa.Column("admitted_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("event_id", "user_id", name="pk_entrants"),
        sa.ForeignKeyConstraint(["event_id"], ["rooms.event_id"], name="fk_entrants_event_id_rooms"),
        sa.UniqueConstraint("event_id", "position", name="uq_entrants_event_position"),
        sa.CheckConstraint("position > 0", name="ck_entrants_position_positive"),
        sa.CheckConstraint(
            "admitted_until IS NULL OR position IS NOT NULL", name="ck_entrants_admitted_with_a_position"
        ),
    )
    op.create_table(
        "join_limits",
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("joins", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_join_limits"),
        sa.CheckConstraint("joins > 0", name="ck_join_limits_joins_positive"),
    )


def downgrade() -> None:
    op.drop_table("join_limits")
    op.drop_table("entrants")
    op.drop_index("ix_rooms_admitting", table_name="rooms")
    op.drop_table("rooms")
    drop_messaging_tables(op)
