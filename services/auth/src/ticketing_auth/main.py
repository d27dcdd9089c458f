"""Builds the auth service's app."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from ticketing_auth.config import Settings
from ticketing_auth.listeners import listeners
from ticketing_auth.passwords import Passwords
from ticketing_auth.router import router
from ticketing_common.app import create_app as create_service_app

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The shared service app with the auth routes and, while it runs, its password hasher."""
    return create_service_app(
        settings or Settings(),
        title="ticketing auth",
        routers=[router],
        listeners=listeners,
        while_running=password_hasher,
    )


@asynccontextmanager
async def password_hasher(app: FastAPI) -> AsyncIterator[None]:
    """``app.state.passwords``; making its dummy hash costs one Argon2 hash, so off the event loop."""
    app.state.passwords = await asyncio.to_thread(Passwords.from_settings, app.state.settings)
    yield
