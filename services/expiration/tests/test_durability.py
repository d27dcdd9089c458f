"""Expiries survive restarts: the timer lives in JetStream's file store, not in the service's memory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from ticketing_common.config import ServiceSettings
from ticketing_common.embedded import EmbeddedNats
from ticketing_common.testing import ServiceUnderTest, running, wait_until


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def sleep_until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


async def test_an_expiry_fires_while_the_service_is_stopped_and_not_again_when_it_starts(
    service: ServiceUnderTest, settings: ServiceSettings, bus: Any
) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(2)
    async with running(service.create_app(settings)):
        await bus.created(order_id, expires_at)
        await bus.wait_scheduled(order_id)
    assert datetime.now(UTC) < expires_at  # stopped before the deadline

    [fired] = await bus.wait_expired(1)  # nothing of the service is running now
    assert fired.order_id == order_id
    assert 0 <= (fired.stored_at - expires_at).total_seconds() < 1.0

    async with running(service.create_app(settings)):
        await asyncio.sleep(1.0)
    assert len(await bus.expired()) == 1


async def test_a_schedule_left_in_the_outbox_at_shutdown_fires_as_soon_as_the_service_is_back(
    service: ServiceUnderTest, settings: ServiceSettings, bus: Any
) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(1)
    app = service.create_app(settings)
    async with running(app):
        await app.state.events.stop_publisher()  # handled and committed, but not yet published to NATS
        await bus.created(order_id, expires_at)
        await wait_until(lambda: _handled(app, "order.created"))

    await sleep_until(expires_at + timedelta(seconds=1))
    assert await bus.expired() == []  # the deadline passed while the service was down

    async with running(service.create_app(settings)):
        back = datetime.now(UTC)
        [fired] = await bus.wait_expired(1)
        await asyncio.sleep(0.5)
    assert fired.order_id == order_id
    assert (fired.stored_at - back).total_seconds() < 1.0
    assert len(await bus.expired()) == 1


async def test_an_order_created_while_the_service_was_down_expires_as_soon_as_it_starts(
    service: ServiceUnderTest, settings: ServiceSettings, bus: Any
) -> None:
    async with running(service.create_app(settings)):
        pass  # its durable consumers now exist and wait for it
    order_id = uuid.uuid4()
    expires_at = in_seconds(0.5)
    await bus.created(order_id, expires_at)
    await sleep_until(expires_at + timedelta(seconds=1))
    assert await bus.expired() == []

    async with running(service.create_app(settings)):
        back = datetime.now(UTC)
        [fired] = await bus.wait_expired(1)
    assert fired.order_id == order_id
    assert (fired.stored_at - back).total_seconds() < 1.0


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A nats-server of this test's own (its store in tmp_path), free to be killed and restarted."""
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("outage", ["restart", "crash"])
async def test_schedules_survive_a_nats_outage(
    service: ServiceUnderTest, settings: ServiceSettings, own_nats: EmbeddedNats, outage: str, bus: Any
) -> None:
    settings = settings.model_copy(update={"nats_url": own_nats.url})
    nc: NATS = await nats.connect(own_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    own_bus = type(bus)(nc.jetstream(), settings.nats_stream)
    during, after = uuid.uuid4(), uuid.uuid4()
    try:
        async with running(service.create_app(settings)):
            due_during = in_seconds(1.5)  # its time passes while NATS is down
            due_after = in_seconds(5)  # its time comes after NATS is back
            await own_bus.created(during, due_during)
            await own_bus.created(after, due_after)
            await own_bus.wait_scheduled(during)
            await own_bus.wait_scheduled(after)

            own_nats.stop() if outage == "restart" else own_nats.kill()
            await sleep_until(due_during + timedelta(seconds=1))
            own_nats.start()
            back = datetime.now(UTC)

            fired = await own_bus.wait_expired(1, timeout=15)
            assert [f.order_id for f in fired] == [during]
            assert (fired[0].stored_at - back).total_seconds() < 1.0  # as soon as NATS is back

            fired = await own_bus.wait_expired(2, timeout=15)
            assert [f.order_id for f in fired] == [during, after]
            assert 0 <= (fired[1].stored_at - due_after).total_seconds() < 1.0  # on time
            await asyncio.sleep(0.5)
            assert len(await own_bus.expired()) == 2
    finally:
        await nc.close()


async def _handled(app: Any, subject: str) -> bool:
    return bool(app.state.metrics.events_handled.labels(subject, "ok")._value.get() >= 1)
