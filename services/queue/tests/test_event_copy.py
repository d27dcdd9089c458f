"""Rooms follow the tickets service's events: created once (the first seed stays), updated version by version, and
a new on-sale time before the draw replaces the draw's one schedule (earlier draws earlier, later postpones)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from nats.js import JetStreamContext
from queue_testing import Buyer, Queue, in_seconds, running_queue

from ticketing_common.config import ServiceSettings
from ticketing_common.db import Database, create_database
from ticketing_common.events import EventCreated, EventUpdated, NotYet
from ticketing_common.events.bus import ensure_stream
from ticketing_common.testing import wait_until
from ticketing_queue import queries, service
from ticketing_queue.schedules import schedule_subject


async def schedules_in_stream(queue: Queue, event_id: uuid.UUID) -> int:
    """How many messages the stream holds on the event's schedule subject."""
    info = await queue.js.stream_info(queue.stream, subjects_filter=schedule_subject(event_id))
    return int((info.state.subjects or {}).get(schedule_subject(event_id), 0))


async def test_a_room_is_created_once_and_keeps_its_first_seed_and_schedule(queue: Queue) -> None:
    event = await queue.add_event()
    room = await queue.room(event.id)
    again = event.model_copy(update={"on_sale_at": in_seconds(7200)})

    await queue.publish(again)  # the same creation republished under a new event id
    await queue.wait_handled("event.created", 2)

    assert await queue.room(event.id) == room
    assert len(await queue.outbox(schedule_subject(event.id))) == 1


async def test_updates_apply_in_version_order_ahead_waits_and_behind_is_ignored(queue: Queue) -> None:
    event = await queue.add_event()
    first, second = in_seconds(5000), in_seconds(6000)

    await queue.publish(queue.updated(event, version=2, on_sale_at=second))
    await queue.wait_handled("event.updated", 1, "not_yet")
    assert (await queue.room(event.id)).version == 0  # type: ignore[union-attr]
    await queue.publish(queue.updated(event, version=1, on_sale_at=first))
    await queue.wait_handled("event.updated", 2)
    await queue.publish(queue.updated(event, version=1, on_sale_at=in_seconds(9000)))  # behind: no effect
    await queue.wait_handled("event.updated", 3)

    room = await queue.room(event.id)
    assert room is not None
    assert (room.version, room.on_sale_at) == (2, second)
    assert [m["onSaleAt"] for m in await queue.outbox(schedule_subject(event.id))] == [
        moment.astimezone(UTC).isoformat().replace("+00:00", "Z") for moment in (event.on_sale_at, first, second)
    ]


async def test_moving_the_sale_earlier_replaces_the_schedule_and_draws_at_the_new_time(queue: Queue) -> None:
    event = await queue.add_event(on_sale_at=in_seconds(3600))
    await queue.joined(event.id, 2)
    new_time = in_seconds(1.5)

    await queue.publish(queue.updated(event, on_sale_at=new_time))
    await queue.wait_handled("event.updated", 1)

    async def replaced() -> bool:
        schedule = await queue.schedule(event.id)
        return schedule is not None and schedule.headers["Nats-Schedule"].endswith(
            new_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        )

    await wait_until(replaced, timeout=5)
    assert await schedules_in_stream(queue, event.id) == 1  # replaced, not added
    room = await queue.wait_drawn(event.id)
    assert room.drawn_at is not None
    assert new_time <= room.drawn_at < new_time + timedelta(seconds=1)
    assert await schedules_in_stream(queue, event.id) == 0  # and the old time will never fire


async def test_moving_the_sale_later_postpones_the_draw(settings: ServiceSettings, js: JetStreamContext) -> None:
    async with running_queue(settings, js, queue_admit_per_second=0.1) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(1.5))
        await queue.joined(event.id, 3)
        later = in_seconds(3.5)

        await queue.publish(queue.updated(event, on_sale_at=later))
        await queue.wait_handled("event.updated", 1)
        await asyncio.sleep((event.on_sale_at - datetime.now(UTC)).total_seconds() + 0.7)
        assert (await queue.room(event.id)).drawn_at is None  # type: ignore[union-attr]
        room = await queue.wait_drawn(event.id)

    assert room.drawn_at is not None
    assert later <= room.drawn_at < later + timedelta(seconds=1)
    assert room.drawn_count == 3


async def test_once_drawn_a_new_sale_time_or_waiting_room_flag_changes_nothing_but_the_version(queue: Queue) -> None:
    event = await queue.add_event(on_sale_at=in_seconds(0.3))
    drawn = await queue.wait_drawn(event.id)

    await queue.publish(queue.updated(event, on_sale_at=in_seconds(3600), waiting_room=False))
    await queue.wait_handled("event.updated", 1)

    room = await queue.room(event.id)
    assert room is not None
    assert (room.version, room.waiting_room, room.drawn_at) == (1, True, drawn.drawn_at)
    assert len(await queue.outbox(schedule_subject(event.id))) == 1
    assert (await queue.join(event.id, Buyer.new())).status_code == 201


@pytest.fixture
async def db(settings: ServiceSettings, js: JetStreamContext) -> AsyncIterator[Database]:
    """The service's database and stream without the service: nothing publishes what its units of work stage."""
    await ensure_stream(js, settings.nats_stream)
    database = await create_database(settings.database_dsn, service=settings.service_name, size=4)
    try:
        yield database
    finally:
        await database.pool.close()


async def test_an_update_waits_while_the_previous_schedule_may_be_being_published_then_replaces_it(
    db: Database,
) -> None:
    created = EventCreated(
        id=uuid.uuid4(),
        name="Concert",
        venue="Hall",
        starts_at=in_seconds(86400),
        on_sale_at=in_seconds(3600),
        max_per_buyer=2,
        waiting_room=True,
        user_id=uuid.uuid4(),
        version=0,
    )
    async with db.unit_of_work() as uow:
        await service.copy_created_event(uow=uow, event=created)
    room = await queries.find_room(db.pool, created.id)
    assert room is not None
    assert room.schedule_event_id is not None
    update = created.model_dump() | {"version": 1, "on_sale_at": in_seconds(1800)}
    # Unsent and young: a publisher may be sending it from memory right now, and would land after a new one.
    with pytest.raises(NotYet):
        async with db.unit_of_work() as uow:
            await service.copy_updated_event(uow=uow, event=EventUpdated(**update))
    # Older, still unsent: only the sweeper could send it, and the update's delete waits for it. Dropped.
    await db.pool.execute(
        "UPDATE outbox SET created_at = now() - interval '11 seconds' WHERE event_id = $1", room.schedule_event_id
    )
    async with db.unit_of_work() as uow:
        await service.copy_updated_event(uow=uow, event=EventUpdated(**update))

    rows = await db.pool.fetch("SELECT event_id, payload FROM outbox WHERE subject = $1", schedule_subject(created.id))
    updated = await queries.find_room(db.pool, created.id)
    assert updated is not None
    assert [row["event_id"] for row in rows] == [updated.schedule_event_id]
    assert updated.schedule_event_id != room.schedule_event_id


async def test_a_schedule_written_days_ago_is_written_again_so_the_stream_keeps_it_until_on_sale_at(
    queue: Queue,
) -> None:
    # The stream keeps messages seven days; an event may go on sale weeks after it was created.
    event = await queue.add_event(on_sale_at=in_seconds(20 * 24 * 3600))
    soon = await queue.add_event(on_sale_at=in_seconds(30))  # about to draw: left alone
    before = await queue.room(event.id)
    await queue.published(schedule_subject(event.id))  # sent (days ago, as it were)
    await queue.pool.execute("UPDATE rooms SET schedule_written_at = now() - interval '4 days'")

    renewed = await service.renew_schedules(db=queue.app.state.db)
    again = await service.renew_schedules(db=queue.app.state.db)

    after = await queue.room(event.id)
    assert (renewed, again) == (1, 0)
    assert before is not None
    assert after is not None
    assert after.schedule_event_id != before.schedule_event_id
    assert len(await queue.outbox(schedule_subject(soon.id))) == 1
    schedules = await queue.outbox(schedule_subject(event.id))
    assert len(schedules) == 2
    assert schedules[0] == schedules[1]  # the same draw at the same time

    async def replaced() -> bool:
        schedule = await queue.schedule(event.id)
        return schedule is not None and schedule.headers["Nats-Msg-Id"] == str(after.schedule_event_id)

    await wait_until(replaced)
    assert await schedules_in_stream(queue, event.id) == 1
