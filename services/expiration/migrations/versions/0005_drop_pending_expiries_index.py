"""Drop the partial index on the pending expiries: it served only the in-process timers' re-arm at start, and
expiries are now fired by their JetStream schedules alone (the table is read by primary key only).

Dropped concurrently, outside the migration's transaction, so the listeners keep writing meanwhile.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

INDEX = "ix_order_expiries_pending"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="order_expiries", postgresql_concurrently=True, if_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            INDEX,
            "order_expiries",
            ["expires_at"],
            postgresql_where=sa.text("cancelled_at IS NULL AND schedule_event_id IS NOT NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
