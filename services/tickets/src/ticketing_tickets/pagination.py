"""Keyset pagination of the listing: an opaque cursor naming the last ticket of a page."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

from ticketing_common.errors import FieldError

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


@dataclass(frozen=True)
class Cursor:
    """Position after which the next page starts: (created_at, id), both descending."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """The cursor a previous page handed out; 400 (field ``cursor``) for anything else."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            created_at, ticket_id = raw.split("|")
            moment = datetime.fromisoformat(created_at)
            if moment.tzinfo is None:
                raise ValueError("naive time")
            return cls(moment, uuid.UUID(ticket_id))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise FieldError("cursor", "Invalid cursor") from None


def parse_limit(value: str | None) -> int:
    """The page size asked for (default 50); 400 (field ``limit``) unless a whole number from 1 to 100."""
    if value is None:
        return DEFAULT_LIMIT
    if value.isascii() and value.isdigit() and len(value) <= 3 and 1 <= int(value) <= MAX_LIMIT:
        return int(value)
    raise FieldError("limit", f"Limit must be a whole number from 1 to {MAX_LIMIT}")
