"""The copies of orders and users' emails follow the orders and auth services' events, in version order."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ticketing_common.events import OrderCancelled, OrderStatus, UserUpdated
from ticketing_common.events.catalogue import TicketRef
from ticketing_common.testing import signin, wait_until
from ticketing_payments.queries import Payment

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


async def test_order_created_makes_a_copy_with_owner_price_expiry_and_version(bus: Any) -> None:
    user_id = uuid.uuid4()

    event = await bus.order(user_id=user_id, price="19.99")

    copy = await bus.order_copy(event.id)
    assert (copy.user_id, copy.status, copy.price, copy.version) == (user_id, "created", Decimal("19.99"), 0)
    assert copy.expires_at == event.expires_at
    assert copy.charge_attempt == 0


async def test_order_cancelled_cancels_the_copy(bus: Any) -> None:
    order = await bus.order(user_id=uuid.uuid4())

    await bus.cancel(order, version=1)

    copy = await bus.order_copy(order.id)
    assert (copy.status, copy.version) == (OrderStatus.CANCELLED, 1)


async def test_order_cancelled_arriving_before_order_created_is_applied_once_the_order_exists(
    bus: Any, app: FastAPI
) -> None:
    order_id = uuid.uuid4()
    await bus.publish(OrderCancelled(id=order_id, version=1, ticket=TicketRef(id=uuid.uuid4())))
    await asyncio.sleep(0.3)
    assert await bus.order_copy(order_id) is None  # nothing to cancel yet: told "not yet", redelivered later

    await bus.publish(bus.order_created(user_id=uuid.uuid4(), order_id=order_id))

    copy = await bus.wait_for_order(order_id, status=OrderStatus.CANCELLED, version=1)
    assert copy.version == 1
    assert app.state.metrics.events_handled.labels("order.cancelled", "not_yet")._value.get() >= 1


async def test_a_republished_order_created_does_not_undo_a_cancellation(bus: Any) -> None:
    order = await bus.order(user_id=uuid.uuid4())
    await bus.cancel(order, version=1)

    await bus.publish(order)  # the same payload under a new event id (past the inbox)
    await asyncio.sleep(0.5)

    copy = await bus.order_copy(order.id)
    assert (copy.status, copy.version) == (OrderStatus.CANCELLED, 1)


async def test_a_paid_order_cancelled_later_is_cancelled_in_the_copy_and_refunded_once(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    paid = await client.post("/api/payments", json={"orderId": str(order.id), "token": "tok_visa"})
    assert paid.status_code == 201

    cancelled = await bus.cancel(order, version=1)
    await bus.publish(cancelled)  # redelivered under another event id: still one refund

    again = await client.post("/api/payments", json={"orderId": str(order.id), "token": "tok_visa"})
    assert again.status_code == 400
    assert again.json() == {"errors": [{"message": "Cannot pay for a cancelled order"}]}
    [charge] = await stripe_fake.charges()
    assert (charge["refunded"], charge["amount_refunded"]) == (True, 1999)
    payment = await wait_until(lambda: _refunded_payment(bus, order.id))
    assert str(payment.refund_id).startswith("re_")
    await asyncio.sleep(0.3)
    refunds = [r for r in await stripe_fake.requests() if r["path"] == "/v1/refunds"]
    assert {r["idempotencyKey"] for r in refunds} == {f"refund-{payment.id}"}
    assert sum(1 for r in refunds if not r["replayed"]) == 1


async def test_a_refund_waits_out_a_stripe_outage(client: httpx.AsyncClient, bus: Any, stripe_fake: Any) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    assert (await client.post("/api/payments", json={"orderId": str(order.id), "token": "tok_visa"})).status_code == 201
    await stripe_fake.outage(4)  # more failures than the library retries: the event itself is retried

    await bus.cancel(order, version=1, wait=False)

    payment = await wait_until(lambda: _refunded_payment(bus, order.id), timeout=20)
    assert payment.refunded_at is not None
    [charge] = await stripe_fake.charges()
    assert charge["refunded"] is True


async def test_a_cancelled_order_that_was_never_paid_refunds_nothing(bus: Any, stripe_fake: Any) -> None:
    order = await bus.order(user_id=uuid.uuid4())

    await bus.cancel(order, version=1)

    assert [r for r in await stripe_fake.requests() if r["path"] == "/v1/refunds"] == []


async def _refunded_payment(bus: Any, order_id: uuid.UUID) -> Payment | None:
    payment = await bus.payment(order_id=order_id)
    return payment if payment is not None and payment.refunded_at is not None else None


async def test_user_emails_follow_created_and_updated_even_when_they_arrive_in_reverse(bus: Any) -> None:
    user_id = uuid.uuid4()
    await bus.user(user_id, "third@example.com", version=2)
    await bus.user(user_id, "second@example.com", version=1)
    await bus.user(user_id, "first@example.com", version=0)

    copy = await bus.wait_for_user(user_id, version=2)

    assert copy.email == "third@example.com"


async def test_a_stale_user_updated_changes_nothing(bus: Any) -> None:
    user_id = uuid.uuid4()
    await bus.user(user_id, "first@example.com", version=0)
    await bus.user(user_id, "second@example.com", version=1)
    await bus.wait_for_user(user_id, version=1)

    await bus.publish(UserUpdated(id=user_id, email="stale@example.com", version=1))  # another event, same version
    await asyncio.sleep(0.5)

    copy = await bus.user_copy(user_id)
    assert (copy.email, copy.version) == ("second@example.com", 1)


async def test_a_redelivered_event_is_applied_once(bus: Any, app: FastAPI) -> None:
    user_id = uuid.uuid4()
    await bus.user(user_id, "first@example.com", version=0)
    await bus.wait_for_user(user_id, version=0)
    update = UserUpdated(id=user_id, email="second@example.com", version=1)
    event_id = await bus.publish(update)
    await bus.wait_for_user(user_id, version=1)

    await bus.js.publish(
        update.subject,
        update.model_dump_json(by_alias=True).encode(),
        headers={"ce-id": str(event_id), "Nats-Msg-Id": str(uuid.uuid4())},
    )

    metrics = app.state.metrics

    async def duplicate_seen() -> bool:
        return bool(metrics.events_handled.labels("user.updated", "duplicate")._value.get() == 1)

    async def applied_seen() -> bool:  # counted by its worker, maybe after the other worker's duplicate
        return bool(metrics.events_handled.labels("user.updated", "ok")._value.get() >= 1)

    await wait_until(duplicate_seen)
    await wait_until(applied_seen)
    assert metrics.events_handled.labels("user.updated", "ok")._value.get() == 1


async def test_an_order_cancelled_while_its_payment_is_with_stripe_is_refunded_once_the_payment_commits(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any, app: FastAPI
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    await stripe_fake.delay(1.0)
    paying = asyncio.create_task(client.post("/api/payments", json={"orderId": str(order.id), "token": "tok_visa"}))
    await wait_until(lambda: _sessions(app, state="idle in transaction", query="FOR UPDATE OF o"))

    await bus.cancel(order, version=1, wait=False)
    await wait_until(lambda: _sessions(app, waiting_for="Lock", query="cancelled AS"))  # behind the payment's lock
    assert not paying.done()

    assert (await paying).status_code == 201
    payment = await wait_until(lambda: _refunded_payment(bus, order.id))
    assert str(payment.refund_id).startswith("re_")
    copy = await bus.wait_for_order(order.id, status=OrderStatus.CANCELLED, version=1)
    assert copy.version == 1
    [charge] = await stripe_fake.charges()
    assert charge["refunded"] is True


async def _sessions(app: FastAPI, *, query: str, state: str | None = None, waiting_for: str | None = None) -> int:
    """How many of the database's sessions are in ``state`` / waiting for ``waiting_for``, running ``query``."""
    count: int = await app.state.db.pool.fetchval(
        """
        SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND position($1 IN query) > 0
          AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR wait_event_type = $3)
        """,
        query,
        state,
        waiting_for,
    )
    return count
