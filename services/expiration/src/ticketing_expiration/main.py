"""Builds the expiration service's app: no HTTP API beyond health and metrics, two listeners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.app import create_app as create_service_app
from ticketing_common.config import ServiceSettings
from ticketing_common.events import Listener
from ticketing_common.events.outbox import SWEEP_BATCH_SIZE
from ticketing_common.events.runtime import EventRuntime
from ticketing_expiration.config import Settings
from ticketing_expiration.listeners import listeners

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

logger = logging.getLogger("ticketing.expiration")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app: FastAPI

    def jetstream() -> JetStreamContext | None:
        # The listeners run inside the app's event runtime, so its connection exists whenever they do.
        js: JetStreamContext | None = app.state.events.js
        return js

    def build_listeners(_: ServiceSettings) -> Sequence[Listener[Any]]:
        return listeners(settings, jetstream=jetstream)

    @contextlib.asynccontextmanager
    async def sending_leftovers(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(send_leftover_schedules(app.state.events), name="expiration-leftovers")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    app = create_service_app(
        settings, title="ticketing expiration", routers=[], listeners=build_listeners, while_running=sending_leftovers
    )
    return app


async def send_leftover_schedules(events: EventRuntime) -> None:
    """Send at once every schedule a stopped process left in the outbox, not only once the sweeper finds them
    old enough: an expiry that came due meanwhile is late by every second it waits. A row another replica is
    publishing right now is sent twice, which JetStream's duplicate window absorbs (same ``Nats-Msg-Id``)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await events.wait_ready()  # NATS may come up later than the service
            break
    if events.publisher is None:
        return
    try:
        while await events.publisher.sweep(older_than_seconds=0) == SWEEP_BATCH_SIZE:
            pass
    except Exception as exc:
        logger.warning("cannot send leftover schedules yet; the sweeper will", extra={"error": repr(exc)})
