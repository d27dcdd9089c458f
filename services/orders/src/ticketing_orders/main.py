"""Builds the orders service's app."""

from pathlib import Path

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_orders.config import Settings
from ticketing_orders.listeners import listeners
from ticketing_orders.router import router

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The shared service app with the orders routes and listeners; nothing to run beside them (no
    ``while_running``): every listener and route needs only the database."""
    return create_service_app(settings or Settings(), title="ticketing orders", routers=[router], listeners=listeners)
