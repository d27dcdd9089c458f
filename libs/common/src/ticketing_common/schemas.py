"""Base pieces for public JSON schemas: camelCase field names and exact money."""

from __future__ import annotations

import unicodedata
import uuid
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError


class CamelModel(BaseModel):
    """A schema whose JSON names are camelCase while Python names stay snake_case."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


INVALID_TEXT_MESSAGE = "Must be valid text (no NUL characters or unpaired surrogates)"

# Invisible characters that reorder how the text around them is displayed (Trojan Source, CVE-2021-42574):
# a title carrying them can show a buyer something else than what is stored.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_storable_text(value: str) -> bool:
    """Whether UTF-8 and PostgreSQL ``text`` can hold the string: no unpaired surrogate (JSON can escape one,
    UTF-8 cannot encode it) and no NUL (PostgreSQL refuses it)."""
    return "\x00" not in value and not any("\ud800" <= ch <= "\udfff" for ch in value)


def has_control_characters(value: str) -> bool:
    """Whether a display text holds control characters (C0/C1, line or paragraph separators, unpaired
    surrogates) or bidirectional embedding/override/isolate controls."""
    return any(ch in BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in value)


class RequestBody(CamelModel):
    """A JSON request body: every string in it, at any depth, must be storable text (400 naming the field).

    Checked before any field's own validator, so no validator, hash or query ever meets such a string.
    """

    @model_validator(mode="before")
    @classmethod
    def _strings_are_storable_text(cls, data: Any) -> Any:
        errors = [
            InitErrorDetails(type=PydanticCustomError("invalid_text", INVALID_TEXT_MESSAGE), loc=loc, input=value)
            for loc, value in _strings(data, ())
            if not is_storable_text(value)
        ]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


def _strings(data: Any, loc: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    if isinstance(data, str):
        return [(loc, data)]
    if isinstance(data, dict):
        return [found for key, value in data.items() for found in _strings(value, (*loc, str(key)))]
    if isinstance(data, list):
        return [found for index, value in enumerate(data) for found in _strings(value, (*loc, index))]
    return []


def _money_to_json(value: Decimal) -> float:
    # JSON shows money as a number (19.99); two decimals round-trip exactly through a double's shortest repr.
    return float(value)


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
