"""Base pieces for public JSON schemas: camelCase field names and exact money."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A schema whose JSON names are camelCase while Python names stay snake_case."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


def _money_to_json(value: Decimal) -> float | int:
    # JSON shows money as a number (19.99); two decimals round-trip exactly through a double's shortest repr.
    return int(value) if value == value.to_integral_value() else float(value)


Money = Annotated[Decimal, PlainSerializer(_money_to_json, return_type=float, when_used="json")]
"""An exact amount (Decimal in Python, NUMERIC in the database) that JSON shows as a plain number."""


def to_cents(amount: Decimal) -> int:
    """Exact integer cents of an amount with at most two decimals."""
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} has more than two decimals")
    return int(cents)


def parse_path_id(value: str) -> uuid.UUID:
    """The UUID a path names; 404 "Not Found" for anything that is not one (it cannot name anything)."""
    from ticketing_common.errors import NotFoundError

    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFoundError() from None
