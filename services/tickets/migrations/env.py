"""Alembic environment of the tickets service."""

from ticketing_common.migrations import run_env
from ticketing_tickets.models import Base

run_env(Base.metadata)
