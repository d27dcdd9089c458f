"""Events and the waiting room: the copy of the events (sale opening, limit per buyer, waiting room), the event of
each ticket copy, and the buyers the queue admitted.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # No foreign key to events: a ticket's copy may arrive before its event's.
    op.add_column("tickets", sa.Column("event_id", sa.Uuid, nullable=True))
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("on_sale_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_per_buyer", sa.Integer, nullable=False),
        sa.Column("waiting_room", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.CheckConstraint("version >= 0", name="ck_events_version_not_negative"),
    )
    # One row per (event, buyer): the latest admission's end. No foreign key: it may arrive before the event.
    op.create_table(
        "admissions",
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("admitted_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "user_id", name="pk_admissions"),
    )


def downgrade() -> None:
    op.drop_table("admissions")
    op.drop_table("events")
    op.drop_column("tickets", "event_id")
