"""Builds the queue service's app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from ticketing_common.app import create_app as create_service_app
from ticketing_queue.admission import AdmissionLoop
from ticketing_queue.config import Settings
from ticketing_queue.listeners import listeners
from ticketing_queue.router import router
from ticketing_queue.service import RevealedDraws

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


@contextlib.asynccontextmanager
async def while_running(app: FastAPI) -> AsyncIterator[None]:
    """The revealed draws this process has computed, and its admission loop (every replica runs one)."""
    app.state.revealed_draws = RevealedDraws()
    app.state.admission = admission = AdmissionLoop(app.state.db, app.state.settings)
    task = asyncio.create_task(admission.run(), name="queue-admission")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(settings: Settings | None = None) -> FastAPI:
    """The shared service app with the queue routes, listeners and admission loop."""
    return create_service_app(
        settings or Settings(),
        title="ticketing queue",
        routers=[router],
        listeners=listeners,
        while_running=while_running,
    )
