"""Builds the payments service's app."""

from pathlib import Path

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_payments.config import Settings
from ticketing_payments.handlers import listeners
from ticketing_payments.router import router

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(settings or Settings(), title="ticketing payments", routers=[router], listeners=listeners)
