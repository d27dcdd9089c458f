"""The outbox publisher stops when cancelled, even when the cancellation lands just as events are handed to it."""

from __future__ import annotations

import asyncio

import pytest
from common_demo import DemoSettings
from fastapi import FastAPI

from ticketing_common.events.outbox import OutboxPublisher


@pytest.mark.parametrize("yields", range(8))
async def test_a_publisher_handed_events_as_it_is_cancelled_still_stops(demo_app: FastAPI, yields: int) -> None:
    settings: DemoSettings = demo_app.state.settings
    publisher = OutboxPublisher(pool=demo_app.state.db.pool, js=demo_app.state.events.js, stream=settings.nats_stream)
    task = asyncio.create_task(publisher.run())
    await asyncio.sleep(0.3)  # idle, waiting for committed events
    publisher.submit([])
    for _ in range(yields):  # land the cancellation at each step of the hand-over
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done, "the publisher ignored its cancellation"
    assert task.cancelled()
