"""Failed sign-ins are counted per client address: the limits are per (email, address) and per address.

The failures recorded so far name no address; they cannot be attributed and would expire within the window
anyway, so they are dropped.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute("DELETE FROM signin_failures")
    op.drop_index("ix_signin_failures_email_failed_at", table_name="signin_failures")
    op.add_column("signin_failures", sa.Column("client_address", sa.String(64), nullable=False))
    op.create_index("ix_signin_failures_client_address_failed_at", "signin_failures", ["client_address", "failed_at"])


def downgrade() -> None:
    op.drop_index("ix_signin_failures_client_address_failed_at", table_name="signin_failures")
    op.drop_column("signin_failures", "client_address")
    op.create_index("ix_signin_failures_email_failed_at", "signin_failures", ["email", "failed_at"])
