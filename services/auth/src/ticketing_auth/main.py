"""Builds the auth service's app."""

from pathlib import Path

from fastapi import FastAPI

from ticketing_auth.config import Settings
from ticketing_auth.handlers import listeners
from ticketing_auth.router import router
from ticketing_common.app import create_app as create_service_app

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(settings or Settings(), title="ticketing auth", routers=[router], listeners=listeners)
