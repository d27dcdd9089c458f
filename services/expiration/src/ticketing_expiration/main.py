"""Builds the expiration service's app: no HTTP API beyond health and metrics, two listeners, expiry timers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.app import create_app as create_service_app
from ticketing_common.config import ServiceSettings
from ticketing_common.events import Listener
from ticketing_expiration.config import Settings
from ticketing_expiration.handlers import create_timers, listeners, rearm_timers
from ticketing_expiration.timers import ExpiryTimers

logger = logging.getLogger("ticketing.expiration")

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app: FastAPI

    def jetstream() -> JetStreamContext | None:
        # The listeners run inside the app's event runtime, so its connection exists whenever they do.
        js: JetStreamContext | None = app.state.events.js
        return js

    def connected_jetstream() -> JetStreamContext | None:
        return app.state.events.js if app.state.events.connected else None

    def build_listeners(_: ServiceSettings) -> Sequence[Listener[Any]]:
        # Called by the shared lifespan once the database is set up and before the listeners start.
        app.state.expiry_timers = create_timers(
            settings, sessionmaker=app.state.sessionmaker, jetstream=connected_jetstream
        )
        return listeners(settings, jetstream=jetstream, timers=app.state.expiry_timers)

    @asynccontextmanager
    async def timers_running(app: FastAPI) -> AsyncIterator[None]:
        timers: ExpiryTimers | None = app.state.expiry_timers
        if timers is not None:
            try:
                armed = await rearm_timers(timers, sessionmaker=app.state.sessionmaker)
                logger.info("expiry timers re-armed", extra={"orders": armed})
            except Exception as exc:  # the database is not there yet: the schedules fire instead
                logger.warning("expiry timers not re-armed", extra={"error": repr(exc)})
        try:
            yield
        finally:
            # Before the listeners, NATS and the database stop; the schedules fire in the timers' place.
            if timers is not None:
                await timers.close()

    app = create_service_app(
        settings,
        title="ticketing expiration",
        routers=[],
        listeners=build_listeners,
        while_running=timers_running,
    )
    app.state.expiry_timers = None
    return app
