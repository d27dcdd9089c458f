"""One row per order the expiration service has heard of (its schedule, or a cancellation tombstone).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
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
