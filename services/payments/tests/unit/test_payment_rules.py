"""The payments service's rules on their own, no server: when an order may be charged, what each of Stripe's
refusals answers, the idempotency key of an attempt, and which events of a batch make the copies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ticketing_common.errors import CustomError
from ticketing_common.events import OrderCreated, OrderStatus
from ticketing_common.events.catalogue import OrderTicket
from ticketing_payments.order_waits import OrderNotCopiedYet
from ticketing_payments.queries import OrderToPay
from ticketing_payments.service import (
    ATTEMPT_IN_DOUBT,
    PROVIDER_UNAVAILABLE,
    StripeOutcome,
    check_payable,
    first_event_per_order,
    idempotency_key,
    refusal_of,
)
from ticketing_payments.stripe_gateway import AttemptInDoubt, CardDeclined, ChargeRefused, ProviderUnavailable

pytestmark = pytest.mark.unit

BUYER, SOMEONE_ELSE = uuid.UUID(int=1), uuid.UUID(int=2)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CUTOFF = timedelta(seconds=2)


def an_order(
    *,
    user_id: uuid.UUID = BUYER,
    status: str = OrderStatus.CREATED,
    expires_in: timedelta = timedelta(minutes=15),
    paid: bool = False,
) -> OrderToPay:
    return OrderToPay(
        user_id=user_id,
        status=status,
        price=Decimal("19.99"),
        expires_at=NOW + expires_in,
        charge_attempt=0,
        paid=paid,
        buyer_email=None,
    )


def answer(error: CustomError) -> tuple[int, list[dict[str, str]]]:
    return error.status_code, [dict(item) for item in error.serialize()]


def refusal(order: OrderToPay | None) -> tuple[int, list[dict[str, str]]]:
    with pytest.raises(CustomError) as refused:
        check_payable(order, buyer_id=BUYER, now=NOW, cutoff=CUTOFF)
    return answer(refused.value)


# -- when an order may be charged --------------------------------------------------------------------------------


def test_the_buyers_open_order_may_be_charged() -> None:
    order = an_order()
    assert check_payable(order, buyer_id=BUYER, now=NOW, cutoff=CUTOFF) is order


def test_an_order_without_a_copy_yet_is_not_found_and_may_be_waited_for() -> None:
    with pytest.raises(OrderNotCopiedYet):
        check_payable(None, buyer_id=BUYER, now=NOW, cutoff=CUTOFF)


def test_another_buyers_order_is_not_found_whatever_its_state_and_is_never_waited_for() -> None:
    order = an_order(user_id=SOMEONE_ELSE, status=OrderStatus.CANCELLED, expires_in=-timedelta(hours=1))
    with pytest.raises(CustomError) as refused:
        check_payable(order, buyer_id=BUYER, now=NOW, cutoff=CUTOFF)
    assert not isinstance(refused.value, OrderNotCopiedYet)
    assert answer(refused.value) == (404, [{"message": "Order not found"}])


def test_a_cancelled_order_is_refused_before_its_expiry_is_looked_at() -> None:
    order = an_order(status=OrderStatus.CANCELLED, expires_in=-timedelta(hours=1))
    assert refusal(order) == (400, [{"message": "Cannot pay for a cancelled order"}])


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(an_order(status=OrderStatus.COMPLETE), id="complete"),
        pytest.param(an_order(paid=True), id="a-payment-but-the-copy-not-complete"),
    ],
)
def test_a_paid_order_is_refused(order: OrderToPay) -> None:
    assert refusal(order) == (400, [{"message": "Order already paid"}])


@pytest.mark.parametrize(
    "expires_in",
    [-timedelta(seconds=1), timedelta(0), CUTOFF, timedelta(seconds=1)],
    ids=["expired", "expiring-now", "at-the-cutoff", "within-the-cutoff"],
)
def test_no_charge_starts_once_the_order_is_within_the_cutoff_of_its_expiry(expires_in: timedelta) -> None:
    assert refusal(an_order(expires_in=expires_in)) == (400, [{"message": "Cannot pay for an expired order"}])


def test_a_charge_may_start_just_before_the_cutoff() -> None:
    order = an_order(expires_in=CUTOFF + timedelta(milliseconds=1))
    assert check_payable(order, buyer_id=BUYER, now=NOW, cutoff=CUTOFF) is order


# -- Stripe's refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (CardDeclined("Your card has insufficient funds."), (402, [{"message": "Your card has insufficient funds."}])),
        (
            ChargeRefused("No such token: 'tok_x'", "payment_method_data[card][token]"),
            (400, [{"message": "No such token: 'tok_x'", "field": "token"}]),
        ),
        (ChargeRefused("Amount too small", "amount"), (400, [{"message": "Amount too small"}])),
        (ChargeRefused("Invalid request", None), (400, [{"message": "Invalid request"}])),
        (AttemptInDoubt("keys"), (409, [{"message": ATTEMPT_IN_DOUBT}])),
        (ProviderUnavailable(), (503, [{"message": PROVIDER_UNAVAILABLE}])),
    ],
)
def test_each_charge_stripe_did_not_make_has_its_answer(
    outcome: StripeOutcome, expected: tuple[int, list[dict[str, str]]]
) -> None:
    assert answer(refusal_of(outcome)) == expected


def test_every_retry_of_an_attempt_sends_the_same_key_and_the_next_attempt_another() -> None:
    order_id = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
    assert idempotency_key(order_id, 0) == idempotency_key(order_id, 0) == f"charge-{order_id}-0"
    assert idempotency_key(order_id, 1) != idempotency_key(order_id, 0)


# -- batches of order.created ------------------------------------------------------------------------------------


def order_created(order_id: uuid.UUID, price: str) -> OrderCreated:
    return OrderCreated(
        id=order_id,
        status=OrderStatus.CREATED,
        user_id=BUYER,
        expires_at=NOW,
        version=0,
        ticket=OrderTicket(id=uuid.uuid4(), price=Decimal(price)),
    )


def test_a_batch_copies_the_first_event_of_each_order_as_one_by_one_would() -> None:
    first, other = uuid.uuid4(), uuid.uuid4()
    events = [order_created(first, "1"), order_created(other, "2"), order_created(first, "3")]
    copied = first_event_per_order(events)
    assert [(e.id, e.ticket.price) for e in copied] == [(first, Decimal(1)), (other, Decimal(2))]
