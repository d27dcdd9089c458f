"""A partial index on the pending expiries, for the re-arm a starting replica does (it scanned the table).

Built concurrently, outside the migration's transaction, so the listeners keep writing while it builds.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

INDEX = "ix_order_expiries_pending"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            INDEX,
            "order_expiries",
            ["expires_at"],
            postgresql_where=sa.text("cancelled_at IS NULL AND schedule_event_id IS NOT NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="order_expiries", postgresql_concurrently=True, if_exists=True)
