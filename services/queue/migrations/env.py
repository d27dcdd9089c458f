"""Alembic environment of the queue service (hand-written migrations: there are no models to compare with)."""

from ticketing_common.migrations import run_env

run_env(None)
