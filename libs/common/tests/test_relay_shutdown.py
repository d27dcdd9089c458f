"""The outbox relay stops when cancelled, even when the cancellation lands just as it is woken up."""

from __future__ import annotations

import asyncio

import pytest
from common_demo import DemoSettings
from fastapi import FastAPI

from ticketing_common.events.relay import OutboxRelay


@pytest.mark.parametrize("yields", range(8))
async def test_a_relay_woken_as_it_is_cancelled_still_stops(demo_app: FastAPI, yields: int) -> None:
    settings: DemoSettings = demo_app.state.settings
    relay = OutboxRelay(
        sessionmaker=demo_app.state.sessionmaker,
        js=demo_app.state.events.js,
        stream=settings.nats_stream,
    )
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(0.3)  # idle, waiting to be woken
    relay.wake()
    for _ in range(yields):  # land the cancellation at each step of the wake-up
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done, "the relay ignored its cancellation"
    assert task.cancelled()
