"""Alembic environment of the auth service."""

from ticketing_auth.models import Base
from ticketing_common.migrations import run_env

run_env(Base.metadata)
