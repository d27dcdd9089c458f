"""Public JSON of the queue API (camelCase). Joining has no body: the event is in the path, the buyer in the
session."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field, field_serializer

from ticketing_common.schemas import CamelModel
from ticketing_queue.domain import PlaceState


class PlaceOut(CamelModel):
    """A buyer's place in an event's waiting room."""

    state: PlaceState = Field(description="waiting (before or after the draw), admitted (until admittedUntil), expired")
    position: int | None = Field(description="Place in line from 1; null before the draw")
    ahead: int | None = Field(description="Buyers ahead still waiting; null before the draw and once admitted")
    estimated_wait_seconds: int | None = Field(
        description="ahead / QUEUE_ADMIT_PER_SECOND, rounded up; null before the draw and once admitted"
    )
    admitted_until: datetime | None = Field(description="Until when the buyer may order the event's tickets")

    @field_serializer("admitted_until", when_used="json")
    def _utc(self, value: datetime | None) -> str | None:
        # ISO 8601 in UTC with a "Z", whatever the time zone the database session used.
        return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class DrawOut(CamelModel):
    """An event's draw: the commitment from the start, the seed and entrants once drawn (see ``algorithm``)."""

    commitment: str = Field(description="sha256 of the secret seed, lowercase hex")
    seed: str | None = Field(description="The seed (32 bytes, lowercase hex) once drawn; null before")
    entrants: list[str] | None = Field(
        description="sha256(userId) of every entrant of the draw, lowercase hex, sorted; null before the draw"
    )
    algorithm: str = Field(description="How positions follow from the seed and the entrants")
