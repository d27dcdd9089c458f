"""Builds the expiration service's app: no HTTP API beyond health and metrics, two listeners."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.app import create_app as create_service_app
from ticketing_common.config import ServiceSettings
from ticketing_common.events import Listener
from ticketing_expiration.config import Settings
from ticketing_expiration.listeners import listeners

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app: FastAPI

    def jetstream() -> JetStreamContext | None:
        # The listeners run inside the app's event runtime, so its connection exists whenever they do.
        js: JetStreamContext | None = app.state.events.js
        return js

    def build_listeners(_: ServiceSettings) -> Sequence[Listener[Any]]:
        return listeners(settings, jetstream=jetstream)

    app = create_service_app(settings, title="ticketing expiration", routers=[], listeners=build_listeners)
    return app
