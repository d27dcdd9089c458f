"""Alembic environment of the payments service (the migrations spell out their tables; no models at run time)."""

from ticketing_common.migrations import run_env

run_env(None)
