"""Alembic environment of the auth service: the migrations are written by hand, there are no models to compare."""

from ticketing_common.migrations import run_env

run_env(None)
