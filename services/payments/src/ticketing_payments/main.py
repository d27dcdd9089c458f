"""Builds the payments service's app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_common.events.runtime import EventRuntime
from ticketing_payments.config import Settings
from ticketing_payments.listeners import listeners
from ticketing_payments.order_waits import OrderCopyWaits
from ticketing_payments.router import router
from ticketing_payments.stripe_gateway import StripeGateway

logger = logging.getLogger("ticketing.payments")

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="ticketing payments",
        routers=[router],
        listeners=listeners,
        while_running=while_running,
    )


@asynccontextmanager
async def while_running(app: FastAPI) -> AsyncIterator[None]:
    """The Stripe client (and its HTTP connection pool), and the payments waiting for their order's copy, which
    hear of copies other replicas make once NATS is there."""
    settings: Settings = app.state.settings
    app.state.stripe = stripe = StripeGateway(settings)
    app.state.order_copy_waits = waits = OrderCopyWaits(settings.payment_order_waiters)
    hearing = asyncio.create_task(_hear_copies_when_connected(waits, app.state.events), name="order-copy-waits")
    try:
        yield
    finally:
        hearing.cancel()
        await asyncio.gather(hearing, return_exceptions=True)
        await stripe.close()


async def _hear_copies_when_connected(waits: OrderCopyWaits, events: EventRuntime) -> None:
    """Subscribe the waits to every replica's copies once NATS is there (it may come up after the service); until
    then a waiting payment only re-checks."""
    while True:
        try:
            await events.wait_ready()
            assert events.nc is not None
            await waits.attach(events.nc)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("order copy waits not hearing other replicas yet", extra={"error": repr(exc)})
            await asyncio.sleep(1.0)
