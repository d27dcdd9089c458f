"""Keyset pagination of the listings: an opaque cursor naming the last row of a page, and the page size.

The tickets' listing orders by ``(created_at, id)`` descending, the events' by ``(starts_at, id)`` ascending: a
cursor is the position ``(at, id)`` of the last row shown, in whichever order the listing walks.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from ticketing_common.errors import FieldError

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


@dataclass(frozen=True)
class Cursor:
    """Position after which the next page starts: the last row's moment (``created_at`` of a ticket,
    ``starts_at`` of an event) and id."""

    at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """The cursor a previous page handed out; 400 (field ``cursor``) for anything else."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            at, row_id = raw.split("|")
            moment = datetime.fromisoformat(at)
            if moment.tzinfo is None:
                raise ValueError("naive time")
            # In UTC here, so a forged moment that UTC cannot hold (year 9999 at -23:59) is refused, not a 500.
            return cls(moment.astimezone(UTC), uuid.UUID(row_id))
        except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError):
            raise FieldError("cursor", "Invalid cursor") from None


def parse_limit(value: str | None) -> int:
    """The page size asked for (default 50); 400 (field ``limit``) unless a whole number from 1 to 100."""
    if value is None:
        return DEFAULT_LIMIT
    if value.isascii() and value.isdigit() and len(value) <= 3 and 1 <= int(value) <= MAX_LIMIT:
        return int(value)
    raise FieldError("limit", f"Limit must be a whole number from 1 to {MAX_LIMIT}")
