"""The payments service's schema: the messaging tables, the copies of orders and of users' emails, and payments
(at most one per order).

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
        "orders",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("price", sa.Numeric(9, 2), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("charge_attempt", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.CheckConstraint("price >= 0", name="ck_orders_price_not_negative"),
        sa.CheckConstraint("charge_attempt >= 0", name="ck_orders_charge_attempt_not_negative"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("stripe_id", sa.String(255), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("refund_id", sa.String(255), nullable=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_payments_order_id_orders"),
        sa.UniqueConstraint("order_id", name="uq_payments_order_id"),
        sa.UniqueConstraint("stripe_id", name="uq_payments_stripe_id"),
        sa.CheckConstraint("amount > 0", name="ck_payments_amount_positive"),
    )


def downgrade() -> None:
    op.drop_table("payments")
    op.drop_table("users")
    op.drop_table("orders")
    drop_messaging_tables(op)
