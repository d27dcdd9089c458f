"""Alembic environment of the orders service."""

from ticketing_common.migrations import run_env
from ticketing_orders.models import Base

run_env(Base.metadata)
