"""Public JSON of the payments API (camelCase), separate from the tables."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import field_validator, model_validator

from ticketing_common.schemas import CamelModel, RequestBody

MAX_TOKEN_LENGTH = 255


class PaymentIn(RequestBody):
    """Body of ``POST /api/payments``: the order to pay and the card token Stripe.js gave the client."""

    order_id: uuid.UUID
    token: str

    @model_validator(mode="before")
    @classmethod
    def _missing_as_empty(cls, data: Any) -> Any:
        # A missing field gets the same message as an empty one (not pydantic's "missing"), under its JSON name.
        if isinstance(data, dict):
            data = dict(data)
            for alias, name in (("orderId", "order_id"), ("token", "token")):
                if alias not in data and name not in data:
                    data[alias] = None
        return data

    @field_validator("order_id", mode="before")
    @classmethod
    def _order_id(cls, value: Any) -> uuid.UUID:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("Order id is required")
        if isinstance(value, uuid.UUID):
            return value
        if not isinstance(value, str):
            raise ValueError("Order id must be a valid id")
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            raise ValueError("Order id must be a valid id") from None

    @field_validator("token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("Token is required")
        token = value.strip()
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
            raise ValueError("Token must be a card token from Stripe")
        return token


class PaymentOut(CamelModel):
    """A payment as the API shows it; ``amount`` in the currency's smallest unit (cents)."""

    id: uuid.UUID
    order_id: uuid.UUID
    stripe_id: str
    amount: int
    currency: str
