"""Builds the payments service's app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_payments.config import Settings
from ticketing_payments.listeners import listeners
from ticketing_payments.order_waits import OrderCopyWaits
from ticketing_payments.router import router
from ticketing_payments.stripe_gateway import StripeGateway

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    waits = OrderCopyWaits(settings.payment_order_waiters)

    def add_stripe(app: FastAPI) -> None:
        # The Stripe client (and its HTTP connection pool) lives exactly as long as the app's lifespan.
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
            app.state.stripe = StripeGateway(settings)
            try:
                async with inner(app) as state:
                    yield state
            finally:
                await app.state.stripe.close()

        app.router.lifespan_context = lifespan

    @asynccontextmanager
    async def hearing_other_replicas(app: FastAPI) -> AsyncIterator[None]:
        async def attach() -> None:
            # The event runtime connects in the background (NATS may come up after the service).
            events = app.state.events
            while True:
                with contextlib.suppress(TimeoutError):
                    await events.wait_ready()
                    break
            await waits.attach(events.nc)

        task = asyncio.create_task(attach(), name="order-copy-waits")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def add_state(app: FastAPI) -> None:
        app.state.order_copy_waits = waits
        add_stripe(app)

    return create_service_app(
        settings,
        title="ticketing payments",
        routers=[router],
        listeners=lambda service_settings: listeners(service_settings, waits),
        configure=add_state,
        while_running=hearing_other_replicas,
    )
