"""The orders service's schema: the messaging tables, the copy of the tickets, the orders and the charges.

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
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
        sa.CheckConstraint("version >= 0", name="ck_tickets_version_not_negative"),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("ticket_id", sa.Uuid, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_orders_ticket_id_tickets"),
        sa.CheckConstraint("status IN ('created', 'cancelled', 'complete')", name="ck_orders_status_known"),
        sa.CheckConstraint("version >= 0", name="ck_orders_version_not_negative"),
    )
    # No double booking: at most one active order (created or complete) per ticket.
    op.execute(
        "CREATE UNIQUE INDEX uq_orders_active_ticket ON orders (ticket_id) WHERE status IN ('created', 'complete')"
    )
    # A buyer's orders, newest first.
    op.execute("CREATE INDEX ix_orders_user_created ON orders (user_id, created_at DESC, id DESC)")
    op.create_table(
        "charges",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("stripe_id", sa.String(255), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("refund_reason", sa.String(200), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_charges"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_charges_order_id_orders"),
    )
    op.create_index("ix_charges_order_id", "charges", ["order_id"])
    # The charges whose money must go back, for whoever refunds them.
    op.execute("CREATE INDEX ix_charges_refund_needed ON charges (received_at) WHERE refund_reason IS NOT NULL")


def downgrade() -> None:
    op.drop_table("charges")
    op.drop_table("orders")
    op.drop_table("tickets")
    drop_messaging_tables(op)
