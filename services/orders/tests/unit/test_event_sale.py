"""Who may order a ticket of an event: its sale must be open, a waiting room lets in only admitted buyers, and a
buyer holds or buys at most maxPerBuyer of its tickets; which refusals are worth a short wait for a copy on its
way; the keys of the waits and of the buyer's lock; which admissions a batch records. Pure functions: no
database, no bus."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ticketing_common.copy_waits import NotCopiedYet
from ticketing_common.errors import BadRequestError, ForbiddenError
from ticketing_common.events import BuyerAdmitted
from ticketing_orders import domain
from ticketing_orders.queries import EventCopy, EventSale, Ticket

pytestmark = pytest.mark.unit

NOW = datetime(2027, 3, 1, 18, 0, tzinfo=UTC)
SELLER, BUYER, EVENT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
TICKET = Ticket(id=uuid.uuid4(), title="Seat", price=Decimal("20"), user_id=SELLER, version=0, event_id=EVENT)
NO_EVENT = Ticket(id=uuid.uuid4(), title="Seat", price=Decimal("20"), user_id=SELLER, version=0)


def sale(
    *,
    on_sale_at: datetime = NOW - timedelta(hours=1),
    max_per_buyer: int = 2,
    waiting_room: bool = False,
    admitted_until: datetime | None = None,
    holds: int = 0,
) -> EventSale:
    event = EventCopy(
        id=EVENT, on_sale_at=on_sale_at, max_per_buyer=max_per_buyer, waiting_room=waiting_room, version=0
    )
    return EventSale(event=event, admitted_until=admitted_until, holds=holds)


def order(
    ticket: Ticket = TICKET, *, on: EventSale | None = None, held: bool = False, buyer: uuid.UUID = BUYER
) -> Ticket:
    return domain.orderable_ticket(ticket, buyer=buyer, held=held, sale=on, now=NOW)


def test_a_buyer_may_order_a_free_ticket_of_an_event_on_sale() -> None:
    assert order(on=sale()) == TICKET


def test_the_sale_opens_at_on_sale_at_exactly() -> None:
    assert order(on=sale(on_sale_at=NOW)) == TICKET
    with pytest.raises(BadRequestError, match=r"^Ticket is not on sale yet$") as refused:
        order(on=sale(on_sale_at=NOW + timedelta(microseconds=1)))
    assert not isinstance(refused.value, NotCopiedYet)  # known: answered at once


@pytest.mark.parametrize("known", [EventSale(), None], ids=["no-copy", "nothing-read"])
def test_without_a_copy_of_the_event_the_ticket_is_not_on_sale_yet_after_a_wait_for_the_copy(
    known: EventSale | None,
) -> None:
    with pytest.raises(domain.EventNotCopiedYet) as refused:
        order(on=known)

    assert (refused.value.status_code, refused.value.message) == (400, "Ticket is not on sale yet")
    assert isinstance(refused.value, NotCopiedYet)
    assert refused.value.copy_key == EVENT


def test_a_waiting_room_refuses_a_buyer_never_admitted_after_a_wait_for_the_admission() -> None:
    with pytest.raises(domain.NotAdmittedYet) as refused:
        order(on=sale(waiting_room=True))

    assert (refused.value.status_code, refused.value.message) == (403, "Join the waiting room first")
    assert isinstance(refused.value, ForbiddenError)
    assert isinstance(refused.value, NotCopiedYet)
    assert refused.value.copy_key == domain.admission_key(EVENT, BUYER)


def test_an_admission_lets_the_buyer_in_until_its_end_exclusive() -> None:
    assert order(on=sale(waiting_room=True, admitted_until=NOW + timedelta(microseconds=1))) == TICKET
    with pytest.raises(domain.NotAdmittedYet):
        order(on=sale(waiting_room=True, admitted_until=NOW))


def test_without_a_waiting_room_no_admission_is_needed() -> None:
    assert order(on=sale(waiting_room=False, admitted_until=None)) == TICKET


@pytest.mark.parametrize(("limit", "message"), [(1, "at most 1 ticket of"), (4, "at most 4 tickets of")])
def test_a_buyer_holding_max_per_buyer_tickets_of_the_event_may_order_no_more(limit: int, message: str) -> None:
    assert order(on=sale(max_per_buyer=limit, holds=limit - 1)) == TICKET
    with pytest.raises(BadRequestError, match=rf"^You may buy {message} this event$"):
        order(on=sale(max_per_buyer=limit, holds=limit))


def test_the_rules_are_checked_in_order_own_ticket_opening_waiting_room_limit_then_reserved() -> None:
    everything_wrong = sale(on_sale_at=NOW + timedelta(hours=1), waiting_room=True, max_per_buyer=1, holds=1)
    with pytest.raises(BadRequestError, match="own ticket"):
        order(on=everything_wrong, held=True, buyer=SELLER)
    with pytest.raises(BadRequestError, match="not on sale yet"):
        order(on=everything_wrong, held=True)
    with pytest.raises(domain.NotAdmittedYet):
        order(on=sale(waiting_room=True, max_per_buyer=1, holds=1), held=True)
    with pytest.raises(BadRequestError, match="at most 1 ticket"):
        order(on=sale(max_per_buyer=1, holds=1), held=True)
    with pytest.raises(BadRequestError, match="already reserved"):
        order(on=sale(), held=True)


def test_a_ticket_of_no_event_ignores_any_sale_as_before() -> None:
    closed = sale(on_sale_at=NOW + timedelta(days=1), waiting_room=True, max_per_buyer=1, holds=5)
    assert order(NO_EVENT, on=closed) == NO_EVENT
    assert order(NO_EVENT, on=None) == NO_EVENT
    with pytest.raises(BadRequestError, match="already reserved"):
        order(NO_EVENT, on=None, held=True)


def test_the_admission_key_names_one_buyer_at_one_event() -> None:
    other = uuid.uuid4()
    assert domain.admission_key(EVENT, BUYER) == domain.admission_key(EVENT, BUYER)
    assert (
        len(
            {domain.admission_key(EVENT, BUYER), domain.admission_key(EVENT, other), domain.admission_key(other, BUYER)}
        )
        == 3
    )
    assert domain.admission_key(EVENT, BUYER) not in (EVENT, BUYER)  # never the key of an event's copy


def test_the_buyers_lock_for_an_event_is_one_signed_64_bit_key_per_pair() -> None:
    keys = {domain.buyer_event_lock_key(uuid.uuid4(), EVENT) for _ in range(1000)}
    assert len(keys) == 1000
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert domain.buyer_event_lock_key(BUYER, EVENT) == domain.buyer_event_lock_key(BUYER, EVENT)
    assert domain.buyer_event_lock_key(BUYER, EVENT) != domain.buyer_event_lock_key(EVENT, BUYER)


def test_a_batch_of_admissions_records_the_latest_of_each_buyer_at_each_event_in_key_order() -> None:
    def admitted(event: uuid.UUID, buyer: uuid.UUID, minutes: int) -> BuyerAdmitted:
        return BuyerAdmitted(
            event_id=event, user_id=buyer, position=minutes, admitted_until=NOW + timedelta(minutes=minutes)
        )

    other_event, other_buyer = uuid.uuid4(), uuid.uuid4()
    batch = [
        admitted(EVENT, BUYER, 10),
        admitted(EVENT, BUYER, 30),
        admitted(EVENT, BUYER, 20),
        admitted(other_event, BUYER, 5),
        admitted(EVENT, other_buyer, 1),
    ]

    kept = domain.latest_admission_of_each_buyer(batch)

    assert {(a.event_id, a.user_id): a.position for a in kept} == {
        (EVENT, BUYER): 30,
        (other_event, BUYER): 5,
        (EVENT, other_buyer): 1,
    }
    assert [(a.event_id, a.user_id) for a in kept] == sorted((a.event_id, a.user_id) for a in kept)
