"""The in-process timer expires orders on time; the JetStream schedule stays the durable backstop."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from nats.js import JetStreamContext
from sqlalchemy import select

from ticketing_common.config import ServiceSettings
from ticketing_common.db import create_engine
from ticketing_common.events import EventContext, Listener, OrderCancelled, OrderExpired
from ticketing_common.events.catalogue import TicketRef
from ticketing_common.events.listener import ListenerRunner
from ticketing_common.events.tables import OutboxRow
from ticketing_common.testing import ServiceUnderTest, running, wait_until
from ticketing_expiration.handlers import OrderCancelledListener
from ticketing_expiration.models import OrderExpiry
from ticketing_expiration.schedules import SCHEDULE_SUBJECT_PREFIX, expired_event_id, schedule_subject
from ticketing_expiration.service import cancel_expiry

PUNCTUAL_ORDERS = 300
PUNCTUAL_LEAD_SECONDS = 10.0
PUNCTUAL_SPREAD_SECONDS = 3.0


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def sleep_until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


async def test_orders_expire_on_time_even_when_many_schedules_are_pending(
    service: ServiceUnderTest, settings: ServiceSettings, bus: Any, js: JetStreamContext
) -> None:
    async with running(service.create_app(settings)) as first, running(service.create_app(settings)) as second:
        first_due = in_seconds(PUNCTUAL_LEAD_SECONDS)
        due = {
            uuid.uuid4(): first_due + timedelta(seconds=PUNCTUAL_SPREAD_SECONDS * i / PUNCTUAL_ORDERS)
            for i in range(PUNCTUAL_ORDERS)
        }
        await asyncio.gather(*(bus.created(order_id, expires_at) for order_id, expires_at in due.items()))
        await wait_until(lambda: _pending_schedules(js, settings, PUNCTUAL_ORDERS), timeout=PUNCTUAL_LEAD_SECONDS)
        assert datetime.now(UTC) < first_due, "the orders were not all scheduled before the first was due"
        assert len(first.state.expiry_timers) + len(second.state.expiry_timers) == PUNCTUAL_ORDERS

        await bus.wait_expired(PUNCTUAL_ORDERS, timeout=PUNCTUAL_LEAD_SECONDS + PUNCTUAL_SPREAD_SECONDS + 10)
        await asyncio.sleep(1.0)  # past every schedule's grace: any second copy would be in the stream by now
        fired = await bus.expired()

    assert sorted(f.order_id for f in fired) == sorted(due)  # each exactly once
    lateness = sorted((f.stored_at - due[f.order_id]).total_seconds() for f in fired)
    p99 = statistics.quantiles(lateness, n=100, method="inclusive")[98]
    print(
        f"\n{PUNCTUAL_ORDERS} timers: lateness p50 {statistics.median(lateness) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
    assert lateness[0] >= 0, "an order expired before its time"
    assert p99 < 0.1
    assert not any("Nats-Scheduler" in f.headers for f in fired)  # every one from a timer, none from a schedule
    assert await _pending_schedules(js, settings, 0)  # the timers purged their schedules


async def test_an_order_cancelled_on_another_replica_is_not_expired_by_the_timer_of_this_one(
    app: FastAPI, bus: Any, js: JetStreamContext, settings: ServiceSettings
) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(1.5)
    await bus.created(order_id, expires_at)
    await bus.wait_scheduled(order_id)
    assert order_id in app.state.expiry_timers

    # The other replica's order.cancelled listener (it holds no timer for the order) commits the cancellation.
    other_replica = OrderCancelledListener(jetstream=lambda: js, stream=settings.nats_stream)
    cancelled = OrderCancelled(id=order_id, version=1, ticket=TicketRef(id=uuid.uuid4()))
    async with app.state.sessionmaker() as session, session.begin():
        session.info["service"] = settings.service_name
        await other_replica.handle(cancelled, session, EventContext(str(uuid.uuid4()), "order.cancelled", 1, None))
    assert order_id in app.state.expiry_timers  # still armed here

    await wait_until(lambda: _disarmed(app, order_id), timeout=5)  # it fired and found the order cancelled
    await sleep_until(expires_at + timedelta(seconds=1))
    assert await bus.expired() == []
    assert await bus.schedule(order_id) is None


async def test_the_cancellation_that_follows_a_timer_expiry_has_no_schedule_left_to_purge(
    app: FastAPI, bus: Any, js: JetStreamContext, settings: ServiceSettings
) -> None:
    order_id = uuid.uuid4()
    await bus.created(order_id, in_seconds(0.5))
    [fired] = await bus.wait_expired(1)
    assert "Nats-Scheduler" not in fired.headers  # the timer's copy
    async with app.state.sessionmaker() as session:
        expiry = await session.get(OrderExpiry, order_id)
    assert expiry is not None
    assert expiry.schedule_event_id is None  # its schedule is gone

    purged: list[uuid.UUID] = []

    async def remove_schedule(removed: uuid.UUID) -> None:
        purged.append(removed)

    async with app.state.sessionmaker() as session, session.begin():
        had_schedule = await cancel_expiry(session=session, order_id=order_id, remove_schedule=remove_schedule)
    assert had_schedule is False
    assert purged == []


async def test_an_order_cancelled_on_the_replica_holding_its_timer_disarms_it(app: FastAPI, bus: Any) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(1.5)
    await bus.created(order_id, expires_at)
    await wait_until(lambda: _armed(app, order_id))

    await bus.cancelled(order_id)
    await wait_until(lambda: _disarmed(app, order_id))
    await sleep_until(expires_at + timedelta(seconds=1))
    assert await bus.expired() == []


async def test_when_the_service_stops_before_the_timer_fires_the_schedule_still_fires(
    service: ServiceUnderTest, settings: ServiceSettings, bus: Any
) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(1.5)
    async with running(service.create_app(settings)) as app:
        await bus.created(order_id, expires_at)
        await bus.wait_scheduled(order_id)
        assert order_id in app.state.expiry_timers
    assert datetime.now(UTC) < expires_at  # stopped, its timer with it, before the deadline

    [fired] = await bus.wait_expired(1)
    assert fired.order_id == order_id
    assert fired.headers["Nats-Scheduler"] == schedule_subject(order_id)  # the schedule's copy
    # A grace (0.5 s) after expiresAt, plus nats-server's scheduler period (up to 250 ms) when others are pending.
    assert 0.5 <= (fired.stored_at - expires_at).total_seconds() < 1.0
    await asyncio.sleep(0.5)
    assert len(await bus.expired()) == 1


async def test_replicas_started_after_a_restart_re_arm_pending_expiries_and_fire_each_once_on_time(
    service: ServiceUnderTest, settings: ServiceSettings, bus: Any
) -> None:
    due = {uuid.uuid4(): in_seconds(3 + i * 0.05) for i in range(10)}
    cancelled = uuid.uuid4()
    async with running(service.create_app(settings)):
        for order_id, expires_at in due.items():
            await bus.created(order_id, expires_at)
        await bus.created(cancelled, in_seconds(3))
        for order_id in [*due, cancelled]:
            await bus.wait_scheduled(order_id)
        await bus.cancelled(cancelled)
        await wait_until(lambda: _cancellation_recorded(settings, cancelled))
    # Stopped, its timers with it; two replicas start (a deploy) before the first deadline.
    async with running(service.create_app(settings)) as first, running(service.create_app(settings)) as second:
        assert all(order_id in first.state.expiry_timers and order_id in second.state.expiry_timers for order_id in due)
        assert cancelled not in first.state.expiry_timers
        await bus.wait_expired(len(due), timeout=10)
        await asyncio.sleep(1.0)  # past the schedules' grace: any second copy would be in the stream by now
        fired = await bus.expired()
    assert sorted(f.order_id for f in fired) == sorted(due)  # each once, the cancelled one never
    assert not any("Nats-Scheduler" in f.headers for f in fired)  # by the re-armed timers, not the backstop
    lateness = [(f.stored_at - due[f.order_id]).total_seconds() for f in fired]
    assert min(lateness) >= 0
    assert max(lateness) < 0.25


async def test_only_an_expiry_within_the_horizon_gets_a_timer_and_a_later_backstop(
    service: ServiceUnderTest, settings: ServiceSettings, bus: Any
) -> None:
    settings = settings.model_copy(update={"expiry_timer_horizon_seconds": 60.0})
    near, far = uuid.uuid4(), uuid.uuid4()
    near_at, far_at = in_seconds(30), in_seconds(120)
    async with running(service.create_app(settings)) as app:
        await bus.created(near, near_at)
        await bus.created(far, far_at)
        near_schedule = await bus.wait_scheduled(near)
        far_schedule = await bus.wait_scheduled(far)
        assert near in app.state.expiry_timers
        assert far not in app.state.expiry_timers

    assert _schedule_time(near_schedule) == near_at + timedelta(seconds=settings.expiry_timer_grace_seconds)
    assert _schedule_time(far_schedule) == far_at  # no timer: the schedule fires on time itself


async def test_with_no_timers_the_schedule_expires_the_order(
    service: ServiceUnderTest, settings: ServiceSettings, bus: Any
) -> None:
    settings = settings.model_copy(update={"expiry_timer_max_armed": 0})
    order_id = uuid.uuid4()
    expires_at = in_seconds(1)
    async with running(service.create_app(settings)) as app:
        assert app.state.expiry_timers is None
        await bus.created(order_id, expires_at)
        [fired] = await bus.wait_expired(1)
    assert fired.headers["Nats-Scheduler"] == schedule_subject(order_id)
    assert 0 <= (fired.stored_at - expires_at).total_seconds() < 1.0


class _Inbox(Listener[OrderExpired]):
    """A consumer of ``order.expired`` with the shared runner's inbox, recording what it applied."""

    event = OrderExpired

    def __init__(self) -> None:
        self.applied: list[uuid.UUID] = []

    async def handle(self, event: OrderExpired, session: Any, context: EventContext) -> None:
        self.applied.append(event.order_id)


async def test_the_timer_copy_and_a_schedule_copy_are_one_event_and_count_once_in_an_inbox(
    app: FastAPI, bus: Any, js: JetStreamContext, settings: ServiceSettings
) -> None:
    order_id = uuid.uuid4()
    expires_at = in_seconds(0.5)
    await bus.created(order_id, expires_at)
    [by_timer] = await bus.wait_expired(1)
    assert "Nats-Scheduler" not in by_timer.headers

    # The schedule sent again after the timer's purge, as a relay that crashed before marking it sent would,
    # once JetStream's duplicate window is over (its Nats-Msg-Id no longer matters then).
    async with app.state.sessionmaker() as session:
        row = await session.scalar(select(OutboxRow).where(OutboxRow.subject == schedule_subject(order_id)))
    headers = {name: value for name, value in row.headers.items() if name != "Nats-Msg-Id"}
    await js.publish(row.subject, by_timer.raw_data, stream=settings.nats_stream, headers=headers)
    by_timer_again, by_schedule = await bus.wait_expired(2)
    assert by_timer_again.sequence == by_timer.sequence

    assert by_schedule.headers["Nats-Scheduler"] == schedule_subject(order_id)
    assert by_schedule.raw_data == by_timer.raw_data
    transport = {"Nats-Msg-Id", "Nats-Expected-Stream", "Nats-Scheduler", "Nats-Schedule-Next"}
    assert _without(by_schedule.headers, transport) == _without(by_timer.headers, transport)
    assert by_timer.headers["ce-id"] == str(expired_event_id(order_id))

    inbox = _Inbox()
    runner = ListenerRunner(
        inbox, service="inbox-check", js=js, stream=settings.nats_stream, sessionmaker=app.state.sessionmaker
    )
    subscription = await js.pull_subscribe(
        "order.expired", durable=runner.consumer, stream=settings.nats_stream, config=runner.consumer_config()
    )
    outcomes = [await runner.process(message) for message in await subscription.fetch(2, timeout=5)]
    assert outcomes == ["ok", "duplicate"]
    assert inbox.applied == [order_id]


async def _pending_schedules(js: JetStreamContext, settings: ServiceSettings, count: int) -> bool:
    info = await js.stream_info(settings.nats_stream, subjects_filter=f"{SCHEDULE_SUBJECT_PREFIX}.>")
    return len(info.state.subjects or {}) == count


async def _cancellation_recorded(settings: ServiceSettings, order_id: uuid.UUID) -> bool:
    engine = create_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as connection:
            cancelled_at = await connection.scalar(
                select(OrderExpiry.cancelled_at).where(OrderExpiry.order_id == order_id)
            )
    finally:
        await engine.dispose()
    return cancelled_at is not None


async def _armed(app: FastAPI, order_id: uuid.UUID) -> bool:
    return order_id in app.state.expiry_timers


async def _disarmed(app: FastAPI, order_id: uuid.UUID) -> bool:
    return order_id not in app.state.expiry_timers


def _schedule_time(message: Any) -> datetime:
    return datetime.strptime(message.headers["Nats-Schedule"], "@at %Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _without(headers: dict[str, str], names: set[str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in names}
