"""POST /api/orders for a ticket of an event: the sale opens at onSaleAt, a waiting room lets in only admitted
buyers, and a buyer holds or buys at most maxPerBuyer of the event's tickets. A ticket of no event is ordered as
before."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI

from ticketing_common import copy_waits
from ticketing_common.db import utcnow
from ticketing_common.events import EventUpdated, Listener, OrderStatus
from ticketing_common.testing import recorded_statements, signin, wait_until
from ticketing_orders import listeners, queries
from ticketing_orders.config import Settings
from ticketing_orders.queries import insert_order
from ticketing_orders.sale_waits import TOO_MANY_WAITING

if TYPE_CHECKING:
    from conftest import Harness, Replica

NOT_ON_SALE = {"errors": [{"message": "Ticket is not on sale yet"}]}
WAITING_ROOM = {"errors": [{"message": "Join the waiting room first"}]}
RESERVED = {"errors": [{"message": "Ticket is already reserved"}]}
SHORT_WAIT = 0.3
LONG_WAIT = 30.0
WOKEN_WITHIN = 10.0  # far below LONG_WAIT, with no re-check meanwhile: only a wake-up ends the wait in time


def at_most(count: int) -> dict[str, list[dict[str, str]]]:
    return {"errors": [{"message": f"You may buy at most {count} ticket{'' if count == 1 else 's'} of this event"}]}


def order(client: httpx.AsyncClient, ticket_id: uuid.UUID) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(client.post("/api/orders", json={"ticketId": str(ticket_id)}))


@pytest.fixture
def only_wakes_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """No periodic re-check within a test's time: only a wake-up can end a wait early."""
    monkeypatch.setattr(copy_waits, "RECHECK_SECONDS", 60.0)


# The sale's opening


async def test_returns_201_for_a_ticket_of_an_event_on_sale(client: httpx.AsyncClient, bus: Harness) -> None:
    event = await bus.add_event()
    ticket = await bus.add_ticket(event_id=event.id)
    buyer = signin(client)

    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 201
    assert response.json()["userId"] == str(buyer.id)
    assert response.json()["ticket"]["id"] == str(ticket.id)
    assert len(await bus.outbox("order.created")) == 1


async def test_returns_400_when_the_ticket_is_not_on_sale_yet(
    client: httpx.AsyncClient, bus: Harness, settings: Settings
) -> None:
    event = await bus.add_event(on_sale_at=datetime.now(UTC) + timedelta(hours=1))
    ticket = await bus.add_ticket(event_id=event.id)
    signin(client)
    started = time.monotonic()

    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 400
    assert response.json() == NOT_ON_SALE
    assert time.monotonic() - started < settings.order_admission_wait_seconds / 2  # known: no wait
    assert await bus.count_orders() == 0
    assert await bus.outbox("order.created") == []


async def test_returns_201_once_an_update_of_the_event_has_opened_the_sale(
    client: httpx.AsyncClient, bus: Harness
) -> None:
    event = await bus.add_event(on_sale_at=datetime.now(UTC) + timedelta(days=1))
    ticket = await bus.add_ticket(event_id=event.id)
    signin(client)
    assert (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).status_code == 400

    await bus.publish(
        EventUpdated(**event.model_dump(exclude={"on_sale_at", "version"}), on_sale_at=utcnow(), version=1)
    )
    await bus.wait_handled("event.updated", 1)

    assert (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).status_code == 201


async def test_returns_400_not_on_sale_yet_after_a_wait_when_the_tickets_event_never_arrives(
    replica: Replica, bus: Harness
) -> None:
    event = await bus.add_event(copied=False)
    ticket = await bus.add_ticket(event_id=event.id)
    async with replica(order_admission_wait_seconds=SHORT_WAIT) as (_, client):
        signin(client)
        started = time.monotonic()

        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

        assert response.status_code == 400
        assert response.json() == NOT_ON_SALE
        assert time.monotonic() - started >= SHORT_WAIT
    assert await bus.count_orders() == 0


async def test_waits_for_the_copy_of_the_tickets_event_and_places_the_order_once_it_arrives(
    replica: Replica, bus: Harness, only_wakes_count: None
) -> None:
    event = await bus.add_event(copied=False)
    ticket = await bus.add_ticket(event_id=event.id)
    async with replica(order_admission_wait_seconds=LONG_WAIT) as (app, client):
        signin(client)

        request = order(client, ticket.id)
        await bus.waiting(1, app)
        await asyncio.sleep(0.1)
        assert not request.done()
        await bus.publish(event)
        response = await asyncio.wait_for(request, WOKEN_WITHIN)

        assert response.status_code == 201
        assert app.state.sale_waits.waiting == 0


# The waiting room


async def test_returns_403_when_the_event_has_a_waiting_room_and_the_buyer_was_never_admitted(
    replica: Replica, bus: Harness
) -> None:
    event = await bus.add_event(waiting_room=True)
    ticket = await bus.add_ticket(event_id=event.id)
    async with replica(order_admission_wait_seconds=SHORT_WAIT) as (_, client):
        signin(client)
        started = time.monotonic()

        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

        assert response.status_code == 403
        assert response.json() == WAITING_ROOM
        assert time.monotonic() - started >= SHORT_WAIT  # an admission might have been on its way
    assert await bus.count_orders() == 0
    assert await bus.outbox("order.created") == []


async def test_returns_403_when_the_buyers_admission_has_ended(replica: Replica, bus: Harness) -> None:
    event = await bus.add_event(waiting_room=True)
    ticket = await bus.add_ticket(event_id=event.id)
    async with replica(order_admission_wait_seconds=SHORT_WAIT) as (_, client):
        buyer = signin(client)
        await bus.admit(event.id, buyer.id, until=datetime.now(UTC) - timedelta(seconds=1))

        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 403
    assert response.json() == WAITING_ROOM


async def test_returns_403_when_only_someone_else_or_another_event_admitted_the_buyer(
    replica: Replica, bus: Harness
) -> None:
    event, other_event = await bus.add_event(waiting_room=True), await bus.add_event(waiting_room=True)
    ticket = await bus.add_ticket(event_id=event.id)
    async with replica(order_admission_wait_seconds=SHORT_WAIT) as (_, client):
        buyer = signin(client)
        await bus.admit(event.id, uuid.uuid4())  # another buyer
        await bus.admit(other_event.id, buyer.id)  # another event

        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 403
    assert response.json() == WAITING_ROOM


async def test_returns_201_for_an_admitted_buyer_until_the_admission_ends(replica: Replica, bus: Harness) -> None:
    event = await bus.add_event(waiting_room=True)
    tickets = [await bus.add_ticket(event_id=event.id) for _ in range(2)]
    async with replica(order_admission_wait_seconds=SHORT_WAIT) as (_, client):
        buyer = signin(client)
        admission = await bus.admit(event.id, buyer.id, until=datetime.now(UTC) + timedelta(seconds=3))

        first = await client.post("/api/orders", json={"ticketId": str(tickets[0].id)})
        await asyncio.sleep((admission.admitted_until - datetime.now(UTC)).total_seconds() + 0.05)
        second = await client.post("/api/orders", json={"ticketId": str(tickets[1].id)})

    assert first.status_code == 201
    assert second.status_code == 403
    assert second.json() == WAITING_ROOM


async def test_an_order_placed_right_after_the_admission_waits_for_it_and_succeeds(
    replica: Replica, bus: Harness, only_wakes_count: None
) -> None:
    event = await bus.add_event(waiting_room=True)
    ticket = await bus.add_ticket(event_id=event.id)
    async with replica(order_admission_wait_seconds=LONG_WAIT) as (app, client):
        buyer = signin(client)

        request = order(client, ticket.id)  # the buyer was let out: the queue's event is on its way
        await bus.waiting(1, app)
        await asyncio.sleep(0.1)
        assert not request.done()
        await bus.admit(event.id, buyer.id, wait=False)
        response = await asyncio.wait_for(request, WOKEN_WITHIN)

        assert response.status_code == 201
        assert response.json()["userId"] == str(buyer.id)
        assert app.state.sale_waits.waiting == 0


async def test_an_order_placed_right_after_the_admission_succeeds_with_the_default_wait(
    client: httpx.AsyncClient, bus: Harness, settings: Settings
) -> None:
    event = await bus.add_event(waiting_room=True)
    ticket = await bus.add_ticket(event_id=event.id)
    buyer = signin(client)

    request = order(client, ticket.id)
    await asyncio.sleep(0.2)  # the admission follows the request by a moment
    await bus.admit(event.id, buyer.id, wait=False)
    response = await asyncio.wait_for(request, settings.order_admission_wait_seconds + 5)

    assert settings.order_admission_wait_seconds == 3
    assert response.status_code == 201


async def test_an_admission_stored_by_another_replica_wakes_the_waiting_order(
    bus: Harness, replica: Replica, monkeypatch: pytest.MonkeyPatch, only_wakes_count: None
) -> None:
    # This replica consumes no queue.admitted at all: only the fixture's app can store the admission.
    def without_admissions(app: FastAPI) -> Sequence[Listener[Any]]:
        return [
            listener
            for listener in listeners.listeners(app)
            if not isinstance(listener, listeners.BuyerAdmittedListener)
        ]

    event = await bus.add_event(waiting_room=True)
    ticket = await bus.add_ticket(event_id=event.id)
    monkeypatch.setattr("ticketing_orders.main.listeners", without_admissions)
    async with replica(order_admission_wait_seconds=LONG_WAIT) as (waiting_app, client):
        buyer = signin(client)
        request = order(client, ticket.id)
        await bus.waiting(1, waiting_app)

        await bus.admit(event.id, buyer.id, wait=False)
        response = await asyncio.wait_for(request, WOKEN_WITHIN)

    assert response.status_code == 201


async def test_an_order_waits_for_the_events_copy_then_for_the_admission_in_one_wait(
    replica: Replica, bus: Harness, only_wakes_count: None
) -> None:
    event = await bus.add_event(waiting_room=True, copied=False)
    ticket = await bus.add_ticket(event_id=event.id)
    async with replica(order_admission_wait_seconds=LONG_WAIT) as (app, client):
        buyer = signin(client)

        request = order(client, ticket.id)
        await bus.waiting(1, app)
        await bus.publish(event)
        await wait_until(lambda: bus.event_copy(event.id))
        await asyncio.sleep(0.2)
        assert not request.done()  # woken by the event's copy, now waiting for the admission
        assert app.state.sale_waits.waiting == 1
        await bus.admit(event.id, buyer.id, wait=False)
        response = await asyncio.wait_for(request, WOKEN_WITHIN)

        assert response.status_code == 201


async def test_answers_503_when_too_many_orders_are_waiting(replica: Replica, bus: Harness) -> None:
    event = await bus.add_event(waiting_room=True)
    tickets = [await bus.add_ticket(event_id=event.id) for _ in range(3)]
    async with replica(order_admission_wait_seconds=30, order_admission_waiters=2) as (app, client):
        signin(client)
        first, second = order(client, tickets[0].id), order(client, tickets[1].id)
        await bus.waiting(2, app)

        over = await client.post("/api/orders", json={"ticketId": str(tickets[2].id)})

        assert over.status_code == 503
        assert over.json() == {"errors": [{"message": TOO_MANY_WAITING}]}
        assert over.headers["Retry-After"] == "1"
        first.cancel()
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)


async def test_a_waiting_order_holds_no_database_connection(
    replica: Replica, bus: Harness, only_wakes_count: None
) -> None:
    waiting_room = await bus.add_event(waiting_room=True)
    open_sale = await bus.add_event()
    waiting_tickets = [await bus.add_ticket(event_id=waiting_room.id) for _ in range(3)]
    ticket = await bus.add_ticket(event_id=open_sale.id)
    async with replica(database_pool_size=1, order_admission_wait_seconds=30) as (app, client):
        signin(client)
        waiters = [order(client, t.id) for t in waiting_tickets]
        await bus.waiting(3, app)

        placed = await asyncio.wait_for(client.post("/api/orders", json={"ticketId": str(ticket.id)}), 5)

        assert placed.status_code == 201  # through the one pooled connection, while all three still wait
        assert app.state.sale_waits.waiting == 3
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


# The limit per buyer


async def test_returns_400_when_the_buyer_already_holds_max_per_buyer_tickets_of_the_event(
    client: httpx.AsyncClient, bus: Harness
) -> None:
    event = await bus.add_event(max_per_buyer=2)
    tickets = [await bus.add_ticket(event_id=event.id) for _ in range(3)]
    signin(client)
    for ticket in tickets[:2]:
        assert (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).status_code == 201

    response = await client.post("/api/orders", json={"ticketId": str(tickets[2].id)})

    assert response.status_code == 400
    assert response.json() == at_most(2)
    assert await bus.count_orders() == 2
    assert len(await bus.outbox("order.created")) == 2


async def test_returns_400_when_the_buyer_bought_the_one_ticket_allowed(
    client: httpx.AsyncClient, bus: Harness
) -> None:
    event = await bus.add_event(max_per_buyer=1)
    first, second = await bus.add_ticket(event_id=event.id), await bus.add_ticket(event_id=event.id)
    signin(client)
    bought = (await client.post("/api/orders", json={"ticketId": str(first.id)})).json()
    await bus.set_status(bought["id"], OrderStatus.COMPLETE)

    response = await client.post("/api/orders", json={"ticketId": str(second.id)})

    assert response.status_code == 400
    assert response.json() == at_most(1)


async def test_cancelled_and_expired_orders_do_not_count_toward_the_limit(
    client: httpx.AsyncClient, bus: Harness
) -> None:
    event = await bus.add_event(max_per_buyer=1)
    tickets = [await bus.add_ticket(event_id=event.id) for _ in range(3)]
    signin(client)
    cancelled = (await client.post("/api/orders", json={"ticketId": str(tickets[0].id)})).json()
    assert (await client.delete(f"/api/orders/{cancelled['id']}")).status_code == 204
    lapsed = await client.post("/api/orders", json={"ticketId": str(tickets[1].id)})
    assert lapsed.status_code == 201
    # Its time is up, and order.expired has not been handled yet: the ticket is still held, the buyer is free.
    await bus.pool.execute(
        "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1", uuid.UUID(lapsed.json()["id"])
    )

    response = await client.post("/api/orders", json={"ticketId": str(tickets[2].id)})

    assert response.status_code == 201


async def test_the_limit_counts_one_buyers_tickets_of_one_event(client: httpx.AsyncClient, bus: Harness) -> None:
    event, other_event = await bus.add_event(max_per_buyer=1), await bus.add_event(max_per_buyer=1)
    first, second = await bus.add_ticket(event_id=event.id), await bus.add_ticket(event_id=event.id)
    of_other_event, of_no_event = await bus.add_ticket(event_id=other_event.id), await bus.add_ticket()
    signin(client)
    assert (await client.post("/api/orders", json={"ticketId": str(first.id)})).status_code == 201

    assert (await client.post("/api/orders", json={"ticketId": str(of_other_event.id)})).status_code == 201
    assert (await client.post("/api/orders", json={"ticketId": str(of_no_event.id)})).status_code == 201
    signin(client)  # another buyer
    assert (await client.post("/api/orders", json={"ticketId": str(second.id)})).status_code == 201


async def test_a_ticket_held_by_someone_else_is_reserved_once_the_sale_rules_pass(
    client: httpx.AsyncClient, bus: Harness
) -> None:
    event = await bus.add_event()
    ticket = await bus.add_ticket(event_id=event.id)
    signin(client)
    assert (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).status_code == 201
    signin(client)

    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 400
    assert response.json() == RESERVED


# Tickets of no event, and the statements


async def test_tickets_of_no_event_have_no_limit_no_opening_and_no_waiting_room(
    client: httpx.AsyncClient, bus: Harness
) -> None:
    await bus.add_event(max_per_buyer=1, waiting_room=True, on_sale_at=datetime.now(UTC) + timedelta(days=1))
    tickets = [await bus.add_ticket() for _ in range(5)]
    signin(client)
    started = time.monotonic()

    responses = [await client.post("/api/orders", json={"ticketId": str(t.id)}) for t in tickets]

    assert [r.status_code for r in responses] == [201] * 5
    assert time.monotonic() - started < 2.0  # never waited


async def test_an_order_of_an_event_ticket_takes_the_buyers_lock_then_is_decided_by_the_insert(
    app: FastAPI, client: httpx.AsyncClient, bus: Harness
) -> None:
    event = await bus.add_event()
    ticket = await bus.add_ticket(event_id=event.id)
    signin(client)

    async with recorded_statements(app) as sent:
        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 201
    assert sent[:3] == [queries.FIND_TICKET_FOR_ORDER, "BEGIN;", queries.LOCK_BUYER_AT_EVENT]
    assert [s.split()[0] for s in sent[3:]] == ["WITH", "COMMIT;"]  # the insert writes order.created too


async def test_an_attempt_on_a_held_ticket_of_an_event_is_still_refused_by_one_read(
    app: FastAPI, client: httpx.AsyncClient, bus: Harness
) -> None:
    event = await bus.add_event(waiting_room=True)
    ticket = await bus.add_ticket(event_id=event.id)
    first = signin(client)
    await bus.admit(event.id, first.id)
    assert (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).status_code == 201
    second = signin(client)
    await bus.admit(event.id, second.id)

    async with recorded_statements(app) as sent:
        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.json() == RESERVED
    assert sent == [queries.FIND_TICKET_FOR_ORDER]


async def test_the_insert_alone_decides_each_rule_of_the_sale(bus: Harness) -> None:
    now = utcnow()
    later = await bus.add_event(on_sale_at=now + timedelta(hours=1))
    room = await bus.add_event(waiting_room=True)
    limited = await bus.add_event(max_per_buyer=1)
    of_later, of_room = await bus.add_ticket(event_id=later.id), await bus.add_ticket(event_id=room.id)
    limited_tickets = [await bus.add_ticket(event_id=limited.id) for _ in range(2)]
    uncopied = await bus.add_ticket(event_id=uuid.uuid4())
    buyer, admitted = uuid.uuid4(), uuid.uuid4()
    await bus.admit(room.id, admitted)

    async with bus.pool.acquire() as conn, conn.transaction():

        async def place(ticket_id: uuid.UUID, event_id: uuid.UUID | None, who: uuid.UUID = buyer) -> bool:
            attempt = await insert_order(
                conn,
                order_id=uuid.uuid4(),
                user_id=who,
                ticket_id=ticket_id,
                expires_at=now + timedelta(minutes=15),
                now=now,
                event_id=event_id,
            )
            return attempt.inserted

        # Refusals are results, not errors: each leaves the transaction usable for the next.
        assert not await place(of_later.id, later.id)  # not on sale yet
        assert not await place(uncopied.id, uncopied.event_id)  # the event's copy is missing
        assert not await place(of_room.id, room.id)  # not admitted
        assert await place(of_room.id, room.id, admitted)
        assert await place(limited_tickets[0].id, limited.id)
        assert not await place(limited_tickets[1].id, limited.id)  # at the limit
        assert not await place(limited_tickets[1].id, None)  # not the event whose lock is held
        assert await place(limited_tickets[1].id, limited.id, admitted)
