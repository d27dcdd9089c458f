"""Alembic environment of the tickets service."""

from ticketing_common.migrations import run_env

run_env(None)
