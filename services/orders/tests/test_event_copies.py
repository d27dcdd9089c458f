"""The copies a sale needs: events follow event.created / event.updated whatever their order and repetitions (as
the ticket copy does), tickets keep their eventId, and admissions keep each buyer's latest admission to each
event, however often and in whatever order queue.admitted arrives."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI

from ticketing_common.events import (
    BuyerAdmitted,
    Event,
    EventCreated,
    EventUpdated,
    NotYet,
    TicketCreated,
    TicketUpdated,
)
from ticketing_common.testing import wait_until
from ticketing_orders.listeners import BuyerAdmittedListener, EventCreatedListener, EventUpdatedListener

if TYPE_CHECKING:
    from conftest import Harness

    from ticketing_orders.queries import EventCopy

LAST_VERSION = 5
START = datetime(2027, 3, 1, 18, 0, tzinfo=UTC)


def _created(bus: Harness, event_id: uuid.UUID) -> EventCreated:
    return bus.new_event(event_id=event_id, on_sale_at=START, max_per_buyer=1)


def _updated(created: EventCreated, version: int) -> EventUpdated:
    """Version ``version`` of the event: the sale's opening moved by that many days, the limit raised."""
    fields = created.model_dump(exclude={"on_sale_at", "max_per_buyer", "waiting_room", "version"})
    return EventUpdated(
        **fields,
        on_sale_at=START + timedelta(days=version),
        max_per_buyer=1 + version,
        waiting_room=version % 2 == 1,
        version=version,
    )


def _history(bus: Harness, event_id: uuid.UUID) -> list[Event]:
    """What the tickets service publishes for one event: created (v0) then five updates (v1..v5)."""
    created = _created(bus, event_id)
    return [created] + [_updated(created, version) for version in range(1, LAST_VERSION + 1)]


async def _at_version(bus: Harness, event_id: uuid.UUID, version: int) -> EventCopy:
    async def reached() -> EventCopy | None:
        copy = await bus.event_copy(event_id)
        return copy if copy is not None and copy.version == version else None

    result: EventCopy = await wait_until(reached, timeout=30)
    return result


# Events


async def test_event_created_inserts_the_copy_at_version_0(bus: Harness) -> None:
    event = bus.new_event(on_sale_at=START, max_per_buyer=3, waiting_room=True)

    await bus.publish(event)

    copy = await _at_version(bus, event.id, 0)
    assert (copy.on_sale_at, copy.max_per_buyer, copy.waiting_room) == (START, 3, True)


async def test_a_repeated_event_created_changes_nothing(bus: Harness) -> None:
    first = bus.new_event(on_sale_at=START, max_per_buyer=2)
    await bus.publish(first)
    await _at_version(bus, first.id, 0)

    await bus.publish(first.model_copy(update={"max_per_buyer": 9}))  # under a new event id, with other data
    await bus.wait_handled("event.created", 2)

    copy = await bus.event_copy(first.id)
    assert copy is not None
    assert (copy.max_per_buyer, copy.version) == (2, 0)


async def test_event_updates_apply_only_on_top_of_the_previous_version(bus: Harness) -> None:
    event_id = uuid.uuid4()
    history = _history(bus, event_id)
    await bus.publish(history[0])
    await _at_version(bus, event_id, 0)

    await bus.publish(history[2])  # v2 is ahead of v0: not yet
    await bus.wait_handled("event.updated", 1, "not_yet")
    assert (copy := await bus.event_copy(event_id)) is not None
    assert copy.version == 0
    await bus.publish(history[1])

    copy = await _at_version(bus, event_id, 2)
    assert (copy.on_sale_at, copy.max_per_buyer, copy.waiting_room) == (START + timedelta(days=2), 3, False)

    await bus.publish(history[1])  # behind: acknowledged without effect
    await bus.wait_handled("event.updated", 3)
    assert (copy := await bus.event_copy(event_id)) is not None
    assert (copy.max_per_buyer, copy.version) == (3, 2)


async def test_an_event_update_arriving_before_the_creation_waits_for_it(bus: Harness) -> None:
    event_id = uuid.uuid4()
    history = _history(bus, event_id)
    await bus.publish(history[1])
    await bus.wait_handled("event.updated", 1, "not_yet")
    assert await bus.event_copy(event_id) is None

    await bus.publish(history[0])

    copy = await _at_version(bus, event_id, 1)
    assert copy.max_per_buyer == 2


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_event_copy_follows_shuffled_and_duplicated_events_to_the_last_version(
    bus: Harness, seed: int
) -> None:
    event_id = uuid.uuid4()
    history = _history(bus, event_id)
    # Every event twice: as published, and republished under a new event id (only the version gate stops it).
    deliveries = [(event, None) for event in history] + [(event, uuid.uuid4()) for event in history]
    random.Random(seed).shuffle(deliveries)
    for event, new_id in deliveries:
        await bus.publish(event, event_id=new_id)

    copy = await _at_version(bus, event_id, LAST_VERSION)

    assert (copy.on_sale_at, copy.max_per_buyer, copy.waiting_room) == (START + timedelta(days=5), 6, True)
    await bus.wait_handled("event.updated", 2 * LAST_VERSION)
    assert bus.handled("event.updated", "parked") == 0


async def test_a_batch_of_event_creations_and_updates_applies_like_one_by_one(app: FastAPI, bus: Harness) -> None:
    ids = [uuid.uuid4() for _ in range(20)]
    created = [_created(bus, event_id) for event_id in ids]
    async with app.state.db.unit_of_work() as uow:
        await EventCreatedListener(app.state.sale_waits).handle_batch([*created, created[0]], uow)

    updates = [_updated(c, 1) for c in created] + [_updated(created[0], 1)]  # one twice
    async with app.state.db.unit_of_work() as uow:
        await EventUpdatedListener().handle_batch(updates, uow)

    copies = [await bus.event_copy(event_id) for event_id in ids]
    assert {(c.version, c.max_per_buyer) for c in copies if c is not None} == {(1, 2)}
    rows = await bus.pool.fetchval("SELECT count(DISTINCT xmin::text) FROM events WHERE id = ANY ($1::uuid[])", ids)
    assert rows == 1  # one transaction wrote them all

    ahead = [_updated(created[0], 3)] + [_updated(c, 2) for c in created[1:]]
    with pytest.raises(NotYet):  # v3 of a copy at v1: the whole batch rolls back
        async with app.state.db.unit_of_work() as uow:
            await EventUpdatedListener().handle_batch(ahead, uow)
    assert {c.version for c in [await bus.event_copy(event_id) for event_id in ids] if c is not None} == {1}


# Tickets' events


async def test_the_ticket_copy_keeps_the_event_it_is_sold_for_and_follows_it_through_updates(bus: Harness) -> None:
    event_id, later_event_id, seller = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    created = TicketCreated(
        id=uuid.uuid4(), title="Seat 1", price=Decimal("30"), user_id=seller, version=0, event_id=event_id
    )
    await bus.publish(created)
    await wait_until(lambda: bus.ticket(created.id))
    assert (copy := await bus.ticket(created.id)) is not None
    assert copy.event_id == event_id

    await bus.publish(
        TicketUpdated(
            id=created.id,
            title="Seat 1",
            price=Decimal("30"),
            user_id=seller,
            order_id=None,
            version=1,
            event_id=later_event_id,
        )
    )
    await bus.wait_handled("ticket.updated", 1)

    assert (copy := await bus.ticket(created.id)) is not None
    assert (copy.event_id, copy.version) == (later_event_id, 1)


async def test_a_ticket_event_without_event_id_is_a_ticket_of_no_event(bus: Harness) -> None:
    ticket = await bus.add_ticket()

    assert (copy := await bus.ticket(ticket.id)) is not None
    assert copy.event_id is None


# Admissions


async def test_an_admission_is_stored_and_a_repeated_one_changes_nothing(bus: Harness) -> None:
    event_id, buyer = uuid.uuid4(), uuid.uuid4()
    admission = await bus.admit(event_id, buyer)
    event_id_of_message = await bus.publish(admission)  # the same admission under a new event id
    await bus.wait_handled("queue.admitted", 2)
    # ... and the very same message redelivered: the inbox stops it
    await bus.publish(admission, event_id=event_id_of_message, msg_id=str(uuid.uuid4()))
    await bus.wait_handled("queue.admitted", 1, "duplicate")

    assert await bus.admission(event_id, buyer) == admission.admitted_until
    assert await bus.pool.fetchval("SELECT count(*) FROM admissions") == 1


async def test_a_later_admission_wins_whatever_the_order_of_arrival(bus: Harness) -> None:
    event_id, buyer = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    later = now + timedelta(minutes=20)
    await bus.admit(event_id, buyer, until=now + timedelta(minutes=10))
    await bus.admit(event_id, buyer, until=later)  # admitted again

    await bus.admit(event_id, buyer, until=now + timedelta(minutes=15), wait=False)  # an older one, late
    await bus.wait_handled("queue.admitted", 3)

    assert await bus.admission(event_id, buyer) == later


async def test_a_batch_of_admissions_keeps_the_latest_of_each_buyer_and_event(app: FastAPI, bus: Harness) -> None:
    event_id, other_event = uuid.uuid4(), uuid.uuid4()
    buyers = [uuid.uuid4() for _ in range(10)]
    now = datetime.now(UTC)

    def admitted(event: uuid.UUID, buyer: uuid.UUID, minutes: int) -> BuyerAdmitted:
        return BuyerAdmitted(event_id=event, user_id=buyer, position=1, admitted_until=now + timedelta(minutes=minutes))

    await bus.admit(event_id, buyers[0], until=now + timedelta(minutes=30))
    batch = [admitted(event_id, b, 10) for b in buyers] + [admitted(event_id, b, 12) for b in buyers[:3]]
    batch += [admitted(other_event, buyers[0], 5)]
    random.Random(4).shuffle(batch)

    async with app.state.db.unit_of_work() as uow:
        await BuyerAdmittedListener(app.state.sale_waits).handle_batch(batch, uow)

    assert await bus.admission(event_id, buyers[0]) == now + timedelta(minutes=30)  # the stored one was later
    assert [await bus.admission(event_id, b) for b in buyers[1:3]] == [now + timedelta(minutes=12)] * 2
    assert [await bus.admission(event_id, b) for b in buyers[3:]] == [now + timedelta(minutes=10)] * 7
    assert await bus.admission(other_event, buyers[0]) == now + timedelta(minutes=5)
