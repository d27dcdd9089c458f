"""Builds the payments service's app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_payments.config import Settings
from ticketing_payments.listeners import listeners
from ticketing_payments.order_waits import OrderCopyWaits
from ticketing_payments.router import router
from ticketing_payments.stripe_gateway import StripeGateway

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
    app.state.events.when_connected(waits.attach, name="order-copy-waits")
    try:
        yield
    finally:
        await stripe.close()
