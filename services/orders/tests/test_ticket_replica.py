"""The copy of the tickets follows ticket.created / ticket.updated, whatever their order and repetitions."""

from __future__ import annotations

import asyncio
import random
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import pytest

from ticketing_common.events import Event, TicketCreated, TicketUpdated
from ticketing_common.testing import signin, wait_until
from ticketing_orders.queries import apply_ticket_updates

if TYPE_CHECKING:
    from conftest import Harness

    from ticketing_orders.queries import Ticket

SELLER = uuid.uuid4()
LAST_VERSION = 5


def _history(ticket_id: uuid.UUID) -> list[Event]:
    """What the tickets service publishes for one ticket: created (v0) then five updates (v1..v5)."""
    created = TicketCreated(id=ticket_id, title="v0", price=Decimal("10"), user_id=SELLER, version=0)
    return [created] + [
        TicketUpdated(
            id=ticket_id,
            title=f"v{version}",
            price=Decimal("10") + version,
            user_id=SELLER,
            order_id=uuid.uuid4() if version % 2 else None,
            version=version,
        )
        for version in range(1, LAST_VERSION + 1)
    ]


async def _at_version(bus: Harness, ticket_id: uuid.UUID, version: int) -> Ticket:
    async def reached() -> Ticket | None:
        ticket = await bus.ticket(ticket_id)
        return ticket if ticket is not None and ticket.version == version else None

    result: Ticket = await wait_until(reached, timeout=30)
    return result


async def test_ticket_created_inserts_the_copy_at_version_0(bus: Harness) -> None:
    seller = uuid.uuid4()
    event = TicketCreated(id=uuid.uuid4(), title="Concert", price=Decimal("19.99"), user_id=seller, version=0)

    await bus.publish(event)

    copy = await _at_version(bus, event.id, 0)
    assert (copy.title, copy.price, copy.user_id) == ("Concert", Decimal("19.99"), seller)


async def test_a_repeated_ticket_created_changes_nothing(bus: Harness) -> None:
    ticket_id = uuid.uuid4()
    first = TicketCreated(id=ticket_id, title="First", price=Decimal("5"), user_id=SELLER, version=0)
    event_id = await bus.publish(first)
    await bus.wait_handled("ticket.created", 1)
    # The same event redelivered (same event id, past JetStream's duplicate window) ...
    await bus.publish(first, event_id=event_id, msg_id=str(uuid.uuid4()))
    await bus.wait_handled("ticket.created", 1, "duplicate")
    # ... and the same ticket announced again under a new event id, with other data.
    await bus.publish(TicketCreated(id=ticket_id, title="Second", price=Decimal("6"), user_id=SELLER, version=0))
    await bus.wait_handled("ticket.created", 2)

    copy = await bus.ticket(ticket_id)
    assert copy is not None
    assert (copy.title, copy.price, copy.version) == ("First", Decimal("5"), 0)


async def test_updates_apply_only_on_top_of_the_previous_version(bus: Harness) -> None:
    ticket_id = uuid.uuid4()
    history = _history(ticket_id)
    await bus.publish(history[0])
    await _at_version(bus, ticket_id, 0)

    await bus.publish(history[2])  # v2 is ahead of v0: not yet
    await bus.wait_handled("ticket.updated", 1, "not_yet")
    copy = await bus.ticket(ticket_id)
    assert copy is not None
    assert copy.version == 0
    await bus.publish(history[1])

    copy = await _at_version(bus, ticket_id, 2)
    assert (copy.title, copy.price) == ("v2", Decimal("12"))

    await bus.publish(history[1])  # behind: acknowledged without effect
    await bus.wait_handled("ticket.updated", 3)
    copy = await bus.ticket(ticket_id)
    assert copy is not None
    assert (copy.title, copy.version) == ("v2", 2)


async def test_an_update_arriving_before_the_creation_waits_for_it(bus: Harness) -> None:
    ticket_id = uuid.uuid4()
    history = _history(ticket_id)
    await bus.publish(history[1])
    await bus.wait_handled("ticket.updated", 1, "not_yet")
    assert await bus.ticket(ticket_id) is None

    await bus.publish(history[0])

    copy = await _at_version(bus, ticket_id, 1)
    assert copy.title == "v1"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_copy_follows_shuffled_and_duplicated_events_to_the_last_version(bus: Harness, seed: int) -> None:
    ticket_id = uuid.uuid4()
    history = _history(ticket_id)
    # Every event twice: once as published, once republished under a new event id (which neither JetStream's
    # duplicate window nor the inbox can recognise: only the version gate stops it).
    deliveries = [(event, None) for event in history] + [(event, uuid.uuid4()) for event in history]
    random.Random(seed).shuffle(deliveries)
    # ...and one exact redelivery (same event id): the inbox stops this one.
    event_id = uuid.uuid4()
    await bus.publish(history[3], event_id=event_id)
    for event, new_id in deliveries:
        await bus.publish(event, event_id=new_id)
    await bus.publish(history[3], event_id=event_id, msg_id=str(uuid.uuid4()))

    copy = await _at_version(bus, ticket_id, LAST_VERSION)

    assert (copy.title, copy.price, copy.user_id) == ("v5", Decimal("15"), SELLER)
    # Every update was settled once per delivery: applied once per version, the rest acknowledged as stale
    # or recognised as duplicates, none stuck.
    await bus.wait_handled("ticket.updated", 2 * LAST_VERSION + 1)
    await bus.wait_handled("ticket.updated", 1, "duplicate")
    assert bus.handled("ticket.updated", "parked") == 0
    copy = await bus.ticket(ticket_id)
    assert copy is not None
    assert copy.version == LAST_VERSION


async def test_an_update_racing_another_update_of_the_ticket_waits_for_it_then_applies_on_top_of_it(
    bus: Harness,
) -> None:
    ticket_id = uuid.uuid4()
    history = _history(ticket_id)
    await bus.publish(history[0])
    await _at_version(bus, ticket_id, 0)

    async with bus.pool.acquire() as first, bus.pool.acquire() as second:
        first_tx = first.transaction()
        await first_tx.start()
        await apply_ticket_updates(first, [history[1]])
        async with second.transaction():
            # v2, and v1 again (republished): both judged on the copy as the first replica leaves it.
            racing = asyncio.create_task(apply_ticket_updates(second, [history[2], history[1]]))
            await asyncio.sleep(0.2)
            assert not racing.done()  # the copy's row lock makes the replicas take turns
            await first_tx.commit()
            met = {o.version: o.copy_version for o in await racing}
        assert met == {2: 1, 1: 1}  # v2 applied on top of v1; v1 behind

    copy = await _at_version(bus, ticket_id, 2)
    assert copy.title == "v2"


async def test_an_update_of_the_ticket_copy_in_progress_does_not_hold_up_orders_of_that_ticket(
    client: httpx.AsyncClient, bus: Harness
) -> None:
    ticket = await bus.add_ticket()
    update = TicketUpdated(
        id=ticket.id, title="Renamed", price=ticket.price, user_id=ticket.user_id, order_id=None, version=1
    )
    signin(client)

    async with bus.pool.acquire() as conn, conn.transaction():
        await apply_ticket_updates(conn, [update])  # holds the copy's row lock until the block ends
        async with asyncio.timeout(5):
            response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 201
    assert response.json()["ticket"]["title"] == "Concert"  # the copy as committed when the order was placed
