"""Builds the tickets service's app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_tickets.cache import TicketCache, follow_ticket_events
from ticketing_tickets.config import Settings
from ticketing_tickets.listeners import listeners
from ticketing_tickets.router import events_router, router

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="ticketing tickets",
        routers=[router, events_router],
        listeners=listeners,
        while_running=while_running,
    )


@asynccontextmanager
async def while_running(app: FastAPI) -> AsyncIterator[None]:
    """The read model behind ``GET /api/tickets/:id`` (``cache.py``): it takes this process's commits at once and
    every replica's once NATS is there. With ``TICKET_CACHE_SIZE=0`` it exists but never serves."""
    settings: Settings = app.state.settings
    app.state.ticket_cache = cache = TicketCache(
        max_entries=settings.ticket_cache_size, ttl_seconds=settings.ticket_cache_ttl_seconds
    )
    if settings.ticket_cache_size == 0:
        yield
        return
    stop_watching = app.state.db.watch_commits(cache.apply_committed)
    app.state.events.when_connected(partial(follow_ticket_events, cache), name="ticket-cache")
    try:
        yield
    finally:
        stop_watching()
