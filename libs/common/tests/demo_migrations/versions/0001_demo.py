"""Demo service tables for the shared library's own tests.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from ticketing_common.migrations import create_messaging_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_messaging_tables(op)
    op.create_table(
        "ticket_copies",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ticket_copies")
