"""Alembic environment of the expiration service (no models: the migrations are written out)."""

from ticketing_common.migrations import run_env

run_env(None)
