"""order.created and order.cancelled applied in batches: a batch of distinct tickets is applied set-based in one
transaction, with exactly the effects of applying its events one by one (each ticket changed once, its version
bumped once, one ticket.updated with that version); a batch the set-based path does not take raises, and the
listener runner replays it one event at a time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.db import UnitOfWork
from ticketing_common.embedded import EmbeddedNats
from ticketing_common.events import Event, Listener, NotYet
from ticketing_common.events.bus import ensure_stream
from ticketing_common.events.listener import ListenerRunner
from ticketing_common.testing import reset_stream, signin
from ticketing_tickets import service
from ticketing_tickets.listeners import OrderCancelledListener, OrderCreatedListener
from ticketing_tickets.service import NotInOneGo


async def _state(stored, ticket_id: str | uuid.UUID) -> tuple[uuid.UUID | None, int]:
    ticket = await stored(ticket_id)
    assert ticket is not None
    return ticket.order_id, ticket.version


async def _edit(client: httpx.AsyncClient, ticket_id: str, times: int) -> None:
    for i in range(times):
        response = await client.put(f"/api/tickets/{ticket_id}", json={"title": f"edit {i}", "price": 5})
        assert response.status_code == 200


async def _hold(app: FastAPI, order_id: uuid.UUID, ticket_id: str | uuid.UUID) -> None:
    async with app.state.db.unit_of_work() as uow:
        await service.hold_for_order(uow=uow, order_id=order_id, ticket_id=uuid.UUID(str(ticket_id)))


async def _cancel(app: FastAPI, order_id: uuid.UUID, ticket_id: str | uuid.UUID) -> None:
    async with app.state.db.unit_of_work() as uow:
        await service.release_for_order(uow=uow, order_id=order_id, ticket_id=uuid.UUID(str(ticket_id)))


async def _apply(app: FastAPI, apply: str, orders: list[tuple[uuid.UUID, uuid.UUID]], *, in_one_go: bool) -> None:
    """Apply ``order.created`` (``apply="hold"``) or ``order.cancelled`` events in one unit of work, set-based
    or one by one."""
    async with app.state.db.unit_of_work() as uow:
        if in_one_go:
            await getattr(service, f"{apply}_for_orders")(uow=uow, orders=orders)
        else:
            for order_id, ticket_id in orders:
                await getattr(service, f"{apply}_for_order")(uow=uow, order_id=order_id, ticket_id=ticket_id)


async def _tombstones(app: FastAPI) -> set[uuid.UUID]:
    rows = await app.state.db.pool.fetch("SELECT order_id FROM cancelled_orders")
    return {row["order_id"] for row in rows}


def _ids(*tickets: dict[str, Any]) -> list[uuid.UUID]:
    return [uuid.UUID(t["id"]) for t in tickets]


@pytest.mark.parametrize("in_one_go", [True, False], ids=["in-one-go", "one-by-one"])
async def test_holding_tickets_in_one_go_has_exactly_the_effects_of_holding_them_one_by_one(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, stored, published, in_one_go: bool
) -> None:
    signin(client)
    free, edited, held_already, cancelled_order = [await make_ticket(f"T{i}", 10) for i in range(4)]
    await _edit(client, edited["id"], 2)
    orders = [uuid.uuid4() for _ in range(4)]
    await _hold(app, orders[2], held_already["id"])  # the same order.created again, under a new event id
    await _cancel(app, orders[3], cancelled_order["id"])  # its cancellation arrived before its creation

    await _apply(
        app,
        "hold",
        list(zip(orders, _ids(free, edited, held_already, cancelled_order), strict=True)),
        in_one_go=in_one_go,
    )

    assert await _state(stored, free["id"]) == (orders[0], 1)
    assert await _state(stored, edited["id"]) == (orders[1], 3)
    assert await _state(stored, held_already["id"]) == (orders[2], 1)
    assert await _state(stored, cancelled_order["id"]) == (None, 0)
    events = [(e.data["id"], e.data["orderId"], e.data["version"]) for e in await published("ticket.updated")]
    assert events == [
        (edited["id"], None, 1),
        (edited["id"], None, 2),
        (held_already["id"], str(orders[2]), 1),
        (free["id"], str(orders[0]), 1),
        (edited["id"], str(orders[1]), 3),
    ]
    shown = (await client.get(f"/api/tickets/{edited['id']}")).json()
    assert (shown["orderId"], shown["version"], shown["title"]) == (str(orders[1]), 3, "edit 1")


@pytest.mark.parametrize("in_one_go", [True, False], ids=["in-one-go", "one-by-one"])
async def test_releasing_tickets_in_one_go_has_exactly_the_effects_of_releasing_them_one_by_one(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, stored, published, in_one_go: bool
) -> None:
    signin(client)
    held, held_by_another, free = [await make_ticket(f"T{i}", 10) for i in range(3)]
    unknown = uuid.uuid4()
    orders = [uuid.uuid4() for _ in range(4)]
    other_order = uuid.uuid4()
    await _hold(app, orders[0], held["id"])
    await _hold(app, other_order, held_by_another["id"])

    releases = list(zip(orders, [*_ids(held, held_by_another, free), unknown], strict=True))
    await _apply(app, "release", releases, in_one_go=in_one_go)

    assert await _state(stored, held["id"]) == (None, 2)
    assert await _state(stored, held_by_another["id"]) == (other_order, 1)
    assert await _state(stored, free["id"]) == (None, 0)
    assert await _tombstones(app) == set(orders)  # every cancelled order is remembered, known ticket or not
    events = [(e.data["id"], e.data["orderId"], e.data["version"]) for e in await published("ticket.updated")]
    assert events == [
        (held["id"], str(orders[0]), 1),
        (held_by_another["id"], str(other_order), 1),
        (held["id"], None, 2),
    ]


@pytest.mark.parametrize(
    ("apply", "shape", "error"),
    [
        pytest.param("hold", "same-ticket-twice", NotInOneGo, id="hold-a-ticket-twice"),
        pytest.param("hold", "unknown-ticket", NotInOneGo, id="hold-an-unknown-ticket"),
        pytest.param("hold", "held-by-another", NotYet, id="hold-a-ticket-another-order-holds"),
        pytest.param("release", "same-ticket-twice", NotInOneGo, id="release-a-ticket-twice"),
        pytest.param("release", "same-order-twice", NotInOneGo, id="cancel-an-order-twice"),
    ],
)
async def test_a_batch_the_set_based_path_does_not_take_raises_and_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, stored, apply: str, shape: str, error: type[Exception]
) -> None:
    signin(client)
    plain, other = _ids(await make_ticket("plain", 10), await make_ticket("other", 10))
    holder = uuid.uuid4()
    await _hold(app, holder, other)
    if apply == "release":
        await _hold(app, (order := uuid.uuid4()), plain)
    else:
        order = uuid.uuid4()
    batch = {
        "same-ticket-twice": [(order, plain), (uuid.uuid4(), other), (uuid.uuid4(), plain)],
        "unknown-ticket": [(order, plain), (uuid.uuid4(), uuid.uuid4())],
        "held-by-another": [(order, plain), (uuid.uuid4(), other)],
        "same-order-twice": [(order, plain), (order, other)],
    }[shape]
    before = (await _state(stored, plain), await _tombstones(app))
    outbox = await app.state.db.pool.fetchval("SELECT count(*) FROM outbox")

    with pytest.raises(error):
        async with app.state.db.unit_of_work() as uow:
            await getattr(service, f"{apply}_for_orders")(uow=uow, orders=batch)

    assert (await _state(stored, plain), await _tombstones(app)) == before
    assert await _state(stored, other) == (holder, 1)
    assert await app.state.db.pool.fetchval("SELECT count(*) FROM outbox") == outbox


# Through a listener runner driven by hand, on a NATS server of the tests' own: the app's own listeners (on the
# session's server) never see these events, so each batch is exactly the messages a test hands over.

STREAM = "TICKETING"


@pytest.fixture(scope="module")
def side_nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedNats(tmp_path_factory.mktemp("side-nats"))
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
async def side_js(side_nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(side_nats_url)
    js = nc.jetstream()
    await reset_stream(js, STREAM)
    await ensure_stream(js, STREAM)
    try:
        yield js
    finally:
        await nc.close()


@dataclass
class Calls:
    """How a listener was called: the size of each batch it was given, and how many single events."""

    batches: list[int] = field(default_factory=list)
    singles: int = 0


def recording(listener_class: type[Listener[Any]]) -> tuple[Listener[Any], Calls]:
    calls = Calls()

    class Recording(listener_class):  # type: ignore[valid-type,misc]
        async def handle_batch(self, events: Any, uow: UnitOfWork) -> None:
            calls.batches.append(len(events))
            await super().handle_batch(events, uow)

        async def handle(self, event: Any, uow: UnitOfWork) -> None:
            calls.singles += 1
            await super().handle(event, uow)

    return Recording(), calls


@dataclass
class HandRunner:
    """A listener runner of the app's database, fed one batch at a time from the side NATS server."""

    app: FastAPI
    js: JetStreamContext
    orders: Any

    async def batch(
        self, listener: Listener[Any], events: list[Event | tuple[Event, uuid.UUID]]
    ) -> tuple[list[str], list[uuid.UUID]]:
        """Publish ``events`` (an event, or an event and the id of an earlier delivery of it), hand them to a
        runner of ``listener`` as one batch; returns each one's outcome and event id."""
        runner = ListenerRunner(
            listener,
            service=self.app.state.settings.service_name,
            js=self.js,
            stream=STREAM,
            db=self.app.state.db,
            max_deliveries=self.app.state.settings.event_max_deliveries,
        )
        await self.js.add_consumer(STREAM, runner.consumer_config())
        event_ids = []
        for item in events:
            event, event_id = item if isinstance(item, tuple) else (item, None)
            # A redelivery is stored again under another dedup id, as past JetStream's duplicate window.
            dedup = str(uuid.uuid4()) if event_id is not None else None
            event_ids.append(await self.orders.publish(event, event_id=event_id, dedup_id=dedup))
        subscription = await self.js.pull_subscribe_bind(runner.consumer, stream=STREAM)
        messages: list[Any] = []
        while len(messages) < len(events):
            messages += await subscription.fetch(len(events) - len(messages), timeout=5)
        await subscription.unsubscribe()
        return await runner.process_batch(messages), event_ids


@pytest.fixture
def hand(app: FastAPI, side_js: JetStreamContext, orders: Any) -> HandRunner:
    return HandRunner(app, side_js, type(orders)(side_js))  # the conftest's order publisher, on the side server


async def test_a_batch_of_order_created_is_applied_in_one_go_with_one_ticket_updated_per_change(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published, hand: HandRunner
) -> None:
    signin(client)
    tickets = [await make_ticket(f"T{i}", 10) for i in range(5)]
    await _edit(client, tickets[0]["id"], 1)
    events = [orders.created_event(t["id"]) for t in tickets]
    listener, calls = recording(OrderCreatedListener)

    outcomes, _ = await hand.batch(listener, events)

    assert outcomes == ["ok"] * 5
    assert (calls.batches, calls.singles) == ([5], 0)
    for ticket, event in zip(tickets, events, strict=True):
        assert await _state(stored, ticket["id"]) == (event.id, 2 if ticket is tickets[0] else 1)
    held = [e.data for e in await published("ticket.updated") if e.data["orderId"] is not None]
    assert [(e["id"], e["orderId"], e["version"]) for e in held] == [
        (t["id"], str(e.id), 2 if t is tickets[0] else 1) for t, e in zip(tickets, events, strict=True)
    ]
    shown = [(await client.get(f"/api/tickets/{t['id']}")).json() for t in tickets]
    assert [s["orderId"] for s in shown] == [str(e.id) for e in events]  # the read model follows the commit


async def test_a_batch_naming_a_ticket_twice_is_replayed_one_event_at_a_time(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published, hand: HandRunner
) -> None:
    signin(client)
    first, second = [await make_ticket(f"T{i}", 10) for i in range(2)]
    # The orders service let a second order take the first ticket; this batch got it before its cancellation.
    events = [orders.created_event(first["id"]), orders.created_event(second["id"]), orders.created_event(first["id"])]
    listener, calls = recording(OrderCreatedListener)

    outcomes, event_ids = await hand.batch(listener, events)

    assert outcomes == ["ok", "ok", "not_yet"]
    assert (calls.batches, calls.singles) == ([3], 3)
    assert await _state(stored, first["id"]) == (events[0].id, 1)
    assert await _state(stored, second["id"]) == (events[1].id, 1)
    assert sorted((e.data["id"], e.data["version"]) for e in await published("ticket.updated")) == sorted(
        [(first["id"], 1), (second["id"], 1)]
    )
    claimed = await app.state.db.pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE event_id = $1", str(event_ids[2])
    )
    assert claimed == 0  # redelivered later, when the first order has let go


async def test_a_batch_with_an_unknown_ticket_applies_the_other_events_one_at_a_time(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, hand: HandRunner
) -> None:
    signin(client)
    first, second = [await make_ticket(f"T{i}", 10) for i in range(2)]
    events = [orders.created_event(first["id"]), orders.created_event(uuid.uuid4()), orders.created_event(second["id"])]
    listener, calls = recording(OrderCreatedListener)

    outcomes, _ = await hand.batch(listener, events)

    assert outcomes == ["ok", "retry", "ok"]
    assert (calls.batches, calls.singles) == ([3], 3)
    assert await _state(stored, first["id"]) == (events[0].id, 1)
    assert await _state(stored, second["id"]) == (events[2].id, 1)


async def test_a_batch_with_redelivered_events_applies_each_event_once(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published, hand: HandRunner
) -> None:
    signin(client)
    earlier, first, second = [await make_ticket(f"T{i}", 10) for i in range(3)]
    listener, calls = recording(OrderCreatedListener)
    applied_before = orders.created_event(earlier["id"])
    [outcome], [applied_id] = await hand.batch(listener, [applied_before])
    assert outcome == "ok"
    to_first, to_second = orders.created_event(first["id"]), orders.created_event(second["id"])
    first_id = uuid.uuid4()

    outcomes, _ = await hand.batch(
        listener, [(applied_before, applied_id), (to_first, first_id), to_second, (to_first, first_id)]
    )

    assert outcomes == ["duplicate", "ok", "ok", "duplicate"]
    assert (calls.batches, calls.singles) == ([2], 1)
    for ticket, event in ((earlier, applied_before), (first, to_first), (second, to_second)):
        assert await _state(stored, ticket["id"]) == (event.id, 1)
    assert sorted(e.data["id"] for e in await published("ticket.updated")) == sorted(
        t["id"] for t in (earlier, first, second)
    )


async def test_a_batch_of_order_cancelled_releases_in_one_go_what_its_orders_hold(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published, hand: HandRunner
) -> None:
    signin(client)
    held, never_held, also_held = [await make_ticket(f"T{i}", 10) for i in range(3)]
    held_by, early, also_held_by = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _hold(app, held_by, held["id"])
    await _hold(app, also_held_by, also_held["id"])
    events = [
        orders.cancelled_event(held["id"], held_by),
        orders.cancelled_event(never_held["id"], early),  # before its order.created
        orders.cancelled_event(also_held["id"], also_held_by),
    ]
    listener, calls = recording(OrderCancelledListener)

    outcomes, _ = await hand.batch(listener, events)

    assert outcomes == ["ok"] * 3
    assert (calls.batches, calls.singles) == ([3], 0)
    assert await _state(stored, held["id"]) == (None, 2)
    assert await _state(stored, never_held["id"]) == (None, 0)
    assert await _state(stored, also_held["id"]) == (None, 2)
    released = [(e.data["id"], e.data["version"]) for e in await published("ticket.updated") if e.data["version"] == 2]
    assert released == [(held["id"], 2), (also_held["id"], 2)]

    # The late order.created of the order cancelled first changes nothing.
    created, _ = await hand.batch(OrderCreatedListener(), [orders.created_event(never_held["id"], early)])
    assert created == ["ok"]
    assert await _state(stored, never_held["id"]) == (None, 0)


async def test_a_cancellation_republished_in_the_same_batch_is_applied_once(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published, hand: HandRunner
) -> None:
    signin(client)
    ticket = await make_ticket()
    order_id = uuid.uuid4()
    await _hold(app, order_id, ticket["id"])
    # The same cancellation under two event ids (the orders outbox replayed): one ticket twice in the batch.
    events = [orders.cancelled_event(ticket["id"], order_id), orders.cancelled_event(ticket["id"], order_id)]
    listener, calls = recording(OrderCancelledListener)

    outcomes, _ = await hand.batch(listener, events)

    assert outcomes == ["ok", "ok"]
    assert (calls.batches, calls.singles) == ([2], 2)
    assert await _state(stored, ticket["id"]) == (None, 2)
    assert [e.data["version"] for e in await published("ticket.updated")] == [1, 2]
