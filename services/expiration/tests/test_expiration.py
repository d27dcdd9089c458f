"""Every order gets exactly one ``order.expired`` at its ``expiresAt``, unless it was cancelled first."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.config import ServiceSettings
from ticketing_common.db import UnitOfWork
from ticketing_common.events import Listener, OrderExpired
from ticketing_common.events.listener import ListenerRunner
from ticketing_common.testing import ServiceUnderTest, running, wait_until
from ticketing_expiration.schedules import expired_event_id, schedule_subject


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def sleep_until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


async def test_an_order_expires_by_its_schedule_alone_never_before_expires_at(app: FastAPI, bus: Any) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(2)
    await bus.created(order_id, expires_at)

    schedule = await bus.wait_scheduled(order_id)
    assert schedule.headers["Nats-Schedule"] == f"@at {expires_at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"  # no grace
    assert await bus.expired() == []  # scheduled, and not fired early

    [fired] = await bus.wait_expired(1)
    assert fired.order_id == order_id
    assert fired.headers["Nats-Scheduler"] == schedule_subject(order_id)  # fired by nats-server, from the schedule
    lateness = (fired.stored_at - expires_at).total_seconds()
    assert 0 <= lateness < 0.5
    assert await bus.schedule(order_id) is None  # a fired schedule leaves nothing behind


async def test_the_expired_event_is_the_catalogue_payload_with_a_stable_id_and_the_expiry_as_its_time(
    app: FastAPI, bus: Any
) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(0.5)
    await bus.created(order_id, expires_at)

    [fired] = await bus.wait_expired(1)
    assert fired.data == {"orderId": str(order_id)}
    assert fired.headers["ce-id"] == str(expired_event_id(order_id))
    assert fired.headers["ce-type"] == "order.expired"
    assert fired.headers["ce-source"] == "expiration"
    assert datetime.fromisoformat(fired.headers["ce-time"]) == expires_at
    assert await bus.schedule(order_id) is None
    assert expired_event_id(order_id) == expired_event_id(order_id) != expired_event_id(uuid.uuid4())


async def test_an_order_whose_expiry_has_already_passed_expires_at_once(app: FastAPI, bus: Any) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(-60)
    published = datetime.now(UTC)
    await bus.created(order_id, expires_at)

    [fired] = await bus.wait_expired(1, timeout=5)
    assert fired.order_id == order_id
    assert (fired.stored_at - published).total_seconds() < 1.0


async def test_a_redelivered_order_created_yields_one_order_expired(app: FastAPI, bus: Any) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(1.5)
    event_id = await bus.created(order_id, expires_at)
    # The same event stored again under another dedup id, as a redelivery outside the duplicate window.
    await bus.created(order_id, expires_at, event_id=event_id, msg_id=str(uuid.uuid4()))
    await wait_until(lambda: _handled(app, "order.created", "duplicate", 1))

    await bus.wait_expired(1)
    await asyncio.sleep(1.0)
    assert [f.order_id for f in await bus.expired()] == [order_id]


async def test_an_order_created_published_twice_yields_one_order_expired_even_after_the_first_fired(
    app: FastAPI, bus: Any
) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(0.5)
    await bus.created(order_id, expires_at)
    await bus.wait_expired(1)

    # A second copy under a new event id (the inbox cannot tell), arriving after the expiry fired.
    await bus.created(order_id, expires_at)
    await wait_until(lambda: _handled(app, "order.created", "ok", 2))
    await asyncio.sleep(1.0)
    assert [f.order_id for f in await bus.expired()] == [order_id]
    assert await bus.schedule(order_id) is None


async def test_a_cancelled_order_loses_its_pending_expiry(app: FastAPI, bus: Any, find_expiry: Any) -> None:
    cancelled, kept = uuid.uuid4(), uuid.uuid4()
    expires_at = in_seconds(2)
    await bus.created(cancelled, expires_at)
    await bus.created(kept, expires_at)
    await bus.wait_scheduled(cancelled)

    await bus.cancelled(cancelled)
    await wait_until(lambda: _missing(bus.schedule(cancelled)))  # removed from JetStream, not merely ignored

    await sleep_until(expires_at + timedelta(seconds=1))
    assert [f.order_id for f in await bus.expired()] == [kept]
    row = await find_expiry(app.state.db.pool, cancelled)
    assert row is not None
    assert row.cancelled_at is not None


async def test_a_cancellation_after_the_expiry_fired_is_handled_without_effect(app: FastAPI, bus: Any) -> None:
    order_id = uuid.uuid4()
    await bus.created(order_id, in_seconds(0.2))
    await bus.wait_expired(1)

    await bus.cancelled(order_id)
    await wait_until(lambda: _handled(app, "order.cancelled", "ok", 1))
    assert [f.order_id for f in await bus.expired()] == [order_id]
    assert _count(app, "order.cancelled", "retry") == _count(app, "order.cancelled", "parked") == 0


async def test_a_cancellation_that_arrives_before_the_creation_prevents_the_expiry(
    app: FastAPI, bus: Any, find_expiry: Any
) -> None:
    order_id = uuid.uuid4()
    await bus.cancelled(order_id)
    await wait_until(lambda: find_expiry(app.state.db.pool, order_id))  # the tombstone

    expires_at = in_seconds(0.5)
    await bus.created(order_id, expires_at)
    await wait_until(lambda: _handled(app, "order.created", "ok", 1))

    await sleep_until(expires_at + timedelta(seconds=1))
    assert await bus.expired() == []
    assert await bus.schedule(order_id) is None


async def test_a_cancellation_removes_a_schedule_left_unsent_in_the_outbox(
    app: FastAPI, bus: Any, find_expiry: Any
) -> None:
    await app.state.events.stop_publisher()  # as if NATS were down: the schedule stays in the outbox
    order_id = uuid.uuid4()
    expires_at = in_seconds(1)
    await bus.created(order_id, expires_at)
    row = await wait_until(lambda: find_expiry(app.state.db.pool, order_id))
    assert await _outbox_row(app, row.schedule_event_id) is not None
    await _age_outbox_row(app, row.schedule_event_id)  # no publisher can still be sending it

    await bus.cancelled(order_id)
    await wait_until(lambda: _handled(app, "order.cancelled", "ok", 1))
    assert await _outbox_row(app, row.schedule_event_id) is None

    assert await app.state.events.publisher.sweep(older_than_seconds=0) == 0
    await sleep_until(expires_at + timedelta(seconds=1))
    assert await bus.expired() == []
    assert await bus.schedule(order_id) is None


async def test_a_cancellation_waits_while_a_publisher_may_still_be_sending_the_schedule_then_purges_it(
    app: FastAPI, bus: Any, find_expiry: Any, js: JetStreamContext, settings: ServiceSettings
) -> None:
    # A publisher sends committed events from memory, holding no lock: had the cancellation deleted the row and
    # purged at once, a publish still in flight would land after the purge and the expiry would fire.
    await app.state.events.stop_publisher()  # the test plays the publisher whose publish is in flight
    order_id = uuid.uuid4()
    expires_at = in_seconds(3)
    await bus.created(order_id, expires_at)
    row = await wait_until(lambda: find_expiry(app.state.db.pool, order_id))
    schedule = await _outbox_row(app, row.schedule_event_id)

    await bus.cancelled(order_id)
    await wait_until(lambda: _handled(app, "order.cancelled", "not_yet", 2))
    assert await _outbox_row(app, row.schedule_event_id) is not None
    held = await find_expiry(app.state.db.pool, order_id)
    assert held is not None
    assert held.cancelled_at is None  # nothing decided while held

    await js.publish(
        schedule["subject"],
        schedule["payload"].encode(),
        stream=settings.nats_stream,
        headers=json.loads(schedule["headers"]),
    )
    await app.state.db.pool.execute("UPDATE outbox SET sent_at = now() WHERE event_id = $1", row.schedule_event_id)
    assert await bus.schedule(order_id) is not None

    await wait_until(lambda: _handled(app, "order.cancelled", "ok", 1))
    assert await bus.schedule(order_id) is None  # purged once it had landed
    await sleep_until(expires_at + timedelta(seconds=1))
    assert await bus.expired() == []
    cancelled = await find_expiry(app.state.db.pool, order_id)
    assert cancelled is not None
    assert cancelled.cancelled_at is not None


async def test_two_replicas_emit_one_order_expired_per_order(
    service: ServiceUnderTest, settings: ServiceSettings, bus: Any
) -> None:
    orders = [uuid.uuid4() for _ in range(40)]
    async with running(service.create_app(settings)) as first, running(service.create_app(settings)) as second:
        await asyncio.sleep(0.3)  # both replicas' pull requests are waiting on the shared consumers
        expires_at = in_seconds(3)
        for order_id in orders:
            event_id = await bus.created(order_id, expires_at)
            await bus.created(order_id, expires_at, event_id=event_id, msg_id=str(uuid.uuid4()))  # redelivery
            await bus.created(order_id, expires_at)  # republished under a new event id

        fired = await bus.wait_expired(len(orders), timeout=15)
        await asyncio.sleep(1.0)
        fired = await bus.expired()
        handled = [_count(app, "order.created", "ok") for app in (first, second)]

    assert sorted(f.order_id for f in fired) == sorted(orders)
    assert sum(handled) == 2 * len(orders)  # the redeliveries were absorbed by the shared inbox
    assert all(n > 0 for n in handled), f"both replicas must have worked: {handled}"
    assert max((f.stored_at - expires_at).total_seconds() for f in fired) < 1.0


class _Inbox(Listener[OrderExpired]):
    """A consumer of ``order.expired`` with the shared runner's inbox, recording what it applied."""

    event = OrderExpired

    def __init__(self) -> None:
        self.applied: list[uuid.UUID] = []

    async def handle(self, event: OrderExpired, uow: UnitOfWork) -> None:
        self.applied.append(event.order_id)


async def test_a_schedule_sent_again_after_it_fired_fires_the_same_event_which_an_inbox_applies_once(
    app: FastAPI, bus: Any, js: JetStreamContext, settings: ServiceSettings
) -> None:
    order_id = uuid.uuid4()
    await bus.created(order_id, in_seconds(0.5))
    [first] = await bus.wait_expired(1)

    # The schedule sent again after it fired, as a publisher that crashed before marking it sent would once
    # JetStream's duplicate window is over (its Nats-Msg-Id no longer matters then).
    row = await app.state.db.pool.fetchrow(
        "SELECT subject, headers FROM outbox WHERE subject = $1", schedule_subject(order_id)
    )
    headers = {name: value for name, value in json.loads(row["headers"]).items() if name != "Nats-Msg-Id"}
    await js.publish(row["subject"], first.raw_data, stream=settings.nats_stream, headers=headers)
    first_again, second = await bus.wait_expired(2)
    assert first_again.sequence == first.sequence
    assert second.raw_data == first.raw_data
    assert second.headers["ce-id"] == first.headers["ce-id"] == str(expired_event_id(order_id))

    inbox = _Inbox()
    runner = ListenerRunner(inbox, service="inbox-check", js=js, stream=settings.nats_stream, db=app.state.db)
    subscription = await js.pull_subscribe(
        "order.expired", durable=runner.consumer, stream=settings.nats_stream, config=runner.consumer_config()
    )
    assert await runner.process_batch(await subscription.fetch(2, timeout=5)) == ["ok", "duplicate"]
    assert inbox.applied == [order_id]


def _count(app: FastAPI, subject: str, outcome: str) -> float:
    value: float = app.state.metrics.events_handled.labels(subject, outcome)._value.get()
    return value


async def _handled(app: FastAPI, subject: str, outcome: str, count: int) -> bool:
    return _count(app, subject, outcome) >= count


async def _missing(schedule: Any) -> bool:
    return await schedule is None


async def _outbox_row(app: FastAPI, event_id: uuid.UUID | None) -> Any:
    return await app.state.db.pool.fetchrow("SELECT * FROM outbox WHERE event_id = $1", event_id)


async def _age_outbox_row(app: FastAPI, event_id: uuid.UUID | None) -> None:
    """Make an outbox row a minute older, as one whose publisher gave up on it long ago."""
    await app.state.db.pool.execute(
        "UPDATE outbox SET created_at = created_at - interval '1 minute' WHERE event_id = $1", event_id
    )
