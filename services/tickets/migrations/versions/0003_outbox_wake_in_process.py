"""Drop the outbox NOTIFY trigger: the relay is woken in-process after each commit instead.

A NOTIFY inside the business transaction serialised every writing commit of this database behind PostgreSQL's
notify lock, WAL flush included, capping writes at about one fsync each.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from ticketing_common.migrations import create_outbox_notify_trigger, drop_outbox_notify_trigger

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    drop_outbox_notify_trigger(op)


def downgrade() -> None:
    create_outbox_notify_trigger(op)
