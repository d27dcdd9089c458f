"""The tickets service's schema: the messaging tables, the tickets and the tombstones of cancelled orders.

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
        "tickets",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("price", sa.Numeric(9, 2), nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("order_id", sa.Uuid, nullable=True),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
        sa.CheckConstraint("price > 0 AND price <= 1000000", name="ck_tickets_price_range"),
        sa.CheckConstraint("version >= 0", name="ck_tickets_version_not_negative"),
        sa.CheckConstraint("char_length(title) BETWEEN 1 AND 200", name="ck_tickets_title_length"),
    )
    # The listing's keyset pagination walks this index: tickets no order holds, newest first.
    op.execute("CREATE INDEX ix_tickets_available ON tickets (created_at DESC, id DESC) WHERE order_id IS NULL")
    # A cancelled order's tombstone: its order.created, should it arrive later, then holds nothing.
    op.create_table(
        "cancelled_orders",
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_cancelled_orders"),
    )


def downgrade() -> None:
    op.drop_table("cancelled_orders")
    op.drop_index("ix_tickets_available", table_name="tickets")
    op.drop_table("tickets")
    drop_messaging_tables(op)
