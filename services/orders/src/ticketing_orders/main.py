"""Builds the orders service's app."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_orders.attempts import AttemptLimiter
from ticketing_orders.config import Settings
from ticketing_orders.listeners import listeners
from ticketing_orders.router import router
from ticketing_orders.sale_waits import SaleCopyWaits

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The shared service app with the orders routes and listeners."""
    return create_service_app(
        settings or Settings(),
        title="ticketing orders",
        routers=[router],
        listeners=listeners,
        while_running=while_running,
    )


@asynccontextmanager
async def while_running(app: FastAPI) -> AsyncIterator[None]:
    """The buyers' attempt counts, and the orders waiting for an admission or an event's copy, which hear of the
    copies other replicas make once NATS is there."""
    settings: Settings = app.state.settings
    app.state.order_attempts = AttemptLimiter(
        rate=settings.order_attempts_per_second,
        burst=settings.order_attempts_burst,
        max_buyers=settings.order_attempts_buyers,
    )
    app.state.sale_waits = waits = SaleCopyWaits(settings.order_admission_waiters)
    app.state.events.when_connected(waits.attach, name="sale-copy-waits")
    yield
