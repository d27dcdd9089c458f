"""An order's life, rule by rule: who may order a ticket, and what a cancellation, an expiry or a charge does to
an order in each status. Pure functions: no database, no bus."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from ticketing_common.errors import BadRequestError, NotFoundError
from ticketing_common.events import OrderStatus
from ticketing_orders import domain
from ticketing_orders.queries import Ticket

pytestmark = pytest.mark.unit

CREATED, COMPLETE, CANCELLED = OrderStatus.CREATED, OrderStatus.COMPLETE, OrderStatus.CANCELLED
SELLER, BUYER = uuid.uuid4(), uuid.uuid4()
TICKET = Ticket(id=uuid.uuid4(), title="Concert", price=Decimal("20.00"), user_id=SELLER, version=0)


def test_a_buyer_may_order_someone_elses_free_ticket() -> None:
    assert domain.orderable_ticket(TICKET, buyer=BUYER, held=False) == TICKET


def test_an_unknown_ticket_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="Ticket not found"):
        domain.orderable_ticket(None, buyer=BUYER, held=False)


@pytest.mark.parametrize("held", [False, True])
def test_nobody_may_buy_their_own_ticket_whether_or_not_it_is_held(held: bool) -> None:
    with pytest.raises(BadRequestError, match="You cannot buy your own ticket"):
        domain.orderable_ticket(TICKET, buyer=SELLER, held=held)


def test_a_held_ticket_is_already_reserved() -> None:
    with pytest.raises(BadRequestError, match="Ticket is already reserved"):
        domain.orderable_ticket(TICKET, buyer=BUYER, held=True)


def test_the_buyer_cancels_an_unpaid_order() -> None:
    assert domain.cancelled_by_buyer(CREATED) == CANCELLED


def test_cancelling_a_cancelled_order_has_nothing_to_do() -> None:
    assert domain.cancelled_by_buyer(CANCELLED) is None


def test_a_complete_order_cannot_be_cancelled() -> None:
    with pytest.raises(BadRequestError, match="Cannot cancel a completed order"):
        domain.cancelled_by_buyer(COMPLETE)


@pytest.mark.parametrize(("status", "after"), [(CREATED, CANCELLED), (COMPLETE, None), (CANCELLED, None)])
def test_an_expiry_cancels_only_an_unpaid_order(status: OrderStatus, after: OrderStatus | None) -> None:
    assert domain.cancelled_by_expiry(status) == after


@pytest.mark.parametrize(("status", "after"), [(CREATED, COMPLETE), (COMPLETE, None), (CANCELLED, None)])
def test_a_charge_completes_only_an_unpaid_order(status: OrderStatus, after: OrderStatus | None) -> None:
    assert domain.paid_by_charge(status) == after


@pytest.mark.parametrize(("status", "reason"), [(CANCELLED, "order cancelled"), (COMPLETE, "order already paid")])
def test_a_charge_that_could_not_pay_its_order_is_refunded_for_a_reason(status: OrderStatus, reason: str) -> None:
    assert domain.refund_reason(status) == reason


def test_a_charge_that_pays_its_order_has_no_refund_reason() -> None:
    with pytest.raises(ValueError, match="pays an order"):
        domain.refund_reason(CREATED)


def test_no_event_moves_a_cancelled_or_complete_order() -> None:
    for status in domain.FINAL_STATUSES:
        assert domain.cancelled_by_expiry(status) is None
        assert domain.paid_by_charge(status) is None
