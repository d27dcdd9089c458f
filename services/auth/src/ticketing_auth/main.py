"""Builds the auth service's app."""

from pathlib import Path

from fastapi import FastAPI

from ticketing_auth.config import Settings
from ticketing_auth.listeners import listeners
from ticketing_auth.passwords import Passwords
from ticketing_auth.router import router
from ticketing_common.app import create_app as create_service_app

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The auth app: the shared service app plus this service's routes and password hasher."""
    settings = settings or Settings()
    app = create_service_app(settings, title="ticketing auth", routers=[router], listeners=listeners)
    app.state.passwords = Passwords.from_settings(settings)
    return app
