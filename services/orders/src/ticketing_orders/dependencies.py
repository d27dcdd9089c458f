"""FastAPI dependencies of the orders service."""

from typing import Annotated

from fastapi import Depends, Request

from ticketing_orders.config import Settings


async def _settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


OrdersSettings = Annotated[Settings, Depends(_settings)]
"""The orders service's own settings (with ``order_expiration_seconds``)."""
