"""Alembic environment of the payments service."""

from ticketing_common.migrations import run_env
from ticketing_payments.models import Base

run_env(Base.metadata)
