"""Builds the expiration service's app: no HTTP API beyond health and metrics, two listeners."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_expiration.config import Settings
from ticketing_expiration.listeners import listeners
from ticketing_expiration.router import router

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(), title="ticketing expiration", routers=[router], listeners=listeners
    )
