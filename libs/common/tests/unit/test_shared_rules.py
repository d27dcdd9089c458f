"""The shared domain rules, without any server: version gates, redelivery backoff, money, text, ids."""

from __future__ import annotations

import itertools
import uuid
from decimal import Decimal

import pytest
from pydantic import BaseModel

from ticketing_common.errors import NotFoundError
from ticketing_common.events.listener import (
    MAX_BACKOFF_SECONDS,
    NotYet,
    backoff_seconds,
    durable_name,
    is_next_version,
)
from ticketing_common.schemas import Money, has_control_characters, is_storable_text, parse_path_id, to_cents

pytestmark = pytest.mark.unit


def test_the_next_version_is_applied() -> None:
    assert is_next_version(3, 4) is True


@pytest.mark.parametrize("incoming", [0, 2, 3])
def test_a_version_already_applied_is_acknowledged_without_effect(incoming: int) -> None:
    assert is_next_version(3, incoming) is False


@pytest.mark.parametrize(("current", "incoming"), [(3, 5), (None, 0), (None, 1)])
def test_a_version_ahead_of_the_copy_or_without_a_copy_is_not_yet(current: int | None, incoming: int) -> None:
    with pytest.raises(NotYet):
        is_next_version(current, incoming)


def test_redelivery_backs_off_exponentially_up_to_a_ceiling() -> None:
    delays = [backoff_seconds(n) for n in range(1, 12)]
    assert delays[0] == pytest.approx(0.05)
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == MAX_BACKOFF_SECONDS


def test_a_consumer_name_is_the_service_and_its_subject_without_dots_or_wildcards() -> None:
    assert durable_name("orders", "ticket.updated") == "orders-ticket-updated"
    assert durable_name("audit", "order.>") == "audit-order-all"
    assert durable_name("audit", "*.created") == "audit-any-created"


class _Priced(BaseModel):
    price: Money


@pytest.mark.parametrize(("amount", "json"), [("19.99", '{"price":19.99}'), ("20.00", '{"price":20.0}')])
def test_money_is_exact_in_python_and_a_plain_number_in_json(amount: str, json: str) -> None:
    priced = _Priced(price=Decimal(amount))
    assert priced.price == Decimal(amount)
    assert priced.model_dump_json() == json


def test_money_converts_to_exact_cents_and_refuses_fractions_of_a_cent() -> None:
    assert to_cents(Decimal("19.99")) == 1999
    assert to_cents(Decimal("20")) == 2000
    with pytest.raises(ValueError, match="more than two decimals"):
        to_cents(Decimal("0.001"))


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
def test_text_with_a_nul_or_an_unpaired_surrogate_is_not_storable(text: str) -> None:
    assert not is_storable_text(text)


def test_ordinary_text_is_storable_and_has_no_control_characters() -> None:
    assert is_storable_text("Concert — Zürich 🎵")
    assert not has_control_characters("Concert — Zürich 🎵")


@pytest.mark.parametrize("text", ["line\nbreak", "tab\there", "bidi \u202e override"])
def test_control_and_bidi_override_characters_are_found(text: str) -> None:
    assert has_control_characters(text)


def test_a_path_id_is_a_uuid_and_anything_else_is_not_found() -> None:
    known = uuid.uuid4()
    assert parse_path_id(str(known)) == known
    with pytest.raises(NotFoundError):
        parse_path_id("not-an-id")
