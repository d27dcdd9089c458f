"""Builds the auth service's app."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from ticketing_auth.config import Settings
from ticketing_auth.listeners import listeners
from ticketing_auth.passwords import Passwords
from ticketing_auth.router import keys_router, router
from ticketing_common.app import create_app as create_service_app
from ticketing_common.auth import KeyRingKeys
from ticketing_common.keys import KeyRingFile

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The shared service app with the auth routes, its session keys and, while it runs, its password hasher."""
    settings = settings or Settings()
    key_ring = KeyRingFile(settings.session_key_file)
    app = create_service_app(
        settings,
        title="ticketing auth",
        routers=[router, keys_router],
        listeners=listeners,
        while_running=password_hasher,
        session_keys=KeyRingKeys(key_ring, token_seconds=settings.jwt_expires_seconds),
    )
    app.state.key_ring = key_ring
    return app


@asynccontextmanager
async def password_hasher(app: FastAPI) -> AsyncIterator[None]:
    """``app.state.passwords``; making its dummy hash costs one Argon2 hash, so off the event loop."""
    app.state.passwords = await asyncio.to_thread(Passwords.from_settings, app.state.settings)
    yield
