"""The expiration service's schema: the shared messaging tables and ``order_expiries``, one row per order it has
heard of (its schedule, or a cancellation tombstone), read by primary key only.

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
        "order_expiries",
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("schedule_event_id", sa.Uuid, nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("order_id", name="pk_order_expiries"),
        sa.CheckConstraint(
            "expires_at IS NOT NULL OR cancelled_at IS NOT NULL", name="ck_order_expiries_scheduled_or_cancelled"
        ),
    )


def downgrade() -> None:
    op.drop_table("order_expiries")
    drop_messaging_tables(op)
