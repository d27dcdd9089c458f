"""The tickets service's rules on their own, no server: what a title and a price may be, the order in which an
edit is refused, what a hold of a ticket means, and which batches of order events apply in one go."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from ticketing_common.errors import CustomError
from ticketing_common.events import NotYet
from ticketing_tickets.queries import Edit, Hold, Ticket
from ticketing_tickets.schemas import TicketUpdate, clean_price, clean_title
from ticketing_tickets.service import NotInOneGo, distinct_tickets, held_ticket, why_not_edited

pytestmark = pytest.mark.unit

OWNER, SOMEONE_ELSE, ORDER, OTHER_ORDER = (uuid.UUID(int=n) for n in range(1, 5))


def a_ticket(version: int = 1, order_id: uuid.UUID | None = ORDER) -> Ticket:
    return Ticket(
        id=uuid.UUID(int=9),
        title="Concert",
        price=Decimal("20.00"),
        user_id=OWNER,
        order_id=order_id,
        version=version,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


# -- titles and prices -------------------------------------------------------------------------------------------


def test_a_title_is_trimmed() -> None:
    assert clean_title("  Concert  ") == "Concert"


@pytest.mark.parametrize(
    ("title", "message"),
    [
        (None, "Title is required"),
        (3, "Title is required"),
        ("   ", "Title is required"),
        ("x" * 201, "Title must be at most 200 characters"),
        ("Con\x00cert", "Title must not contain control characters"),
        ("Con\u202ecert", "Title must not contain control characters"),
    ],
)
def test_a_title_is_refused_with_the_message_the_client_sees(title: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clean_title(title)


def test_a_title_of_200_characters_after_trimming_is_accepted() -> None:
    assert clean_title(" " + "x" * 200 + " ") == "x" * 200


@pytest.mark.parametrize(
    ("price", "kept"),
    [
        (Decimal("19.99"), Decimal("19.99")),
        (20, Decimal("20.00")),
        (0.1, Decimal("0.10")),  # a float through its shortest repr, never its binary value
        (Decimal("1000000"), Decimal("1000000.00")),
        (Decimal("0.01"), Decimal("0.01")),
    ],
)
def test_a_price_is_kept_exactly_with_two_decimals(price: Any, kept: Decimal) -> None:
    assert clean_price(price) == kept
    assert str(clean_price(price)) == str(kept)


@pytest.mark.parametrize(
    ("price", "message"),
    [
        (None, "Price must be greater than 0"),
        ("20", "Price must be greater than 0"),
        (True, "Price must be greater than 0"),
        (0, "Price must be greater than 0"),
        (Decimal("-1"), "Price must be greater than 0"),
        (Decimal("NaN"), "Price must be greater than 0"),
        (Decimal("Infinity"), "Price must be greater than 0"),
        (Decimal("1000000.01"), "Price must be at most 1000000"),
        (Decimal("19.999"), "Price must have at most two decimals"),
        (Decimal("19.999999999999999999"), "Price must have at most two decimals"),
    ],
)
def test_a_price_is_refused_with_the_message_the_client_sees(price: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clean_price(price)


@pytest.mark.parametrize("version", [-1, 1.5, "1", True])
def test_an_expected_version_is_a_whole_number_of_0_or_more(version: Any) -> None:
    with pytest.raises(ValidationError, match="Version must be a whole number of 0 or more"):
        TicketUpdate.model_validate({"title": "t", "price": 1, "version": version})


def test_an_expected_version_may_be_left_out() -> None:
    assert TicketUpdate.model_validate({"title": "t", "price": 1}).version is None


# -- edits -------------------------------------------------------------------------------------------------------


def found(user_id: uuid.UUID = OWNER, order_id: uuid.UUID | None = None, version: int = 3) -> Edit:
    """What an edit statement that wrote nothing found."""
    return Edit(user_id=user_id, order_id=order_id, version=version, written=None)


def status(error: CustomError | None) -> tuple[int, str] | None:
    return None if error is None else (error.status_code, error.message)


def test_an_edit_by_someone_else_is_forbidden_before_anything_else_is_looked_at() -> None:
    edit = found(order_id=ORDER, version=7)
    assert status(why_not_edited(edit, user_id=SOMEONE_ELSE, expected_version=3)) == (403, "Forbidden")


def test_an_edit_of_a_reserved_ticket_is_refused_before_its_version_is_compared() -> None:
    edit = found(order_id=ORDER, version=7)
    assert status(why_not_edited(edit, user_id=OWNER, expected_version=3)) == (400, "Cannot edit a reserved ticket")


def test_an_edit_of_another_version_than_the_one_expected_is_a_conflict() -> None:
    edit = found(version=4)
    assert status(why_not_edited(edit, user_id=OWNER, expected_version=3)) == (
        409,
        "Ticket was modified, reload and try again",
    )


@pytest.mark.parametrize("expected_version", [None, 3])
def test_an_edit_nothing_refuses_is_tried_again(expected_version: int | None) -> None:
    # The row changed while the statement waited for it: the next statement answers from the change.
    assert why_not_edited(found(version=3), user_id=OWNER, expected_version=expected_version) is None


# -- holds -------------------------------------------------------------------------------------------------------


def test_a_hold_that_wrote_the_ticket_returns_it() -> None:
    ticket = a_ticket()
    assert held_ticket(Hold(ticket_id=ticket.id, cancelled=False, held=ticket), holder=None) == ticket


def test_the_hold_of_an_order_cancelled_already_changes_nothing() -> None:
    assert held_ticket(Hold(ticket_id=uuid.UUID(int=9), cancelled=True, held=None), holder=None) is None


def test_a_ticket_another_order_still_holds_is_tried_again_later() -> None:
    with pytest.raises(NotYet, match="still held by order"):
        held_ticket(Hold(ticket_id=uuid.UUID(int=9), cancelled=False, held=None), holder=OTHER_ORDER)


def test_a_free_ticket_that_was_not_held_is_tried_again_never_acknowledged() -> None:
    with pytest.raises(NotYet, match="changed while the event was applied"):
        held_ticket(Hold(ticket_id=uuid.UUID(int=9), cancelled=False, held=None), holder=None)


# -- batches -----------------------------------------------------------------------------------------------------


def test_a_batch_of_distinct_tickets_applies_in_one_go_in_its_order() -> None:
    tickets = [uuid.UUID(int=n) for n in (30, 10, 20)]
    assert distinct_tickets([(uuid.uuid4(), t) for t in tickets]) == tickets


def test_a_ticket_named_twice_in_a_batch_is_applied_one_event_at_a_time() -> None:
    ticket = uuid.uuid4()
    with pytest.raises(NotInOneGo, match="ticket is named twice"):
        distinct_tickets([(uuid.uuid4(), ticket), (uuid.uuid4(), ticket)])


def test_an_order_named_twice_matters_only_where_each_order_must_come_once() -> None:
    orders = [(ORDER, uuid.uuid4()), (ORDER, uuid.uuid4())]
    assert len(distinct_tickets(orders)) == 2
    with pytest.raises(NotInOneGo, match="order is named twice"):
        distinct_tickets(orders, each_order_once=True)
