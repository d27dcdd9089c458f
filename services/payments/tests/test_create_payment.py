"""POST /api/payments: an order is charged exactly once, through the official stripe library and the fake Stripe."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.embedded import free_port
from ticketing_common.testing import http_client, running, signin, stream_events, wait_for_events
from ticketing_payments.config import Settings
from ticketing_payments.main import create_app
from ticketing_payments.service import ATTEMPT_IN_DOUBT

# stripe's HTTPXClient hands httpx the encoded form as `data=`; httpx prefers `content=` but sends the same bytes.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

UNAVAILABLE = {"errors": [{"message": "Payment provider unavailable"}]}


async def pay(client: httpx.AsyncClient, order_id: uuid.UUID, card: str = "tok_visa") -> httpx.Response:
    return await client.post("/api/payments", json={"orderId": str(order_id), "token": card})


async def no_charge_event(js: JetStreamContext) -> bool:
    await asyncio.sleep(0.3)  # time for a wrongly written outbox row to be relayed
    return await stream_events(js, "charge.created") == []


# -- the request ----------------------------------------------------------------------------------------------


async def test_returns_401_when_not_signed_in(client: httpx.AsyncClient, bus: Any, stripe_fake: Any) -> None:
    order = await bus.order(user_id=uuid.uuid4())

    response = await pay(client, order.id)

    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not authorized"}]}
    assert await stripe_fake.requests() == []


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {},
            [
                {"message": "Order id is required", "field": "orderId"},
                {"message": "Token is required", "field": "token"},
            ],
        ),
        (
            {"orderId": " ", "token": ""},
            [
                {"message": "Order id is required", "field": "orderId"},
                {"message": "Token is required", "field": "token"},
            ],
        ),
        (
            {"orderId": "not-an-id", "token": "tok_visa"},
            [{"message": "Order id must be a valid id", "field": "orderId"}],
        ),
        ({"orderId": 42, "token": "tok_visa"}, [{"message": "Order id must be a valid id", "field": "orderId"}]),
        (
            {"orderId": str(uuid.uuid4()), "token": 42},
            [{"message": "Token is required", "field": "token"}],
        ),
        (
            {"orderId": str(uuid.uuid4()), "token": "tok\nvisa"},
            [{"message": "Token must be a card token from Stripe", "field": "token"}],
        ),
    ],
)
async def test_returns_400_for_missing_or_invalid_fields(
    client: httpx.AsyncClient, stripe_fake: Any, body: dict[str, Any], errors: list[dict[str, str]]
) -> None:
    signin(client)

    response = await client.post("/api/payments", json=body)

    assert response.status_code == 400
    assert response.json() == {"errors": errors}
    assert await stripe_fake.requests() == []


async def test_returns_400_when_the_order_is_cancelled(client: httpx.AsyncClient, bus: Any, stripe_fake: Any) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    await bus.cancel(order)

    response = await pay(client, order.id)

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Cannot pay for a cancelled order"}]}
    assert await stripe_fake.requests() == []


async def test_returns_400_in_the_last_seconds_of_the_window_without_calling_stripe(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any, settings: Any
) -> None:
    user = signin(client)
    assert settings.payment_cutoff_seconds == 2.0
    order = await bus.order(user_id=user.id, expires_in=timedelta(seconds=1))

    response = await pay(client, order.id)

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Cannot pay for an expired order"}]}
    assert await stripe_fake.requests() == []


async def test_returns_400_when_the_order_has_expired(client: httpx.AsyncClient, bus: Any, stripe_fake: Any) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id, expires_in=timedelta(seconds=-1))

    response = await pay(client, order.id)

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Cannot pay for an expired order"}]}
    assert await stripe_fake.requests() == []


# -- a successful charge ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "cents"),
    [("19.99", 1999), ("0.29", 29), ("4.35", 435), ("20", 2000), ("0.01", 1), ("999999.99", 99999999)],
)
async def test_charges_exactly_the_order_price_in_cents(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any, price: str, cents: int
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id, price=price)

    response = await pay(client, order.id)

    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"],
        "orderId": str(order.id),
        "stripeId": body["stripeId"],
        "amount": cents,
        "currency": "usd",
    }
    intent = await stripe_fake.payment_intent(body["stripeId"])
    assert (intent["status"], intent["amount"], intent["currency"]) == ("succeeded", cents, "usd")
    assert intent["metadata"] == {"order_id": str(order.id)}
    # No user event has arrived for this buyer: the receipt goes to the session's email.
    assert intent["receipt_email"] == user.email
    [charge] = await stripe_fake.charges()
    assert (charge["status"], charge["amount"], charge["payment_intent"]) == ("succeeded", cents, body["stripeId"])


async def test_stores_the_payment_completes_the_order_and_publishes_charge_created(
    client: httpx.AsyncClient, bus: Any, js: JetStreamContext
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id, price="19.99")

    body = (await pay(client, order.id)).json()

    [event] = await wait_for_events(js, "charge.created", 1)
    assert event.data == {
        "id": body["id"],
        "orderId": str(order.id),
        "stripeId": body["stripeId"],
        "amount": 1999,
        "currency": "usd",
    }
    assert event.headers["ce-source"] == "payments"
    payment = await bus.payment(payment_id=uuid.UUID(body["id"]))
    assert payment is not None
    assert (payment.order_id, payment.stripe_id, payment.amount, payment.currency) == (
        order.id,
        body["stripeId"],
        1999,
        "usd",
    )
    copy = await bus.order_copy(order.id)
    assert copy.status == "complete"
    assert copy.version == 0  # the orders service's version: only its events move it


async def test_returns_400_when_the_order_is_already_paid(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any, js: JetStreamContext
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    assert (await pay(client, order.id)).status_code == 201

    again = await pay(client, order.id, "tok_mastercard")

    assert again.status_code == 400
    assert again.json() == {"errors": [{"message": "Order already paid"}]}
    assert len(await stripe_fake.charges()) == 1
    assert len(await stripe_fake.requests()) == 1
    await asyncio.sleep(0.3)
    assert len(await stream_events(js, "charge.created")) == 1


async def test_returns_400_when_the_order_has_a_payment_even_if_its_copy_was_not_completed(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any, app: FastAPI
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    await app.state.db.pool.execute(
        "INSERT INTO payments (id, order_id, stripe_id, amount, currency) VALUES ($1, $2, 'pi_earlier', 1999, 'usd')",
        uuid.uuid4(),
        order.id,
    )

    response = await pay(client, order.id)

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Order already paid"}]}
    assert await stripe_fake.requests() == []


async def test_the_receipt_goes_to_the_buyers_latest_email_from_user_events(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any
) -> None:
    user = signin(client, email="session@example.com")
    await bus.user(user.id, "first@example.com", version=0)
    await bus.user(user.id, "latest@example.com", version=1)
    await bus.wait_for_user(user.id, version=1)
    order = await bus.order(user_id=user.id)

    body = (await pay(client, order.id)).json()

    assert (await stripe_fake.payment_intent(body["stripeId"]))["receipt_email"] == "latest@example.com"


async def test_charges_in_the_currency_of_the_settings(settings: Settings, bus: Any, stripe_fake: Any) -> None:
    euro = create_app(settings.model_copy(update={"currency": "eur"}))
    async with running(euro), http_client(euro) as client:
        user = signin(client)
        order = await bus.order(user_id=user.id, price="12.50")

        response = await pay(client, order.id)

    assert response.status_code == 201
    assert (response.json()["amount"], response.json()["currency"]) == (1250, "eur")
    [charge] = await stripe_fake.charges()
    assert (charge["amount"], charge["currency"]) == (1250, "eur")


# -- refusals -----------------------------------------------------------------------------------------------------


async def test_a_declined_card_is_a_402_with_stripes_message_and_the_order_stays_payable(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any, js: JetStreamContext
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)

    declined = await pay(client, order.id, "tok_chargeDeclined")

    assert declined.status_code == 402
    assert declined.json() == {"errors": [{"message": "Your card was declined."}]}
    assert await bus.payments() == 0
    assert (await bus.order_copy(order.id)).status == "created"
    assert await no_charge_event(js)

    paid = await pay(client, order.id, "tok_visa")

    assert paid.status_code == 201
    assert [c["status"] for c in await stripe_fake.charges()] == ["succeeded", "failed"]
    # Stripe saved the decline under the first key: the second attempt needed (and used) a new one.
    keys = [r["idempotencyKey"] for r in await stripe_fake.requests()]
    assert keys == [f"charge-{order.id}-0", f"charge-{order.id}-1"]
    assert len(await wait_for_events(js, "charge.created", 1)) == 1


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("tok_chargeDeclinedInsufficientFunds", "Your card has insufficient funds."),
        ("tok_chargeDeclinedExpiredCard", "Your card has expired."),
    ],
)
async def test_every_decline_shows_stripes_own_message(
    client: httpx.AsyncClient, bus: Any, token: str, message: str
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)

    response = await pay(client, order.id, token)

    assert response.status_code == 402
    assert response.json() == {"errors": [{"message": message}]}


async def test_a_token_stripe_does_not_know_is_a_400_on_the_token_and_the_order_stays_payable(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)

    refused = await pay(client, order.id, "tok_made_up")

    assert refused.status_code == 400
    assert refused.json() == {"errors": [{"message": "No such token: 'tok_made_up'", "field": "token"}]}
    assert (await pay(client, order.id, "tok_visa")).status_code == 201
    assert len(await stripe_fake.charges()) == 1


# -- retries and idempotency ----------------------------------------------------------------------------------------


async def test_the_library_retries_a_lost_answer_with_the_same_idempotency_key(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    await stripe_fake.outage(1, phase="after")  # Stripe charges, the answer is lost on the way back

    response = await pay(client, order.id)

    assert response.status_code == 201
    requests = await stripe_fake.requests()
    assert [(r["idempotencyKey"], r["status"], r["replayed"]) for r in requests] == [
        (f"charge-{order.id}-0", 500, False),
        (f"charge-{order.id}-0", 200, True),
    ]
    [charge] = await stripe_fake.charges()
    assert charge["payment_intent"] == response.json()["stripeId"]


async def test_a_payment_retried_after_its_answer_was_lost_reuses_the_key_and_charges_once(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any, js: JetStreamContext
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    await stripe_fake.outage(3, phase="after")  # the first request and the library's two retries all lose it

    lost = await pay(client, order.id)

    assert lost.status_code == 503
    assert lost.json() == UNAVAILABLE
    assert await bus.payments() == 0
    assert (await bus.order_copy(order.id)).status == "created"
    [charge] = await stripe_fake.charges()  # Stripe did charge: only its answer never arrived
    assert await no_charge_event(js)

    retried = await pay(client, order.id)

    assert retried.status_code == 201
    assert retried.json()["stripeId"] == charge["payment_intent"]
    assert len(await stripe_fake.charges()) == 1
    requests = await stripe_fake.requests()
    assert {r["idempotencyKey"] for r in requests} == {f"charge-{order.id}-0"}
    assert requests[-1]["replayed"] is True
    assert len(await wait_for_events(js, "charge.created", 1)) == 1


async def test_another_card_is_refused_while_an_earlier_attempt_has_an_unknown_outcome(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    await stripe_fake.outage(3, phase="after")
    assert (await pay(client, order.id, "tok_visa")).status_code == 503

    other_card = await pay(client, order.id, "tok_mastercard")

    assert other_card.status_code == 409
    assert other_card.json() == {"errors": [{"message": ATTEMPT_IN_DOUBT}]}
    assert len(await stripe_fake.charges()) == 1
    # Retrying as told settles it without a second charge.
    assert (await pay(client, order.id, "tok_visa")).status_code == 201
    assert len(await stripe_fake.charges()) == 1


async def test_returns_503_when_stripe_fails_and_nothing_is_stored_and_a_retry_succeeds(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any, js: JetStreamContext
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    await stripe_fake.outage(3, phase="before")

    failed = await pay(client, order.id)

    assert failed.status_code == 503
    assert failed.json() == UNAVAILABLE
    requests = await stripe_fake.requests()
    assert [(r["idempotencyKey"], r["status"]) for r in requests] == [(f"charge-{order.id}-0", 500)] * 3
    assert await stripe_fake.charges() == []
    assert await bus.payments() == 0
    assert await no_charge_event(js)

    retried = await pay(client, order.id)

    assert retried.status_code == 201
    assert (await stripe_fake.requests())[-1]["idempotencyKey"] == f"charge-{order.id}-0"
    assert len(await stripe_fake.charges()) == 1


async def test_returns_503_when_stripe_is_unreachable(
    settings: Settings, client: httpx.AsyncClient, bus: Any, stripe_fake: Any, js: JetStreamContext
) -> None:
    nowhere = create_app(settings.model_copy(update={"stripe_api_base": f"http://127.0.0.1:{free_port()}"}))
    async with running(nowhere), http_client(nowhere) as cut_off:
        user = signin(cut_off)
        order = await bus.order(user_id=user.id)

        response = await pay(cut_off, order.id)

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE
    assert await bus.payments() == 0
    assert await no_charge_event(js)
    signin(client, user_id=user.id, email=user.email)
    assert (await pay(client, order.id)).status_code == 201  # safe to retry once Stripe is back


# -- concurrency ------------------------------------------------------------------------------------------------


async def test_two_concurrent_payments_of_one_order_charge_once(
    client: httpx.AsyncClient, bus: Any, stripe_fake: Any, js: JetStreamContext
) -> None:
    user = signin(client)
    order = await bus.order(user_id=user.id)
    await stripe_fake.delay(0.3)  # the first charge is still running when the second request arrives

    first, second = await asyncio.gather(pay(client, order.id), pay(client, order.id))

    assert sorted([first.status_code, second.status_code]) == [201, 400]
    refused = first if first.status_code == 400 else second
    assert refused.json() == {"errors": [{"message": "Order already paid"}]}
    assert len(await stripe_fake.charges()) == 1
    assert len(await stripe_fake.requests()) == 1  # the second one never reached Stripe
    assert await bus.payments() == 1
    await asyncio.sleep(0.3)
    assert len(await stream_events(js, "charge.created")) == 1


async def test_two_replicas_paying_one_order_at_once_with_different_cards_charge_once(
    settings: Settings, client: httpx.AsyncClient, bus: Any, stripe_fake: Any
) -> None:
    replica = create_app(settings)
    async with running(replica), http_client(replica) as other:
        user = signin(client)
        signin(other, user_id=user.id, email=user.email)
        order = await bus.order(user_id=user.id)
        await stripe_fake.delay(0.3)

        results = await asyncio.gather(pay(client, order.id, "tok_visa"), pay(other, order.id, "tok_mastercard"))

    assert sorted(r.status_code for r in results) == [201, 400]
    assert len(await stripe_fake.charges()) == 1
    assert await bus.payments() == 1
