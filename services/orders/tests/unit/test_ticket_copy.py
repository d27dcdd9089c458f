"""Which ticket events the copy applies: a creation once per ticket, an update only on top of the copy's version.
Pure functions: no database, no bus."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from ticketing_common.events import NotYet, TicketCreated, TicketUpdated
from ticketing_orders import domain
from ticketing_orders.queries import TicketUpdateOutcome

pytestmark = pytest.mark.unit

SELLER = uuid.uuid4()


def _created(ticket_id: uuid.UUID, title: str = "first") -> TicketCreated:
    return TicketCreated(id=ticket_id, title=title, price=Decimal("10"), user_id=SELLER, version=0)


def _updated(ticket_id: uuid.UUID, version: int, title: str = "first") -> TicketUpdated:
    return TicketUpdated(id=ticket_id, title=title, price=Decimal("10"), user_id=SELLER, order_id=None, version=version)


def test_a_ticket_created_twice_keeps_its_first_creation() -> None:
    ticket_id = uuid.uuid4()

    [kept] = domain.first_creation_of_each([_created(ticket_id), _created(ticket_id, "again")])

    assert kept.title == "first"


def test_creations_are_inserted_in_ticket_id_order_so_concurrent_batches_cannot_deadlock() -> None:
    events = [_created(uuid.uuid4()) for _ in range(20)]

    kept = domain.first_creation_of_each(events)

    assert [event.id for event in kept] == sorted(event.id for event in events)


def test_one_update_per_ticket_and_version_is_applied_the_first() -> None:
    one, other = uuid.uuid4(), uuid.uuid4()
    events = [_updated(one, 1), _updated(one, 1, "again"), _updated(one, 2), _updated(other, 1)]

    kept = domain.first_of_each_version(events)

    assert [(event.id, event.version, event.title) for event in kept] == [
        (one, 1, "first"),
        (one, 2, "first"),
        (other, 1, "first"),
    ]


def _met(version: int, copy_version: int | None) -> TicketUpdateOutcome:
    return TicketUpdateOutcome(ticket_id=uuid.uuid4(), version=version, copy_version=copy_version)


def test_updates_on_top_of_their_copy_or_already_applied_are_accepted() -> None:
    domain.ensure_none_ahead([_met(3, 2), _met(1, 0), _met(2, 2), _met(1, 5)])


@pytest.mark.parametrize(
    "ahead", [_met(3, 1), _met(1, None)], ids=["a version is missing in between", "the copy does not exist yet"]
)
def test_an_update_ahead_of_its_copy_makes_the_whole_batch_wait(ahead: TicketUpdateOutcome) -> None:
    with pytest.raises(NotYet):
        domain.ensure_none_ahead([_met(1, 0), ahead])
