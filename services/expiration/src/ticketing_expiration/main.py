"""Builds the expiration service's app."""

from pathlib import Path

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_expiration.config import Settings
from ticketing_expiration.handlers import listeners

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(settings or Settings(), title="ticketing expiration", routers=[], listeners=listeners)
