"""Builds the payments service's app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_payments.config import Settings
from ticketing_payments.handlers import listeners
from ticketing_payments.router import router
from ticketing_payments.stripe_gateway import StripeGateway

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

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

    return create_service_app(
        settings, title="ticketing payments", routers=[router], listeners=listeners, configure=add_stripe
    )
