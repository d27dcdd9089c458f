"""Like every service: the outbox wakes its relay in-process, not through a NOTIFY trigger.

Revision ID: 0002
"""

from alembic import op

from ticketing_common.migrations import create_outbox_notify_trigger, drop_outbox_notify_trigger

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    drop_outbox_notify_trigger(op)


def downgrade() -> None:
    create_outbox_notify_trigger(op)
