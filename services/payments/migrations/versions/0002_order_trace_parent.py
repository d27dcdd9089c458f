"""The trace an order's copy continues: ``orders.trace_parent``, the W3C ``traceparent`` of the ``order.created``
that made the copy (null while tracing is off), so the payment of that order joins the order's trace.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("orders", sa.Column("trace_parent", sa.String(55), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "trace_parent")
