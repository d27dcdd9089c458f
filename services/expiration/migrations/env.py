"""Alembic environment of the expiration service."""

from ticketing_common.migrations import run_env
from ticketing_expiration.models import Base

run_env(Base.metadata)
