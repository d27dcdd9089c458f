"""Events applied in batches, as the shared runner hands them over: the same outcome as one by one.

The runner here is the service's listener on the ``db`` of the conftest (no outbox publisher): what a batch
staged stays in the outbox, where the test reads it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ticketing_common.config import ServiceSettings
from ticketing_common.db import Database
from ticketing_common.events import Listener
from ticketing_common.events.listener import ListenerRunner
from ticketing_expiration import queries
from ticketing_expiration.listeners import OrderCancelledListener, OrderCreatedListener
from ticketing_expiration.schedules import expired_event_id, schedule_subject
from ticketing_expiration.service import schedule_expiry


async def apply_in_one_batch(
    listener: Listener[Any], count: int, *, db: Database, js: JetStreamContext, settings: ServiceSettings
) -> list[str]:
    """Hand the ``count`` messages waiting on the listener's subject to its runner as one batch; the outcomes."""
    runner = ListenerRunner(listener, service=settings.service_name, js=js, stream=settings.nats_stream, db=db)
    subscription = await js.pull_subscribe(
        listener.subject, durable=runner.consumer, stream=settings.nats_stream, config=runner.consumer_config()
    )
    messages: list[Msg] = []
    while len(messages) < count:
        messages += await subscription.fetch(count - len(messages), timeout=5)
    return await runner.process_batch(messages)


def at(minutes: float) -> datetime:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0)


async def test_a_batch_of_order_created_schedules_each_new_order_once_in_one_transaction(
    db: Database, bus: Any, find_expiry: Any, js: JetStreamContext, settings: ServiceSettings
) -> None:
    new = {uuid.uuid4(): at(10 + i) for i in range(5)}
    known, tombstoned = uuid.uuid4(), uuid.uuid4()
    known_schedule = uuid.uuid4()
    assert await queries.claim_expiry(db.pool, order_id=known, expires_at=at(5), schedule_event_id=known_schedule)
    await queries.cancel_expiry(db.pool, tombstoned)

    first, second = list(new)[:2]
    for order_id, expires_at in new.items():
        await bus.created(order_id, expires_at)
    await bus.created(known, at(30))
    await bus.created(tombstoned, at(30))
    await bus.created(first, at(60))  # a second copy under a new event id: the first copy decides
    redelivered = await bus.created(second, new[second])
    await bus.created(second, new[second], event_id=redelivered, msg_id=str(uuid.uuid4()))

    outcomes = await apply_in_one_batch(OrderCreatedListener(), 10, db=db, js=js, settings=settings)
    assert outcomes == ["ok"] * 9 + ["duplicate"]

    rows = {row.order_id: row for order_id in new if (row := await find_expiry(db.pool, order_id))}
    assert {order_id: row.expires_at for order_id, row in rows.items()} == new
    assert len({row.recorded_at for row in rows.values()}) == 1  # one transaction, not a replay one by one
    outbox = await db.pool.fetch("SELECT event_id, subject, headers FROM outbox ORDER BY id")
    assert [row["subject"] for row in outbox] == [schedule_subject(order_id) for order_id in new]  # in order
    for row, (order_id, expires_at) in zip(outbox, new.items(), strict=True):
        headers = json.loads(row["headers"])
        assert row["event_id"] == rows[order_id].schedule_event_id
        assert headers["Nats-Msg-Id"] == str(row["event_id"])
        assert headers["Nats-Schedule"] == f"@at {expires_at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        assert headers["Nats-Schedule-Target"] == "order.expired"
        assert headers["ce-id"] == str(expired_event_id(order_id))

    known_row = await find_expiry(db.pool, known)
    tombstone = await find_expiry(db.pool, tombstoned)
    assert known_row is not None
    assert known_row.schedule_event_id == known_schedule
    assert tombstone is not None
    assert tombstone.expires_at is None
    assert tombstone.schedule_event_id is None


async def test_a_batch_of_cancellations_with_one_schedule_maybe_being_published_applies_the_others_and_holds_it(
    db: Database, bus: Any, find_expiry: Any, js: JetStreamContext, settings: ServiceSettings
) -> None:
    sent, publishing, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for order_id in (sent, publishing):
        async with db.unit_of_work() as uow:
            assert await schedule_expiry(uow=uow, order_id=order_id, expires_at=at(60))
    sent_row = await find_expiry(db.pool, sent)
    assert sent_row is not None
    schedule = await db.pool.fetchrow(
        "UPDATE outbox SET sent_at = now() WHERE event_id = $1 RETURNING subject, payload, headers",
        sent_row.schedule_event_id,
    )
    await js.publish(
        schedule["subject"],
        schedule["payload"].encode(),
        stream=settings.nats_stream,
        headers=json.loads(schedule["headers"]),
    )
    assert await bus.schedule(sent) is not None

    for order_id in (sent, publishing, unknown):
        await bus.cancelled(order_id)
    listener = OrderCancelledListener(js, stream=settings.nats_stream)
    outcomes = await apply_in_one_batch(listener, 3, db=db, js=js, settings=settings)

    # The batch failed on the held one and was replayed one event at a time: the others applied.
    assert outcomes == ["ok", "not_yet", "ok"]
    cancelled, held, tombstone = [await find_expiry(db.pool, o) for o in (sent, publishing, unknown)]
    assert cancelled is not None
    assert cancelled.cancelled_at is not None
    assert await bus.schedule(sent) is None  # purged
    assert held is not None
    assert held.cancelled_at is None
    assert await db.pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", held.schedule_event_id) == 1
    assert tombstone is not None
    assert tombstone.cancelled_at is not None
    assert tombstone.expires_at is None
